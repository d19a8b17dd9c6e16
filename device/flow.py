"""The customer flow: a pure state machine (no pygame, no I/O, no clock of its own).

    rating ──Tap──► rating(pressed, saving) ──Saved──► thanks ──timer──► rating
                                 └──────SaveFailed──► sorry ──timer──► rating

The kiosk feeds it inputs with the current monotonic time and carries out the
effects it returns; screens are drawn from :attr:`Flow.state`. Monotonic time
matters: NTP steps the wall clock after boot, and a timer must not jump with it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

Screen = Literal["rating", "thanks", "sorry"]
Source = Literal["touch", "button"]


@dataclass(frozen=True, slots=True)
class FlowSettings:
    """Timings and the survey the flow runs."""

    scale: int = 5
    default_lang: str = "en"
    thank_you_s: float = 3.0
    sorry_s: float = 5.0
    repeat_interval_s: float = 5.0


@dataclass(frozen=True, slots=True)
class FlowState:
    """What the customer sees; screens are a function of this."""

    screen: Screen = "rating"
    lang: str = "en"
    pressed: int | None = None  # a face tapped and being saved: highlight it
    until: float | None = None  # monotonic deadline of a timed screen


# ---- inputs


@dataclass(frozen=True, slots=True)
class Tap:
    """The customer chose a rating (touch or button)."""

    rating: int
    source: Source = "touch"


@dataclass(frozen=True, slots=True)
class Saved:
    """The answer asked for by the last :class:`Save` is on disk."""


@dataclass(frozen=True, slots=True)
class SaveFailed:
    """The answer could not be stored (full disk, broken database)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed; timed screens may end."""


Input = Tap | Saved | SaveFailed | Tick


# ---- effects


@dataclass(frozen=True, slots=True)
class Save:
    """Store this answer durably, then report :class:`Saved` or :class:`SaveFailed`."""

    rating: int
    scale: int
    lang: str
    source: Source
    flags: tuple[str, ...]
    reasons: tuple[str, ...] = ()


class Flow:
    """The state machine. ``handle`` returns an effect to carry out, or None."""

    def __init__(self, settings: FlowSettings) -> None:
        self.settings = settings
        self.state = FlowState(lang=settings.default_lang)
        self._last_answer_at: float | None = None

    def handle(self, event: Input, now: float) -> Save | None:
        """Apply one input at monotonic time ``now``."""
        state = self.state
        if isinstance(event, Tick):
            if state.until is not None and now >= state.until:
                self.state = FlowState(lang=self.settings.default_lang)
            return None
        if isinstance(event, Tap):
            if state.screen != "rating" or state.pressed is not None:
                return None  # saving already, or a screen without faces
            if not 1 <= event.rating <= self.settings.scale:
                return None
            repeat = (
                self._last_answer_at is not None
                and now - self._last_answer_at < self.settings.repeat_interval_s
            )
            self._last_answer_at = now
            self.state = replace(state, pressed=event.rating)
            return Save(
                rating=event.rating,
                scale=self.settings.scale,
                lang=state.lang,
                source=event.source,
                flags=("rapid_repeat",) if repeat else (),
            )
        if isinstance(event, Saved):
            if state.pressed is not None:
                self.state = FlowState("thanks", state.lang, None, now + self.settings.thank_you_s)
            return None
        if isinstance(event, SaveFailed):
            if state.pressed is not None:
                self.state = FlowState("sorry", state.lang, None, now + self.settings.sorry_s)
            return None
        raise TypeError(f"not a flow input: {event!r}")

    def next_deadline(self) -> float | None:
        """Monotonic time at which the flow wants a :class:`Tick` (None: no timer)."""
        return self.state.until

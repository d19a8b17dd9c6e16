"""The customer flow: a pure state machine (no pygame, no I/O, no clock of its own).

::

    attract or rating ──Tap──► saving ──Saved──► thanks ──timer──► attract
           │     │                 ▲  └─SaveFailed──► sorry ──timer──► attract
           │     └─Tap (asks why)─► follow-up ──Reason / Skip / timeout──┘
           │                          └─Back ("wrong face")──► rating (nothing stored)
           └─OpenLanguages─► language ──ChooseLanguage──► rating ──inactivity──► attract
                                 └─Back──► where the customer came from

* **attract** is the resting screen: the faces, the question, an invitation, in the
  default language. It does not swallow the first tap: a tap on a face there is an
  answer.
* **rating** is the same screen after the customer chose a language; inactivity
  returns to attract (and the default language).
* **follow-up** asks why, for the ratings configured (default: the two worst).
  The rating is held until a reason is tapped, "skip" is tapped, or the follow-up
  times out; in every case exactly one :class:`Save` carries the rating (with the
  reason, if one was tapped). The one other way out is the customer's own
  :class:`Back` ("wrong face"): the rating is withdrawn, nothing is stored, and
  the faces come back for the right one. (The kiosk also saves a held rating
  when it stops: :meth:`Flow.flush`.) A reason tapped after the timeout meets the
  thank-you, never the old rating.
* **thanks** / **sorry** are timed; afterwards the flow is back at attract in the
  default language.
* A physical button press counts wherever no follow-up is open (see :meth:`Flow.accepts`).

The kiosk feeds inputs with the current monotonic time and carries out the
effects returned; screens are drawn from :attr:`Flow.state`. Monotonic time
matters: NTP steps the wall clock after boot, and a timer must not jump with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

Screen = Literal["attract", "rating", "language", "followup", "thanks", "sorry"]
Source = Literal["touch", "button"]


@dataclass(frozen=True, slots=True)
class FlowSettings:
    """Timings and the survey the flow runs.

    Attributes:
        scale: number of faces (3, 4 or 5).
        default_lang: the language of the attract screen.
        languages: the languages the customer may choose (default first or not).
        thank_you_s: how long the thank-you shows.
        sorry_s: how long the "not saved" message shows.
        repeat_interval_s: answers tapped closer than this to the previous one are
            flagged ``rapid_repeat``.
        follow_up_ratings: ratings that ask for a reason (empty: never ask).
        reasons: reason keys offered on the follow-up (2 to 8; empty: never ask).
        follow_up_s: the follow-up times out after this and saves the rating alone.
        inactivity_s: the rating and language screens return to attract after this.
    """

    scale: int = 5
    default_lang: str = "en"
    languages: tuple[str, ...] = ("en",)
    thank_you_s: float = 3.0
    sorry_s: float = 5.0
    repeat_interval_s: float = 5.0
    follow_up_ratings: frozenset[int] = frozenset({1, 2})
    reasons: tuple[str, ...] = ()
    follow_up_s: float = 10.0
    inactivity_s: float = 30.0


@dataclass(frozen=True, slots=True)
class FlowState:
    """What the customer sees; screens are a function of this."""

    screen: Screen = "attract"
    lang: str = "en"
    pressed: int | None = None  # the rating tapped: highlighted, held or being saved
    until: float | None = None  # monotonic deadline of a timed screen
    saving: bool = False  # a Save is out; no other input counts until it is answered
    reason: str | None = None  # the reason tapped on the follow-up (highlighted while saving)
    source: Source = "touch"  # how the held rating was given
    tapped_at: float | None = None  # monotonic time of the held rating's tap
    came_from: Screen = "attract"  # where Back on the language screen returns to


# ---- inputs


@dataclass(frozen=True, slots=True)
class Tap:
    """The customer chose a rating (touch or button)."""

    rating: int
    source: Source = "touch"


@dataclass(frozen=True, slots=True)
class Reason:
    """The customer tapped a reason chip on the follow-up."""

    key: str


@dataclass(frozen=True, slots=True)
class Skip:
    """The customer skipped the follow-up."""


@dataclass(frozen=True, slots=True)
class OpenLanguages:
    """The customer tapped the language button."""


@dataclass(frozen=True, slots=True)
class ChooseLanguage:
    """The customer chose a language on the language screen."""

    lang: str


@dataclass(frozen=True, slots=True)
class Back:
    """The customer went back: "wrong face" on the follow-up, or away from the language screen."""


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


Input = Tap | Reason | Skip | Back | OpenLanguages | ChooseLanguage | Saved | SaveFailed | Tick


# ---- effects


@dataclass(frozen=True, slots=True)
class Save:
    """Store this answer durably, then report :class:`Saved` or :class:`SaveFailed`.

    ``tapped_at`` is the monotonic time of the rating's tap (the answer's time,
    even when the follow-up took a while).
    """

    rating: int
    scale: int
    lang: str
    source: Source
    flags: tuple[str, ...]
    reasons: tuple[str, ...] = ()
    tapped_at: float | None = field(default=None, compare=False)


class Flow:
    """The state machine. ``handle`` returns an effect to carry out, or None.

    Args:
        settings: timings and survey.
        test_mode: answers are flagged ``test`` (staff mode sets it).
    """

    def __init__(self, settings: FlowSettings, *, test_mode: bool = False) -> None:
        self.settings = settings
        self.test_mode = test_mode
        self.state = FlowState(lang=settings.default_lang)
        self._last_tap_at: float | None = None
        self._before_held: float | None = None  # _last_tap_at before the held rating's tap
        self._flags: tuple[str, ...] = ()

    def _home(self) -> FlowState:
        return FlowState(lang=self.settings.default_lang)

    def accepts(self, tap: Tap) -> bool:
        """Whether a rating tap counts on the current screen.

        Faces are on attract and rating. A physical button is always there, so a
        press also counts on the language, thank-you and sorry screens (a quick
        second press is stored flagged ``rapid_repeat``, never dropped). Only an
        open follow-up (or a save in progress) ignores presses: the held rating
        comes first.
        """
        state = self.state
        if state.saving:
            return False
        if state.screen in ("attract", "rating"):
            return True
        return tap.source == "button" and state.screen in ("language", "thanks", "sorry")

    def asks_why(self, rating: int) -> bool:
        """Whether ``rating`` opens the follow-up."""
        return rating in self.settings.follow_up_ratings and len(self.settings.reasons) >= 2

    def handle(self, event: Input, now: float) -> Save | None:
        """Apply one input at monotonic time ``now``."""
        state = self.state
        s = self.settings
        if isinstance(event, (Saved, SaveFailed)):
            if state.saving:
                if isinstance(event, Saved):
                    self.state = FlowState("thanks", state.lang, until=now + s.thank_you_s)
                else:
                    self.state = FlowState("sorry", state.lang, until=now + s.sorry_s)
            return None
        if state.saving:
            return None  # one answer at a time: nothing counts until the disk answered
        if isinstance(event, Tick):
            if state.until is None or now < state.until:
                return None
            if state.screen == "followup":
                return self._save(now, ())  # timed out: the rating alone
            self.state = self._home()
            return None
        if isinstance(event, Tap):
            if not self.accepts(event) or not 1 <= event.rating <= s.scale:
                return None
            repeat = self._last_tap_at is not None and now - self._last_tap_at < s.repeat_interval_s
            self._before_held, self._last_tap_at = self._last_tap_at, now
            self._flags = ("rapid_repeat",) if repeat else ()
            # The answer is in the language on screen; from a timed screen the faces come back.
            base = FlowState("rating" if state.screen in ("rating", "language") else "attract", state.lang)
            held = replace(base, pressed=event.rating, source=event.source, tapped_at=now)
            if self.asks_why(event.rating):
                self.state = replace(held, screen="followup", until=now + s.follow_up_s)
                return None
            self.state = held
            return self._save(now, ())
        if isinstance(event, Reason):
            if state.screen != "followup" or event.key not in s.reasons:
                return None
            self.state = replace(state, reason=event.key)
            return self._save(now, (event.key,))
        if isinstance(event, Skip):
            return self._save(now, ()) if state.screen == "followup" else None
        if isinstance(event, Back):
            if state.screen == "followup":
                # "Wrong face": the rating is withdrawn, unstored, and does not make the
                # right one a rapid repeat; the faces come back in the same language.
                self._last_tap_at = self._before_held
                self.state = FlowState("rating", state.lang, until=now + s.inactivity_s)
            elif state.screen == "language":
                back = state.came_from
                self.state = FlowState(back, state.lang, until=now + s.inactivity_s if back == "rating" else None)
            return None
        if isinstance(event, OpenLanguages):
            if state.screen in ("attract", "rating") and len(s.languages) > 1:
                self.state = replace(state, screen="language", until=now + s.inactivity_s, came_from=state.screen)
            return None
        if isinstance(event, ChooseLanguage):
            if state.screen == "language" and event.lang in s.languages:
                self.state = FlowState("rating", event.lang, until=now + s.inactivity_s)
            return None
        raise TypeError(f"not a flow input: {event!r}")

    def _save(self, now: float, reasons: tuple[str, ...]) -> Save:
        state = self.state
        assert state.pressed is not None
        self.state = replace(state, saving=True, until=None)
        flags = self._flags + (("test",) if self.test_mode else ())
        return Save(rating=state.pressed, scale=self.settings.scale, lang=state.lang, source=state.source,
                    flags=flags, reasons=reasons, tapped_at=state.tapped_at)

    def held(self) -> Save | None:
        """What the open follow-up would save without a reason (None: no rating held).

        Changes nothing; the kiosk keeps it on disk while the follow-up is open.
        """
        state = self.state
        if state.screen != "followup" or state.saving or state.pressed is None:
            return None
        flags = self._flags + (("test",) if self.test_mode else ())
        return Save(rating=state.pressed, scale=self.settings.scale, lang=state.lang, source=state.source,
                    flags=flags, tapped_at=state.tapped_at)

    def flush(self, now: float) -> Save | None:
        """The held rating's :class:`Save`, if the follow-up is open (the kiosk is stopping)."""
        if self.held() is not None:
            return self._save(now, ())
        return None

    def next_deadline(self) -> float | None:
        """Monotonic time at which the flow wants a :class:`Tick` (None: no timer)."""
        return None if self.state.saving else self.state.until

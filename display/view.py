"""The view models: what a screen shows, already translated. Defined here so that
``display`` depends on nobody; the kiosk builds these from the flow's state.

A touch on a screen maps to an :data:`Action`: a kind and a value, e.g.
``("face", 4)``, ``("reason", "wait_time")``, ``("skip", None)``,
``("languages", None)``, ``("lang", "de")``; the kiosk turns it into a flow
input. ``("corner", None)`` is the hidden staff corner (top left).
"""

from __future__ import annotations

from dataclasses import dataclass

Action = tuple[str, int | str | None]


@dataclass(frozen=True, slots=True)
class RatingView:
    """The question and one face per rating (1 = worst).

    ``hint`` is an invitation shown under the question on the attract screen;
    ``lang_button`` names the current language on the language button (empty:
    no button, one language only).
    """

    question: str
    labels: tuple[str, ...]  # one per rating, worst first
    note: str  # e.g. "Answers are anonymous"
    pressed: int | None = None
    hint: str = ""
    lang_button: str = ""
    #: The labels in every language the kiosk ships: their one size is chosen so that all
    #: of them fit, so switching language never changes it (empty: size for ``labels``).
    all_labels: tuple[tuple[str, ...], ...] = ()

    @property
    def scale(self) -> int:
        return len(self.labels)


@dataclass(frozen=True, slots=True)
class FollowUpView:
    """Why? 2 to 8 reason chips plus a skip button, under the face the customer chose."""

    title: str
    reasons: tuple[tuple[str, str], ...]  # (key, label)
    skip: str
    rating: int
    scale: int
    chosen: str | None = None  # the reason tapped (highlighted while saving)
    note: str = ""
    back: str = ""  # "change answer": withdraws the rating (empty: no button)
    seconds_left: int = 0  # the countdown until the rating is stored alone
    total_s: int = 0  # the whole time (0: no countdown shown)


@dataclass(frozen=True, slots=True)
class LanguageView:
    """One button per language, each named in its own language."""

    title: str
    options: tuple[tuple[str, str], ...]  # (code, native name)
    current: str
    back: str = ""  # the button back to the faces (empty: none)


@dataclass(frozen=True, slots=True)
class MessageView:
    """A full-screen message: the thank-you, or a 'sorry' when saving failed."""

    title: str
    body: str = ""
    tone: str = "thanks"  # "thanks" | "sorry"


@dataclass(frozen=True, slots=True)
class PinView:
    """The staff PIN pad (staff text is English: staff are not customers)."""

    title: str
    entered: int  # how many digits typed (shown as dots, never the digits)
    message: str = ""
    cancel: str = ""  # the button back to the customer screen (empty: none)


@dataclass(frozen=True, slots=True)
class StatusView:
    """The staff status screen: facts as (name, value) lines and three buttons."""

    title: str
    lines: tuple[tuple[str, str], ...]
    test_mode: bool
    can_quit: bool = True
    #: The three buttons' words: test mode (on/off), close, quit.
    buttons: tuple[str, str, str] = ("Test mode: on", "Close", "Quit kiosk")


View = RatingView | FollowUpView | LanguageView | MessageView | PinView | StatusView

"""The view model: what a screen shows, already translated. Defined here so that
``display`` depends on nobody; the kiosk builds these from the flow's state."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RatingView:
    """The question and one face per rating (1 = worst)."""

    question: str
    labels: tuple[str, ...]  # one per rating, worst first
    note: str  # e.g. "Answers are anonymous"
    pressed: int | None = None

    @property
    def scale(self) -> int:
        return len(self.labels)


@dataclass(frozen=True, slots=True)
class MessageView:
    """A full-screen message: the thank-you, or a 'sorry' when saving failed."""

    title: str
    body: str = ""
    tone: str = "thanks"  # "thanks" | "sorry"


View = RatingView | MessageView

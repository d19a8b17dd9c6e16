"""Scripted taps for the demo and tests: real touch events at the faces' positions.

Each tap is posted the way SDL reports a touchscreen tap: a ``FINGERDOWN``
(normalised coordinates) followed by the ``MOUSEBUTTONDOWN`` twin SDL
synthesises from it (``touch=True``). The kiosk must count it once.
"""

from __future__ import annotations

from typing import Any

import pygame

from display.view import FollowUpView, MessageView, RatingView


def post_tap(point: tuple[float, float], size: tuple[int, int]) -> None:
    """Post a finger tap at panel ``point`` plus SDL's mouse twin."""
    x, y = point
    w, h = size
    common: dict[str, Any] = {"touch_id": 1, "finger_id": 0, "pressure": 1.0, "dx": 0.0, "dy": 0.0}
    pygame.event.post(pygame.event.Event(pygame.FINGERDOWN, x=x / w, y=y / h, **common))
    pygame.event.post(pygame.event.Event(pygame.FINGERUP, x=x / w, y=y / h, **common))
    pygame.event.post(pygame.event.Event(pygame.MOUSEBUTTONDOWN, pos=(int(x), int(y)), button=1, touch=True))
    pygame.event.post(pygame.event.Event(pygame.MOUSEBUTTONUP, pos=(int(x), int(y)), button=1, touch=True))


class TapScript:
    """Taps a list of ratings, one each time the rating screen is back and idle.

    When a rating opens the follow-up, the script taps "skip" (the demo's
    customer is in a hurry), so each rating is stored at once.

    Args:
        ratings: the answers to give, in order.
        pause_s: how long the rating screen stays before the next tap.
    """

    def __init__(self, ratings: list[int], pause_s: float = 1.0) -> None:
        self.ratings = list(ratings)
        self.pause_s = pause_s
        self._ready_at: float | None = None
        self._pending = False  # the last tap has not reached a thank-you (or sorry) yet

    @property
    def done(self) -> bool:
        return not self.ratings and not self._pending

    def maybe_tap(self, kiosk: object, now: float) -> None:
        """Post the next tap if the kiosk shows an idle rating screen long enough."""
        view = kiosk.view  # type: ignore[attr-defined]
        display = kiosk.display  # type: ignore[attr-defined]
        if isinstance(view, MessageView):
            self._pending = False
        if isinstance(view, FollowUpView) and view.chosen is None:
            post_tap(display.center_of(view, ("skip", None)), display.geometry.size)
            return
        if not self.ratings or not isinstance(view, RatingView) or view.pressed is not None:
            self._ready_at = None
            return
        if self._ready_at is None:
            self._ready_at = now + self.pause_s
        if now >= self._ready_at:
            rating = self.ratings.pop(0)
            post_tap(display.target_center(view, rating), display.geometry.size)
            self._ready_at = None
            self._pending = True

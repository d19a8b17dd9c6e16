"""The real kiosk, headless (SDL dummy driver), driven like a touchscreen.

    with HeadlessKiosk(config) as k:
        k.tap_rating(4)          # FINGERDOWN + its mouse twin at the face's centre
        k.tap_rating(1)          # ... and "skip" if the rating opens the follow-up
        k.tap_rating(2, follow_up=None)   # leave the follow-up open
        k.tap_target(("reason", "wait_time"))
        k.pump()                 # handle queued events, redraw
        k.screenshot(path)
        stored(k)                # the answers in its outbox, decoded, oldest first

Time is the kiosk's own monotonic clock unless a test passes ``clock=``.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

import pygame

from device.config import KioskConfig
from device.kiosk import Kiosk
from device.script import post_tap
from device.staff import GESTURE_TAPS
from display.view import Action, FollowUpView, RatingView
from sync import protocol
from sync.sender import Sender


class HeadlessKiosk:
    """A :class:`Kiosk` on the dummy video driver with tap and screenshot helpers."""

    def __init__(self, config: KioskConfig, *, sender: Sender | None = None,
                 witness: Path | None = None, clock: Callable[[], float] | None = None) -> None:
        pygame.display.init()
        pygame.font.init()
        surface = pygame.display.set_mode(config.screen.size)
        pygame.event.clear()
        kwargs = {"clock": clock} if clock else {}
        self.frames = 0
        self.kiosk = Kiosk(config, surface, flip=self._flip, sender=sender, witness=witness, **kwargs)
        self.kiosk.redraw(force=True)

    def _flip(self) -> None:
        self.frames += 1
        pygame.display.flip()

    @property
    def size(self) -> tuple[int, int]:
        return self.kiosk.display.geometry.size

    def center_of(self, rating: int) -> tuple[int, int]:
        """Panel coordinates of a face on the current rating screen."""
        view = self.kiosk.view
        assert isinstance(view, RatingView), f"not on the rating screen: {view}"
        return self.kiosk.display.target_center(view, rating)

    def tap(self, point: tuple[float, float], *, mouse_twin: bool = True) -> None:
        """Post a finger tap (and SDL's mouse twin) at a panel point, then handle it."""
        if mouse_twin:
            post_tap(point, self.size)
        else:
            x, y = point
            w, h = self.size
            pygame.event.post(pygame.event.Event(pygame.FINGERDOWN, x=x / w, y=y / h, touch_id=1,
                                                 finger_id=0, pressure=1.0, dx=0.0, dy=0.0))
        self.pump()

    def click(self, point: tuple[int, int]) -> None:
        """A real mouse click (not from a touch), then handle it."""
        pygame.event.post(pygame.event.Event(pygame.MOUSEBUTTONDOWN, pos=point, button=1, touch=False))
        self.pump()

    def tap_rating(self, rating: int, follow_up: str | None = "skip") -> None:
        """Tap a face; if the follow-up opens, tap ``follow_up`` on it: "skip", a
        reason key, or None to leave it open."""
        self.tap(self.center_of(rating))
        if follow_up is not None and isinstance(self.kiosk.view, FollowUpView):
            self.tap_target(("skip", None) if follow_up == "skip" else ("reason", follow_up))

    def tap_target(self, action: Action) -> None:
        """Tap the target doing ``action`` on the current screen (e.g. ``("lang", "de")``)."""
        self.tap(self.kiosk.display.center_of(self.kiosk.view, action))

    def pump(self) -> None:
        """Handle every queued event and the flow's timers, without blocking."""
        for event in pygame.event.get():
            self.kiosk.handle(event)
        self.kiosk.step(max_wait_ms=0)

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        pygame.image.save(self.kiosk.display.target, str(path))
        return path

    def close(self) -> None:
        self.kiosk.close()
        pygame.display.quit()

    def __enter__(self) -> HeadlessKiosk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stored(kiosk: HeadlessKiosk | Path) -> list[dict[str, Any]]:
    """The answers in a kiosk's outbox (or in an outbox file), decoded and checked
    against the feedback schema, in ``seq`` order; read as another process would."""
    path = kiosk.kiosk.config.outbox_path if isinstance(kiosk, HeadlessKiosk) else kiosk
    with closing(sqlite3.connect(path)) as conn:
        rows = conn.execute("SELECT payload FROM outbox ORDER BY seq").fetchall()
    return [protocol.decode("feedback", payload) for (payload,) in rows]


def corner(k: HeadlessKiosk, taps: int = GESTURE_TAPS) -> None:
    """Tap the hidden staff corner (top left) ``taps`` times: the full gesture opens the PIN pad."""
    x, y = k.kiosk.display.geometry.to_physical((3, 3))
    for _ in range(taps):
        k.tap((x, y))


def enter(k: HeadlessKiosk, pin: str) -> None:
    """Type ``pin`` on the PIN pad and press OK."""
    for digit in pin:
        k.tap_target(("digit", int(digit)))
    k.tap_target(("pin_ok", None))

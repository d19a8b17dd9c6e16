"""The kiosk's own pygame event types, posted from other threads to the kiosk loop.

``pygame.event.post`` is thread-safe: gpiozero's callback threads and the
sender's thread only post; the loop owns every piece of state.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pygame

log = logging.getLogger("deskpulse.kiosk")

#: A rating chosen by a scripted tap or a physical button (``rating``, ``source``).
TAP_EVENT = pygame.event.custom_type()
#: A new remote survey configuration is in force (``config``), from the sender's thread.
CONFIG_EVENT = pygame.event.custom_type()


def post_tap(rating: int, source: str) -> None:
    """Hand a rating to the kiosk loop (called on gpiozero's threads).

    While the kiosk reopens its screen SDL's event queue is gone for a moment
    (:mod:`device.screen`): the press waits for it rather than being lost.
    """
    event = pygame.event.Event(TAP_EVENT, rating=rating, source=source)
    deadline = time.monotonic() + 5.0
    while True:
        try:
            pygame.event.post(event)
            return
        except pygame.error as exc:
            if time.monotonic() > deadline:
                log.error("a %s press (rating %d) could not reach the kiosk loop: %s", source, rating, exc)
                return
            time.sleep(0.01)


def post_config(config: dict[str, Any]) -> None:
    """Hand a new survey configuration to the kiosk loop (called on the sender's thread)."""
    pygame.event.post(pygame.event.Event(CONFIG_EVENT, config=config))

"""The kiosk's own pygame event types, posted from other threads to the kiosk loop.

``pygame.event.post`` is thread-safe: gpiozero's callback threads and the
sender's thread only post; the loop owns every piece of state.
"""

from __future__ import annotations

from typing import Any

import pygame

#: A rating chosen by a scripted tap or a physical button (``rating``, ``source``).
TAP_EVENT = pygame.event.custom_type()
#: A new remote survey configuration is in force (``config``), from the sender's thread.
CONFIG_EVENT = pygame.event.custom_type()


def post_tap(rating: int, source: str) -> None:
    """Hand a rating to the kiosk loop (called on gpiozero's threads)."""
    pygame.event.post(pygame.event.Event(TAP_EVENT, rating=rating, source=source))


def post_config(config: dict[str, Any]) -> None:
    """Hand a new survey configuration to the kiosk loop (called on the sender's thread)."""
    pygame.event.post(pygame.event.Event(CONFIG_EVENT, config=config))

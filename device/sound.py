"""An optional short confirmation chime through SDL's audio (``[sound] confirm = true``).

Off by default: many desks are quiet places. The chime is made in code (two
short sine tones, no sound file to ship) and played without waiting; a kiosk
without a working audio device logs that once and stays silent.
"""

from __future__ import annotations

import array
import logging
import math

import pygame

log = logging.getLogger("deskpulse.sound")

RATE = 22050


def chime_samples(volume: float, rate: int = RATE) -> array.array[int]:
    """Two rising tones (E6, then A6), 70 ms each with soft edges, as signed 16-bit mono samples."""
    out = array.array("h")
    for freq in (1318.5, 1760.0):
        n = int(rate * 0.07)
        for i in range(n):
            edge = min(1.0, i / (rate * 0.005), (n - i) / (rate * 0.02))  # no clicks at either end
            out.append(int(32767 * volume * edge * math.sin(2 * math.pi * freq * i / rate)))
    return out


class Chime:
    """The confirmation sound; :meth:`play` does nothing when it could not be set up.

    Args:
        volume: 0.0 to 1.0.
    """

    def __init__(self, volume: float) -> None:
        self.sound: pygame.mixer.Sound | None = None
        try:
            pygame.mixer.init(frequency=RATE, size=-16, channels=1)
            self.sound = pygame.mixer.Sound(buffer=chime_samples(volume).tobytes())
        except pygame.error as exc:
            log.warning("no confirmation sound: the audio device cannot be used (%s)", exc)

    def play(self) -> None:
        """Start the chime and return at once."""
        if self.sound is not None:
            self.sound.play()

    def close(self) -> None:
        """Release the audio device. Safe to call twice."""
        if self.sound is not None:
            self.sound = None
            pygame.mixer.quit()

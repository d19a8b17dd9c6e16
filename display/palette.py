"""The face colours, worst first, per scale: one definition for the kiosk and the dashboard.

Okabe–Ito's colour-blind-safe palette. Plain hex strings (no pygame), so central's
dashboard can colour a rating exactly as the kiosk draws it.
"""

from __future__ import annotations

from typing import Final

VERMILLION: Final = "#d55e00"
ORANGE: Final = "#e69f00"
YELLOW: Final = "#f0e442"
SKY: Final = "#56b4e9"
GREEN: Final = "#009e73"

#: Face colours per scale, worst rating first.
FACE_COLOURS: Final[dict[int, tuple[str, ...]]] = {
    3: (VERMILLION, YELLOW, GREEN),
    4: (VERMILLION, ORANGE, SKY, GREEN),
    5: (VERMILLION, ORANGE, YELLOW, SKY, GREEN),
}
#: The colour of a rating on a scale this palette does not know.
UNKNOWN: Final = "#9a9a9a"


def face_colour(rating: int, scale: int) -> str:
    """The face colour of ``rating`` on ``scale`` (grey for an unknown scale or rating)."""
    colours = FACE_COLOURS.get(scale)
    return colours[rating - 1] if colours and 1 <= rating <= len(colours) else UNKNOWN


def rgb(colour: str) -> tuple[int, int, int]:
    """``"#d55e00"`` as ``(213, 94, 0)``."""
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def mood(rating: int, scale: int) -> float:
    """-1 for the worst rating, +1 for the best: how much a face smiles."""
    return -1 + 2 * (rating - 1) / (scale - 1) if scale > 1 else 0.0

"""Geometry: millimetre-based layout and rotation, with no drawing.

The panel reports pixels; customers have fingers. Given the surface size and
the configured physical size (``screen_mm``), targets keep their millimetres on
any panel. Rotation is done in code (0/90/180/270, clockwise) and touch points
are rotated back to match.
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_TARGET_MM = 15.0


@dataclass(frozen=True, slots=True)
class Rect:
    """An integer rectangle (x, y, w, h) in logical pixels."""

    x: int
    y: int
    w: int
    h: int

    @property
    def center(self) -> tuple[int, int]:
        return (self.x + self.w // 2, self.y + self.h // 2)

    def contains(self, point: tuple[float, float]) -> bool:
        px, py = point
        return self.x <= px < self.x + self.w and self.y <= py < self.y + self.h

    def overlaps(self, other: Rect) -> bool:
        return not (
            self.x + self.w <= other.x or other.x + other.w <= self.x
            or self.y + self.h <= other.y or other.y + other.h <= self.y
        )


@dataclass(frozen=True, slots=True)
class Geometry:
    """The physical panel and how content is rotated on it.

    Args:
        size: the panel's pixel size (width, height) as the video driver sees it.
        mm: the panel's active area in millimetres, in the same orientation.
        rotation: clockwise rotation of the content: 0, 90, 180 or 270.
    """

    size: tuple[int, int]
    mm: tuple[float, float]
    rotation: int = 0

    def __post_init__(self) -> None:
        if self.rotation not in (0, 90, 180, 270):
            raise ValueError(f"rotation must be 0, 90, 180 or 270, not {self.rotation}")

    @property
    def logical_size(self) -> tuple[int, int]:
        """Size of the surface screens draw on (swapped for 90 and 270)."""
        w, h = self.size
        return (h, w) if self.rotation in (90, 270) else (w, h)

    @property
    def px_per_mm(self) -> float:
        """Pixels per millimetre (the smaller of both axes, to stay safe)."""
        return min(self.size[0] / self.mm[0], self.size[1] / self.mm[1])

    def to_logical(self, point: tuple[float, float]) -> tuple[float, float]:
        """Map a touch on the panel to the logical (drawn) coordinates."""
        px, py = point
        w, h = self.size
        if self.rotation == 90:
            return (py, w - 1 - px)
        if self.rotation == 180:
            return (w - 1 - px, h - 1 - py)
        if self.rotation == 270:
            return (h - 1 - py, px)
        return (px, py)

    def to_physical(self, point: tuple[float, float]) -> tuple[float, float]:
        """Inverse of :meth:`to_logical` (tests and scripted taps use it)."""
        lx, ly = point
        w, h = self.size
        if self.rotation == 90:
            return (w - 1 - ly, lx)
        if self.rotation == 180:
            return (w - 1 - lx, h - 1 - ly)
        if self.rotation == 270:
            return (ly, h - 1 - lx)
        return (lx, ly)


@dataclass(frozen=True, slots=True)
class RatingLayout:
    """Where the rating screen's parts go, in logical pixels."""

    question: Rect
    faces: tuple[Rect, ...]  # the drawn face circles' bounding boxes
    targets: tuple[Rect, ...]  # the touch targets (face + label)
    labels: tuple[Rect, ...]
    note: Rect


def rating_layout(geometry: Geometry, scale: int) -> RatingLayout:
    """Lay out ``scale`` faces in a row (landscape) or a column (portrait).

    Targets are as large as the panel allows and never below
    :data:`MIN_TARGET_MM`; the margin between targets is at least 3 mm so a
    fingertip does not hit two.
    """
    w, h = geometry.logical_size
    ppm = geometry.px_per_mm
    margin = max(int(4 * ppm), 8)
    gap = max(int(3 * ppm), 6)
    question_h = max(int(h * (0.20 if w >= h else 0.14)), int(9 * ppm))
    note_h = max(int(h * 0.08), int(5 * ppm))
    question = Rect(margin, margin, w - 2 * margin, question_h)
    note = Rect(margin, h - margin - note_h, w - 2 * margin, note_h)
    top = question.y + question.h + gap
    area_h = note.y - gap - top
    area_w = w - 2 * margin
    portrait = h > w * 1.2
    faces, targets, labels = [], [], []
    if portrait:
        # A column of rows: face on the left, label beside it; best on top.
        cell_h = (area_h - gap * (scale - 1)) // scale
        face = min(cell_h, int(area_w * 0.35))
        for i in range(scale):
            y = top + (scale - 1 - i) * (cell_h + gap)
            target = Rect(margin, y, area_w, cell_h)
            fy = y + (cell_h - face) // 2
            faces.append(Rect(margin + gap, fy, face, face))
            labels.append(Rect(margin + 2 * gap + face, y, area_w - 3 * gap - face, cell_h))
            targets.append(target)
    else:
        # A row: worst on the left, best on the right, label under each face.
        cell_w = (area_w - gap * (scale - 1)) // scale
        label_h = max(int(area_h * 0.2), int(6 * ppm))
        face = min(cell_w - gap, area_h - label_h - gap)
        for i in range(scale):
            x = margin + i * (cell_w + gap)
            target = Rect(x, top, cell_w, area_h)
            fx = x + (cell_w - face) // 2
            fy = top + (area_h - label_h - face) // 2
            faces.append(Rect(fx, fy, face, face))
            labels.append(Rect(x, top + area_h - label_h, cell_w, label_h))
            targets.append(target)
    return RatingLayout(question, tuple(faces), tuple(targets), tuple(labels), note)

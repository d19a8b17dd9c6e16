"""Geometry: millimetre-based layout and rotation, with no drawing.

The panel reports pixels; customers have fingers. Given the surface size and
the configured physical size (``screen_mm``), targets keep their millimetres on
any panel. Rotation is done in code (0/90/180/270, clockwise) and touch points
are rotated back to match.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Action = tuple[str, int | str | None]  # the same shape as display.view.Action

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
class Frame:
    """The parts every screen shares: margins, gaps and the 15 mm minimum, in pixels."""

    w: int
    h: int
    margin: int
    gap: int
    min_target: int
    portrait: bool

    @classmethod
    def of(cls, geometry: Geometry) -> Frame:
        w, h = geometry.logical_size
        ppm = geometry.px_per_mm
        return cls(w, h, max(int(4 * ppm), 8), max(int(3 * ppm), 6),
                   math.ceil(MIN_TARGET_MM * ppm), h > w * 1.2)


@dataclass(frozen=True, slots=True)
class RatingLayout:
    """Where the rating screen's parts go, in logical pixels."""

    question: Rect
    faces: tuple[Rect, ...]  # the drawn face circles' bounding boxes
    targets: tuple[Rect, ...]  # the touch targets (face + label)
    labels: tuple[Rect, ...]
    note: Rect
    hint: Rect | None = None
    lang: Rect | None = None  # the language button

    @property
    def actions(self) -> tuple[tuple[Rect, Action], ...]:
        faces: tuple[tuple[Rect, Action], ...] = tuple((t, ("face", i)) for i, t in enumerate(self.targets, 1))
        return faces + (((self.lang, ("languages", None)),) if self.lang else ())


def rating_layout(geometry: Geometry, scale: int, *, hint: bool = False, lang_button: bool = False) -> RatingLayout:
    """Lay out ``scale`` faces in a row (landscape) or a column (portrait).

    Targets are as large as the panel allows and never below
    :data:`MIN_TARGET_MM`; the margin between targets is at least 3 mm so a
    fingertip does not hit two. The bottom band holds the "anonymous" note and,
    with several languages, the language button (at least 15 mm high).
    """
    f = Frame.of(geometry)
    w, h, margin, gap = f.w, f.h, f.margin, f.gap
    ppm = geometry.px_per_mm
    question_h = max(int(h * (0.15 if not f.portrait else 0.10)), int(9 * ppm))
    hint_h = max(int(h * (0.07 if not f.portrait else 0.04)), int(5 * ppm)) if hint else 0
    note_h = max(int(h * 0.08), int(5 * ppm))
    band_h = max(note_h, f.min_target) if lang_button else note_h
    band_y = h - margin - band_h
    lang = None
    note = Rect(margin, band_y, w - 2 * margin, band_h)
    area_end = band_y - gap
    if lang_button:
        lang_w = max(f.min_target * 2, int((w - 2 * margin) * (0.34 if not f.portrait else 0.5)))
        lang = Rect(w - margin - lang_w, band_y, lang_w, band_h)
        note = Rect(margin, band_y, w - 2 * margin - lang_w - gap, band_h)
        if f.portrait:  # too narrow beside the button: the note gets a row of its own
            note = Rect(margin, band_y - gap - note_h, w - 2 * margin, note_h)
            area_end = note.y - gap
    if f.portrait:  # the faces' rows come first: short of height (a band above), the texts give some
        short = scale * f.min_target + gap * (scale - 1) - (area_end - margin - question_h - hint_h - gap)
        if short > 0 and hint:
            give = min(short, max(0, hint_h - int(4 * ppm)))
            hint_h, short = hint_h - give, short - give
        if short > 0:
            question_h -= min(short, max(0, question_h - int(7 * ppm)))
    question = Rect(margin, margin, w - 2 * margin, question_h)
    hint_rect = Rect(margin, question.y + question_h, w - 2 * margin, hint_h) if hint else None
    top = question.y + question_h + hint_h + gap
    area_h = area_end - top
    area_w = w - 2 * margin
    faces, targets, labels = [], [], []
    if f.portrait:
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
        # Room for two lines at 4 mm: every shipped language's labels fit at one readable size.
        label_h = max(int(area_h * 0.2), int(10 * ppm))
        face = min(cell_w - gap, area_h - label_h - gap)
        for i in range(scale):
            x = margin + i * (cell_w + gap)
            target = Rect(x, top, cell_w, area_h)
            fx = x + (cell_w - face) // 2
            fy = top + (area_h - label_h - face) // 2
            faces.append(Rect(fx, fy, face, face))
            labels.append(Rect(x, top + area_h - label_h, cell_w, label_h))
            targets.append(target)
    return RatingLayout(question, tuple(faces), tuple(targets), tuple(labels), note, hint_rect, lang)


def _enough_cols(area: Rect, n: int, cols: int, f: Frame) -> int:
    """``cols``, or more while the rows would be lower than a target may be (a band took height)."""
    while cols < n and (area.h - f.gap * (math.ceil(n / cols) - 1)) // math.ceil(n / cols) < f.min_target:
        cols += 1
    return cols


def _grid(area: Rect, n: int, cols: int, gap: int) -> list[Rect]:
    """``n`` equal cells in ``cols`` columns filling ``area``, row by row."""
    rows = math.ceil(n / cols)
    cw = (area.w - gap * (cols - 1)) // cols
    ch = (area.h - gap * (rows - 1)) // rows
    return [Rect(area.x + (i % cols) * (cw + gap), area.y + (i // cols) * (ch + gap), cw, ch) for i in range(n)]


@dataclass(frozen=True, slots=True)
class FollowUpLayout:
    """The follow-up: the chosen face and the question on top, chips, then skip."""

    face: Rect
    title: Rect
    chips: tuple[Rect, ...]
    skip: Rect
    note: Rect
    back: Rect | None = None  # "change answer"
    countdown: Rect | None = None  # the bar that drains until the rating is stored alone

    def actions(self, keys: tuple[str, ...]) -> tuple[tuple[Rect, Action], ...]:
        chips: tuple[tuple[Rect, Action], ...] = tuple(
            (r, ("reason", k)) for r, k in zip(self.chips, keys, strict=True))
        back: tuple[tuple[Rect, Action], ...] = () if self.back is None else ((self.back, ("back", None)),)
        return chips + ((self.skip, ("skip", None)),) + back


def follow_up_layout(geometry: Geometry, n: int, *, back: bool = False) -> FollowUpLayout:
    """Lay out ``n`` reason chips (2 to 8) in a grid, a countdown bar over them, and the
    bottom band: "change answer" (with ``back``) on the left, "skip" on the right."""
    f = Frame.of(geometry)
    w, h, margin, gap = f.w, f.h, f.margin, f.gap
    header_h = max(int(h * (0.2 if not f.portrait else 0.12)), f.min_target)
    face = Rect(margin, margin, header_h, header_h)
    title = Rect(margin + header_h + gap, margin, w - 2 * margin - header_h - gap, header_h)
    band_h = max(int(h * (0.16 if not f.portrait else 0.1)), f.min_target)
    skip_w = max(2 * f.min_target, int((w - 2 * margin) * (0.34 if not f.portrait else 0.5)))
    if back and f.portrait:
        skip_w = (w - 2 * margin - gap) // 2
    band_y = h - margin - band_h
    skip = Rect(w - margin - skip_w, band_y, skip_w, band_h)
    back_rect = None
    left = margin
    if back:
        back_w = skip_w if f.portrait else max(2 * f.min_target, int((w - 2 * margin) * 0.26))
        back_rect = Rect(margin, band_y, back_w, band_h)
        left = margin + back_w + gap
    note = Rect(left, band_y, w - margin - skip_w - gap - left, band_h)
    chips_end = band_y - gap
    if f.portrait:  # too narrow beside the buttons: the note gets a row of its own
        note_h = max(int(5 * geometry.px_per_mm), int(h * 0.035))
        note = Rect(margin, band_y - gap - note_h, w - 2 * margin, note_h)
        chips_end = note.y - gap
    bar_h = max(3, gap // 2)
    countdown = Rect(margin, margin + header_h + (2 * gap - bar_h) // 2, w - 2 * margin, bar_h)
    top = margin + header_h + 2 * gap
    area = Rect(margin, top, w - 2 * margin, chips_end - gap - top)
    if f.portrait:
        cols = 1 if n <= 4 else 2
    else:
        cols = n if n <= 3 else (2 if n == 4 else math.ceil(n / 2))
    return FollowUpLayout(face, title, tuple(_grid(area, n, _enough_cols(area, n, cols, f), gap)), skip, note,
                          back_rect, countdown)


@dataclass(frozen=True, slots=True)
class ListLayout:
    """A title and a grid of equal buttons (languages, and staff screens)."""

    title: Rect
    buttons: tuple[Rect, ...]
    back: Rect | None = None  # back or cancel, at the title's left


def list_layout(geometry: Geometry, n: int, *, title_share: float = 0.18, cols: int | None = None,
                back: bool = False) -> ListLayout:
    """A title on top and ``n`` buttons in a grid (3 across in landscape, 1 or 2 in portrait,
    unless ``cols`` says); with ``back``, a back (or cancel) button at the title's left."""
    f = Frame.of(geometry)
    w, h, margin, gap = f.w, f.h, f.margin, f.gap
    title_h = max(int(h * (title_share if not f.portrait else title_share * 0.6)), f.min_target // 2)
    back_rect = None
    if back:
        title_h = max(title_h, f.min_target)
        back_w = max(2 * f.min_target, int((w - 2 * margin) * (0.22 if not f.portrait else 0.34)))
        back_rect = Rect(margin, margin, back_w, title_h)
        title = Rect(margin + back_w + gap, margin, w - 2 * margin - back_w - gap, title_h)
    else:
        title = Rect(margin, margin, w - 2 * margin, title_h)
    top = margin + title_h + gap
    area = Rect(margin, top, w - 2 * margin, h - margin - top)
    if cols is None:
        cols = _enough_cols(area, n, (1 if n <= 4 else 2) if f.portrait else min(n, 3), f)
    return ListLayout(title, tuple(_grid(area, n, cols, gap)), back_rect)

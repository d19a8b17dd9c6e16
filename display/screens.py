"""Drawing the kiosk's screens and mapping touches to answers.

Everything is drawn in code (shapes and text); no image files. Faces use a
colour-blind-safe palette (Okabe–Ito) and carry meaning three ways at once:
colour, expression and a text label.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pygame

from display.layout import Geometry, RatingLayout, Rect, rating_layout
from display.view import MessageView, RatingView, View

BACKGROUND = (247, 247, 242)
INK = (27, 27, 27)  # text and face features: contrast 16:1 on BACKGROUND
MUTED = (74, 74, 74)  # secondary text: 8.5:1 on BACKGROUND
RING = (0, 90, 181)  # pressed highlight
VERMILLION, ORANGE, YELLOW, SKY, GREEN = (213, 94, 0), (230, 159, 0), (240, 228, 66), (86, 180, 233), (0, 158, 115)
PALETTES = {
    3: (VERMILLION, YELLOW, GREEN),
    4: (VERMILLION, ORANGE, SKY, GREEN),
    5: (VERMILLION, ORANGE, YELLOW, SKY, GREEN),
}

# Fonts with wide script coverage first; pygame's bundled font is the fallback.
FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
)
BOLD_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Bold.ttf",
)


def _first_existing(paths: tuple[str, ...]) -> str | None:
    return next((p for p in paths if Path(p).exists()), None)


@lru_cache(maxsize=64)
def font(size: int, bold: bool = False) -> pygame.font.Font:
    """A font at ``size`` pixels (cached: fonts are costly to open)."""
    if not pygame.font.get_init():
        pygame.font.init()
    return pygame.font.Font(_first_existing(BOLD_CANDIDATES if bold else FONT_CANDIDATES), size)


def fit_text(text: str, box: Rect, *, bold: bool = False, max_lines: int = 2) -> tuple[int, list[str]]:
    """The largest font size (and line breaks) at which ``text`` fits ``box``."""
    size = max(8, int(box.h / (1.25 if max_lines == 1 else 1.0)))
    while size > 8:
        lines = _wrap(text, font(size, bold), box.w, max_lines)
        if lines is not None and len(lines) * font(size, bold).get_linesize() <= box.h:
            return size, lines
        size = int(size * 0.92)
    return 8, [text]


def _wrap(text: str, f: pygame.font.Font, width: int, max_lines: int) -> list[str] | None:
    lines: list[str] = []
    current = ""
    for word in text.split():
        trial = f"{current} {word}".strip()
        if f.size(trial)[0] <= width:
            current = trial
            continue
        if not current or f.size(word)[0] > width:
            return None
        lines.append(current)
        current = word
    lines.append(current)
    return lines if len(lines) <= max_lines else None


def draw_text(surface: pygame.Surface, text: str, box: Rect, color: tuple[int, int, int], *,
              bold: bool = False, max_lines: int = 2, align: str = "center",
              max_size: int | None = None) -> None:
    """Draw ``text`` as large as fits in ``box`` (at most ``max_size``), centred vertically."""
    size, lines = fit_text(text, box, bold=bold, max_lines=max_lines)
    if max_size is not None and size > max_size:
        size, lines = max_size, _wrap(text, font(max_size, bold), box.w, max_lines) or [text]
    f = font(size, bold)
    line_h = f.get_linesize()
    y = box.y + (box.h - line_h * len(lines)) // 2
    for line in lines:
        img = f.render(line, True, color)
        x = box.x + (box.w - img.get_width()) // 2 if align == "center" else box.x
        surface.blit(img, (x, y))
        y += line_h


def draw_face(surface: pygame.Surface, box: Rect, mood: float, color: tuple[int, int, int],
              pressed: bool = False) -> None:
    """A round face; ``mood`` from -1 (very unhappy) to +1 (very happy)."""
    cx, cy = box.center
    r = box.w // 2
    if pressed:
        pygame.draw.circle(surface, RING, (cx, cy), r, width=max(4, r // 8))
        r = int(r * 0.86)
    pygame.draw.aacircle(surface, color, (cx, cy), r)
    pygame.draw.circle(surface, color, (cx, cy), r - 1)
    pygame.draw.aacircle(surface, INK, (cx, cy), r, width=max(2, r // 30))
    eye = max(2, r // 9)
    for dx in (-0.33, 0.33):
        pygame.draw.aacircle(surface, INK, (cx + int(dx * r), cy - int(0.25 * r)), eye)
        pygame.draw.circle(surface, INK, (cx + int(dx * r), cy - int(0.25 * r)), eye - 1)
    # The mouth: a parabola whose middle drops for a smile and rises for a frown.
    half = 0.42 * r
    thick = max(2, r // 11)
    for i in range(25):
        t = -1 + i / 12
        x = cx + t * half
        y = cy + 0.36 * r + mood * 0.2 * r * (1 - t * t) - mood * 0.1 * r
        pygame.draw.aacircle(surface, INK, (int(x), int(y)), thick // 2 + 1)
        pygame.draw.circle(surface, INK, (int(x), int(y)), thick // 2)


def mood(rating: int, scale: int) -> float:
    """-1 for the worst rating, +1 for the best."""
    return -1 + 2 * (rating - 1) / (scale - 1)


class Display:
    """Draws views on a surface (rotated as configured) and maps touches back.

    Args:
        target: the surface to show (the display surface, or any surface).
        geometry: the panel's pixel and millimetre size and the rotation.
    """

    def __init__(self, target: pygame.Surface, geometry: Geometry) -> None:
        if target.get_size() != geometry.size:
            raise ValueError(f"surface is {target.get_size()} but geometry says {geometry.size}")
        self.target = target
        self.geometry = geometry
        self._canvas = target if geometry.rotation == 0 else pygame.Surface(geometry.logical_size)

    def layout(self, view: RatingView) -> RatingLayout:
        """The rating screen's layout for this panel (cached per scale)."""
        return _cached_layout(self.geometry, view.scale)

    def render(self, view: View) -> None:
        """Draw ``view`` onto the target surface (the caller flips the display)."""
        canvas = self._canvas
        canvas.fill(BACKGROUND)
        if isinstance(view, RatingView):
            self._rating(canvas, view)
        else:
            self._message(canvas, view)
        if canvas is not self.target:
            self.target.blit(pygame.transform.rotate(canvas, -self.geometry.rotation), (0, 0))

    def hit(self, view: View, point: tuple[float, float]) -> int | None:
        """The rating whose target contains a touch at panel ``point``, if any."""
        if not isinstance(view, RatingView):
            return None
        logical = self.geometry.to_logical(point)
        for rating, target in enumerate(self.layout(view).targets, start=1):
            if target.contains(logical):
                return rating
        return None

    def target_center(self, view: RatingView, rating: int) -> tuple[int, int]:
        """The panel point at the centre of a face (for scripted taps)."""
        x, y = self.geometry.to_physical(self.layout(view).faces[rating - 1].center)
        return (int(x), int(y))

    def _rating(self, canvas: pygame.Surface, view: RatingView) -> None:
        lay = self.layout(view)
        draw_text(canvas, view.question, lay.question, INK, bold=True)
        colors = PALETTES[view.scale]
        # One size for all labels (the largest at which every one fits, bold
        # included, since a pressed label turns bold): uneven labels look broken.
        label_size = min(fit_text(text, box, bold=True)[0] for text, box in zip(view.labels, lay.labels, strict=True))
        for i, (face, label) in enumerate(zip(lay.faces, lay.labels, strict=True)):
            rating = i + 1
            pressed = view.pressed == rating
            draw_face(canvas, face, mood(rating, view.scale), colors[i], pressed)
            draw_text(canvas, view.labels[i], label, RING if pressed else INK, bold=pressed,
                      max_size=label_size)
        draw_text(canvas, view.note, lay.note, MUTED, max_lines=1)

    def _message(self, canvas: pygame.Surface, view: MessageView) -> None:
        w, h = canvas.get_size()
        mark = min(w, h) // 4
        cx, cy = w // 2, int(h * 0.32)
        if view.tone == "thanks":
            pygame.draw.aacircle(canvas, GREEN, (cx, cy), mark // 2)
            pygame.draw.circle(canvas, GREEN, (cx, cy), mark // 2 - 1)
            pts = [(cx - mark * 0.22, cy + mark * 0.02), (cx - mark * 0.05, cy + mark * 0.18),
                   (cx + mark * 0.24, cy - mark * 0.16)]
            width = max(4, mark // 10)
            pygame.draw.lines(canvas, BACKGROUND, False, pts, width)
            for x, y in pts:  # round joints and caps
                pygame.draw.circle(canvas, BACKGROUND, (int(x), int(y)), width // 2)
        else:
            pygame.draw.aacircle(canvas, ORANGE, (cx, cy), mark // 2)
            pygame.draw.circle(canvas, ORANGE, (cx, cy), mark // 2 - 1)
            draw_text(canvas, "!", Rect(cx - mark // 2, cy - mark // 2, mark, mark), INK, bold=True, max_lines=1)
        margin = w // 12
        draw_text(canvas, view.title, Rect(margin, int(h * 0.52), w - 2 * margin, int(h * 0.18)), INK, bold=True)
        if view.body:
            draw_text(canvas, view.body, Rect(margin, int(h * 0.72), w - 2 * margin, int(h * 0.14)), MUTED)


@lru_cache(maxsize=16)
def _cached_layout(geometry: Geometry, scale: int) -> RatingLayout:
    return rating_layout(geometry, scale)

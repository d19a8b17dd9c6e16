"""Drawing the kiosk's screens and mapping touches to answers.

Everything is drawn in code (shapes and text); no image files. Faces use a
colour-blind-safe palette (Okabe–Ito) and carry meaning three ways at once:
colour, expression and a text label.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pygame

from display import palette
from display.layout import (
    MIN_TARGET_MM,
    FollowUpLayout,
    Frame,
    Geometry,
    ListLayout,
    RatingLayout,
    Rect,
    follow_up_layout,
    list_layout,
    rating_layout,
)
from display.palette import mood
from display.view import (
    Action,
    FollowUpView,
    LanguageView,
    MessageView,
    PinView,
    RatingView,
    StatusView,
    View,
)

BACKGROUND = (247, 247, 242)
INK = (27, 27, 27)  # text and face features: contrast 16:1 on BACKGROUND
MUTED = (74, 74, 74)  # secondary text: 8.5:1 on BACKGROUND
RING = (0, 90, 181)  # pressed highlight: 6.5:1 on BACKGROUND
BUTTON = (255, 255, 255)  # chips and buttons: INK on it is 17:1
BUTTON_EDGE = (118, 118, 118)  # 3:1 against BACKGROUND (a non-text boundary)
CHOSEN_INK = (255, 255, 255)  # text on RING: 6.9:1
MIN_TEXT_PX = 10
ORANGE, GREEN = palette.rgb(palette.ORANGE), palette.rgb(palette.GREEN)
BAND = palette.rgb(palette.YELLOW)  # the test-mode band: INK on it is 13:1
TRACK = (222, 222, 214)  # the follow-up countdown's empty part
#: The face colours as RGB, worst first, per scale (defined once in :mod:`display.palette`).
PALETTES = {scale: tuple(palette.rgb(c) for c in colours) for scale, colours in palette.FACE_COLOURS.items()}

# DejaVu Sans ships inside the package (Latin, Greek, Cyrillic; its licence is
# display/fonts/LICENSE-DejaVu.txt), so every language has its glyphs anywhere.
FONT_DIR = Path(__file__).parent / "fonts"
FONT_CANDIDATES = (
    str(FONT_DIR / "DejaVuSans.ttf"),
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
)
BOLD_CANDIDATES = (
    str(FONT_DIR / "DejaVuSans-Bold.ttf"),
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Bold.ttf",
)


def _first_existing(paths: tuple[str, ...]) -> str | None:
    return next((p for p in paths if Path(p).exists()), None)


@lru_cache(maxsize=256)
def font(size: int, bold: bool = False) -> pygame.font.Font:
    """A font at ``size`` pixels (cached: fonts are costly to open)."""
    if not pygame.font.get_init():
        pygame.font.init()
    return pygame.font.Font(_first_existing(BOLD_CANDIDATES if bold else FONT_CANDIDATES), size)


@dataclass(frozen=True, slots=True)
class TextFit:
    """One text drawn in the last frame: its box, the size used and whether it fit."""

    text: str
    box: Rect
    size: int
    fits: bool


@lru_cache(maxsize=4096)
def _fit(text: str, box: Rect, bold: bool, max_lines: int) -> tuple[int, tuple[str, ...], bool]:
    size, lines, fits = _fit_uncached(text, box, bold=bold, max_lines=max_lines)
    return size, tuple(lines), fits


def fit_text(text: str, box: Rect, *, bold: bool = False, max_lines: int = 2) -> tuple[int, list[str], bool]:
    """The largest font size (and line breaks) at which ``text`` fits ``box``; and whether it did.

    Cached: a screen fits the same texts into the same boxes on every redraw.
    """
    size, lines, fits = _fit(text, box, bold, max_lines)
    return size, list(lines), fits


def _fit_uncached(text: str, box: Rect, *, bold: bool = False, max_lines: int = 2) -> tuple[int, list[str], bool]:
    """The largest font size (and line breaks) at which ``text`` fits ``box``; and whether it did."""
    def fitting(size: int) -> list[str] | None:
        lines = _wrap(text, font(size, bold), box.w, max_lines)
        return lines if lines is not None and len(lines) * font(size, bold).get_linesize() <= box.h else None

    size = max(MIN_TEXT_PX, int(box.h / (1.25 if max_lines == 1 else 1.0)))
    too_big: int | None = None
    while size >= MIN_TEXT_PX:
        lines = fitting(size)
        if lines is not None:
            # Coarse steps found a size that fits: take each pixel up to the one that did not.
            for larger in range(size + 1, too_big or size + 1):
                more = fitting(larger)
                if more is None:
                    break
                size, lines = larger, more
            return size, lines, True
        too_big, size = size, min(size - 1, int(size * 0.92))
    return MIN_TEXT_PX, [text], False


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
              max_size: int | None = None, log: list[TextFit] | None = None) -> None:
    """Draw ``text`` as large as fits in ``box`` (at most ``max_size``), centred vertically.

    ``log`` receives a :class:`TextFit` (the layout checks read it).
    """
    size, lines, fits = fit_text(text, box, bold=bold, max_lines=max_lines)
    if max_size is not None and size > max_size:
        size, lines = max_size, _wrap(text, font(max_size, bold), box.w, max_lines) or [text]
    f = font(size, bold)
    line_h = f.get_linesize()
    y = box.y + (box.h - line_h * len(lines)) // 2
    for line in lines:
        img = f.render(line, True, color)
        x = box.x + (box.w - img.get_width()) // 2 if align == "center" else box.x
        fits = fits and img.get_width() <= box.w
        surface.blit(img, (x, y))
        y += line_h
    if log is not None:
        log.append(TextFit(text, box, size, fits))


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


def draw_button(surface: pygame.Surface, box: Rect, *, chosen: bool = False) -> None:
    """A rounded button: white with a grey edge, or filled blue when chosen."""
    radius = max(6, min(box.w, box.h) // 6)
    rect = pygame.Rect(box.x, box.y, box.w, box.h)
    pygame.draw.rect(surface, RING if chosen else BUTTON, rect, border_radius=radius)
    pygame.draw.rect(surface, RING if chosen else BUTTON_EDGE, rect, width=max(2, box.h // 40),
                     border_radius=radius)


def draw_globe(surface: pygame.Surface, center: tuple[int, int], r: int) -> None:
    """A small globe drawn in lines (the language button's sign, no font needed)."""
    cx, cy = center
    w = max(2, r // 7)
    pygame.draw.circle(surface, INK, center, r, width=w)
    pygame.draw.ellipse(surface, INK, pygame.Rect(cx - r // 2, cy - r, r, 2 * r), width=w)
    pygame.draw.line(surface, INK, (cx - r, cy), (cx + r, cy), w)
    pygame.draw.line(surface, INK, (cx, cy - r), (cx, cy + r), w)


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
        self._full = target if geometry.rotation == 0 else pygame.Surface(geometry.logical_size)
        self.texts: list[TextFit] = []  # every text of the last frame (layout checks)
        #: The band's text on every screen while it shows (e.g. test mode); "" for none.
        self.band = ""
        self._show_band(False)

    def _show_band(self, on: bool) -> None:
        """Lay screens out below a band across the top (on) or over the whole panel (off).

        Screens are laid out on a rotation-free geometry of the area they get, so
        every target keeps its millimetres under the band too; touches are shifted back.
        """
        lw, lh = self.geometry.logical_size
        mm_w, mm_h = self.geometry.mm if self.geometry.rotation in (0, 180) else self.geometry.mm[::-1]
        top = band_height(self.geometry) if on else 0
        self._top = top
        self._lay = Geometry((lw, lh - top), (mm_w, mm_h * (lh - top) / lh), 0)
        self._canvas = self._full.subsurface((0, top, lw, lh - top)) if top else self._full

    # ------------------------------------------------------------------ layout and hits

    def layout(self, view: RatingView) -> RatingLayout:
        """The rating screen's layout for this panel (cached)."""
        return _rating_layout(self._lay, view.scale, bool(view.hint), bool(view.lang_button))

    def actions(self, view: View) -> tuple[tuple[Rect, Action], ...]:
        """Every touch target of ``view`` with what it does, in logical pixels."""
        if isinstance(view, RatingView):
            return self.layout(view).actions
        if isinstance(view, FollowUpView):
            return _follow_up_layout(self._lay, len(view.reasons), bool(view.back)).actions(
                tuple(k for k, _ in view.reasons))
        if isinstance(view, LanguageView):
            lay = _list_layout(self._lay, len(view.options), None, bool(view.back))
            back: tuple[tuple[Rect, Action], ...] = () if lay.back is None else ((lay.back, ("back", None)),)
            return tuple((r, ("lang", code)) for r, (code, _) in zip(lay.buttons, view.options, strict=True)) + back
        if isinstance(view, PinView):
            lay = _pin_layout(self._lay, bool(view.cancel))
            cancel: tuple[tuple[Rect, Action], ...] = () if lay.back is None else ((lay.back, ("pin_cancel", None)),)
            return tuple((r, key) for r, key in zip(lay.buttons, PIN_KEYS, strict=True)) + cancel
        if isinstance(view, StatusView):
            return tuple((r, a) for r, a in zip(_status_buttons(self._lay), STATUS_ACTIONS, strict=True)
                         if view.can_quit or a[0] != "quit")
        return ()

    def corner(self) -> Rect:
        """The hidden staff corner (top left, one minimum target square)."""
        side = Frame.of(self.geometry).min_target
        return Rect(0, 0, side, side)

    def hit(self, view: View, point: tuple[float, float]) -> Action | None:
        """What a touch at panel ``point`` does on ``view`` (None: nothing)."""
        logical = self.geometry.to_logical(point)
        content = (logical[0], logical[1] - self._top)
        for rect, action in self.actions(view):
            if rect.contains(content):
                return action
        if self.corner().contains(logical):
            return ("corner", None)
        return None

    def center_of(self, view: View, action: Action) -> tuple[int, int]:
        """The panel point at the centre of the target doing ``action`` (scripted taps)."""
        if isinstance(view, RatingView) and action[0] == "face":
            point = self.layout(view).faces[int(action[1] or 0) - 1].center
        else:
            rects = [r for r, a in self.actions(view) if a == action]
            if not rects:
                raise LookupError(f"no target {action} on {type(view).__name__}")
            point = rects[0].center
        x, y = self.geometry.to_physical((point[0], point[1] + self._top))
        return (int(x), int(y))

    def target_center(self, view: RatingView, rating: int) -> tuple[int, int]:
        """The panel point at the centre of a face (for scripted taps)."""
        return self.center_of(view, ("face", rating))

    # ------------------------------------------------------------------ drawing

    def render(self, view: View, band: str = "") -> None:
        """Draw ``view`` onto the target surface (the caller flips the display).

        Args:
            view: the screen.
            band: a message across the top of the screen, above the view (test mode); "" for none.
        """
        if bool(band) != bool(self.band):
            self._show_band(bool(band))
        self.band = band
        self._full.fill(BACKGROUND)
        self.texts = []
        if band:
            self._band(band)
        canvas = self._canvas
        if isinstance(view, RatingView):
            self._rating(canvas, view)
        elif isinstance(view, FollowUpView):
            self._follow_up(canvas, view)
        elif isinstance(view, LanguageView):
            self._languages(canvas, view)
        elif isinstance(view, PinView):
            self._pin(canvas, view)
        elif isinstance(view, StatusView):
            self._status(canvas, view)
        else:
            self._message(canvas, view)
        if self._full is not self.target:
            self.target.blit(pygame.transform.rotate(self._full, -self.geometry.rotation), (0, 0))

    def _band(self, text: str) -> None:
        """Hazard stripes and a message across the top: not mistakable for part of the survey."""
        w, h = self._full.get_width(), self._top
        self._full.fill(BAND, (0, 0, w, h))
        stripe = max(6, h // 3)
        ends = min(2 * h, w // 12)  # striped ends, the rest carries the text
        for x0 in (0, w - ends):
            clip = self._full.get_clip()
            self._full.set_clip((x0, 0, ends, h))
            for x in range(x0 - h, x0 + ends + h, 2 * stripe):
                pygame.draw.polygon(self._full, INK, [(x, h), (x + stripe, h), (x + stripe + h, 0), (x + h, 0)])
            self._full.set_clip(clip)
        pad = max(4, h // 8)
        self._text(self._full, text, Rect(ends + pad, pad // 2, w - 2 * ends - 2 * pad, h - pad), INK, bold=True,
                   max_lines=2)

    def _text(self, canvas: pygame.Surface, text: str, box: Rect, color: tuple[int, int, int], **kw: object) -> None:
        draw_text(canvas, text, box, color, log=self.texts, **kw)  # type: ignore[arg-type]

    def _rating(self, canvas: pygame.Surface, view: RatingView) -> None:
        lay = self.layout(view)
        self._text(canvas, view.question, lay.question, INK, bold=True)
        if view.hint and lay.hint is not None:
            self._text(canvas, view.hint, lay.hint, RING, max_lines=1)
        colors = PALETTES[view.scale]
        # One size for all labels, in every language (the largest at which each one fits,
        # bold included, since a pressed label turns bold): uneven labels look broken.
        label_size = min(fit_text(text, box, bold=True)[0] for labels in (view.labels, *view.all_labels)
                         for text, box in zip(labels, lay.labels, strict=True))
        label_size = min(label_size, _cap(canvas, 0.065))  # labels must not shout over the question
        for i, (face, label) in enumerate(zip(lay.faces, lay.labels, strict=True)):
            rating = i + 1
            pressed = view.pressed == rating
            draw_face(canvas, face, mood(rating, view.scale), colors[i], pressed)
            self._text(canvas, view.labels[i], label, RING if pressed else INK, bold=pressed, max_size=label_size)
        self._text(canvas, view.note, lay.note, MUTED, max_lines=1,
                   max_size=max(MIN_TEXT_PX, min(int(lay.note.h * 0.45), _cap(canvas, 0.045))))
        if lay.lang is not None:
            draw_button(canvas, lay.lang)
            r = min(lay.lang.h // 4, lay.lang.w // 10)
            pad = lay.lang.h // 4
            draw_globe(canvas, (lay.lang.x + pad + r, lay.lang.y + lay.lang.h // 2), r)
            text_x = lay.lang.x + 2 * pad + 2 * r
            box = Rect(text_x, lay.lang.y + pad // 2, lay.lang.x + lay.lang.w - text_x - pad // 2, lay.lang.h - pad)
            self._text(canvas, view.lang_button, box, INK, max_lines=1,
                       max_size=min(int(lay.lang.h * 0.4), _cap(canvas, 0.05)))

    def _follow_up(self, canvas: pygame.Surface, view: FollowUpView) -> None:
        lay = _follow_up_layout(self._lay, len(view.reasons), bool(view.back))
        draw_face(canvas, lay.face, mood(view.rating, view.scale), PALETTES[view.scale][view.rating - 1], True)
        self._text(canvas, view.title, lay.title, INK, bold=True, align="left")
        size = min(fit_text(label, _inset(box), bold=True)[0] for (_, label), box in zip(view.reasons, lay.chips,
                                                                                      strict=True))
        size = min(size, int(min(c.h for c in lay.chips) * 0.4), _cap(canvas, 0.065))
        for (key, label), box in zip(view.reasons, lay.chips, strict=True):
            chosen = key == view.chosen
            draw_button(canvas, box, chosen=chosen)
            self._text(canvas, label, _inset(box), CHOSEN_INK if chosen else INK, bold=True, max_size=size)
        button_size = int(lay.skip.h * 0.4)
        if lay.back is not None:
            button_size = min(button_size, fit_text(view.back, _inset(lay.back), max_lines=1)[0],
                              fit_text(view.skip, _inset(lay.skip), max_lines=1)[0])
            draw_button(canvas, lay.back)
            self._text(canvas, view.back, _inset(lay.back), INK, max_lines=1, max_size=button_size)
        draw_button(canvas, lay.skip)
        self._text(canvas, view.skip, _inset(lay.skip), INK, max_lines=1, max_size=button_size)
        if view.total_s and lay.countdown is not None:  # drains as the follow-up's time runs out
            bar = lay.countdown
            pygame.draw.rect(canvas, TRACK, pygame.Rect(bar.x, bar.y, bar.w, bar.h), border_radius=bar.h // 2)
            left = int(bar.w * min(1.0, view.seconds_left / view.total_s))
            if left > 0:
                pygame.draw.rect(canvas, RING, pygame.Rect(bar.x, bar.y, left, bar.h), border_radius=bar.h // 2)
        if view.note:
            self._text(canvas, view.note, lay.note, MUTED, max_lines=1,
                       max_size=max(MIN_TEXT_PX, min(int(lay.note.h * 0.6), _cap(canvas, 0.045))))

    def _languages(self, canvas: pygame.Surface, view: LanguageView) -> None:
        lay = _list_layout(self._lay, len(view.options), None, bool(view.back))
        self._text(canvas, view.title, lay.title, INK, bold=True, max_size=_cap(canvas, 0.08))
        if lay.back is not None:
            self._back_button(canvas, lay.back, view.back)
        size = min(fit_text(name, _inset(box))[0] for (_, name), box in zip(view.options, lay.buttons, strict=True))
        size = min(size, int(min(b.h for b in lay.buttons) * 0.35), _cap(canvas, 0.07))
        for (code, name), box in zip(view.options, lay.buttons, strict=True):
            chosen = code == view.current
            draw_button(canvas, box, chosen=chosen)
            self._text(canvas, name, _inset(box), CHOSEN_INK if chosen else INK, max_lines=1, max_size=size)

    def _pin(self, canvas: pygame.Surface, view: PinView) -> None:
        lay = _pin_layout(self._lay, bool(view.cancel))
        if lay.back is not None:
            self._back_button(canvas, lay.back, view.cancel)
        title = view.title + "  " + "● " * view.entered if view.entered else view.title
        if view.message:
            title = f"{title} — {view.message}"
        self._text(canvas, title, lay.title, INK, bold=True, max_size=_cap(canvas, 0.08))
        size = min(int(min(b.h for b in lay.buttons) * 0.4), _cap(canvas, 0.08))
        for box, (kind, value) in zip(lay.buttons, PIN_KEYS, strict=True):
            draw_button(canvas, box)
            label = str(value) if kind == "digit" else PIN_LABELS[kind]
            self._text(canvas, label, _inset(box), INK, max_lines=1, max_size=size, bold=kind == "pin_ok")

    def _back_button(self, canvas: pygame.Surface, box: Rect, label: str) -> None:
        draw_button(canvas, box)
        self._text(canvas, "‹ " + label, _inset(box), INK, max_lines=1,
                   max_size=min(int(box.h * 0.4), _cap(canvas, 0.06)))

    def _status(self, canvas: pygame.Surface, view: StatusView) -> None:
        f = Frame.of(self._lay)
        buttons = _status_buttons(self._lay)
        title = Rect(f.margin, f.margin, f.w - 2 * f.margin, max(f.min_target // 2, int(f.h * 0.08)))
        self._text(canvas, view.title, title, INK, bold=True, align="left")
        top = title.y + title.h + f.gap
        bottom = buttons[0].y - f.gap
        n = max(1, len(view.lines))
        line_h = (bottom - top) // n
        key_w = int((f.w - 2 * f.margin) * (0.3 if not f.portrait else 0.36))
        boxes = [(Rect(f.margin, top + i * line_h, key_w, line_h),
                  Rect(f.margin + key_w + f.gap, top + i * line_h, f.w - 2 * f.margin - key_w - f.gap, line_h))
                 for i in range(n)]
        # One size for every line (the largest at which all fit): a table, not a ransom note.
        # A value may wrap (an error message; three lines on a tall portrait panel), a name may not.
        wrap, key_wrap = (3, 2) if f.portrait else (2, 1)
        size = min([max(MIN_TEXT_PX, min(int(line_h * 0.6), _cap(canvas, 0.045)))]
                   + [fit_text(t, b, max_lines=n)[0] for (k, v), (kb, vb) in zip(view.lines, boxes, strict=False)
                      for t, b, n in ((k, kb, key_wrap), (v, vb, wrap))])
        for (key, value), (kb, vb) in zip(view.lines, boxes, strict=False):
            self._text(canvas, key, kb, MUTED, max_lines=key_wrap, align="left", max_size=size)
            self._text(canvas, value, vb, INK, max_lines=wrap, align="left", max_size=size)
        labels = view.buttons
        size = min([int(buttons[0].h * 0.3), _cap(canvas, 0.05)]
                   + [fit_text(label, _inset(box))[0] for box, label in zip(buttons, labels, strict=True)])
        for box, label, (kind, _) in zip(buttons, labels, STATUS_ACTIONS, strict=True):
            if kind == "quit" and not view.can_quit:
                continue
            chosen = kind == "test_mode" and view.test_mode
            draw_button(canvas, box, chosen=chosen)
            self._text(canvas, label, _inset(box), CHOSEN_INK if chosen else INK, max_lines=2, max_size=size)

    def _message(self, canvas: pygame.Surface, view: MessageView) -> None:
        w, h = canvas.get_size()
        mark = min(w, h) // 4
        cx, cy = w // 2, int(h * (0.32 if w >= h else 0.4))
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
        title = Rect(margin, int(h * 0.52), w - 2 * margin, int(h * 0.18))
        # A short title stays on one line unless that makes it much smaller ("Thank / you!" looks broken).
        one = fit_text(view.title, title, bold=True, max_lines=1)
        two = fit_text(view.title, title, bold=True, max_lines=2)
        lines = 1 if one[2] and one[0] >= 0.6 * two[0] else 2
        self._text(canvas, view.title, title, INK, bold=True, max_lines=lines)
        if view.body:
            self._text(canvas, view.body, Rect(margin, int(h * 0.72), w - 2 * margin, int(h * 0.14)), MUTED)


PIN_KEYS: tuple[Action, ...] = (
    *(("digit", d) for d in (1, 2, 3, 4, 5, 6, 7, 8, 9)), ("pin_back", None), ("digit", 0), ("pin_ok", None))
PIN_LABELS = {"pin_back": "←", "pin_ok": "OK"}
STATUS_ACTIONS: tuple[Action, ...] = (("test_mode", None), ("close", None), ("quit", None))


def _cap(canvas: pygame.Surface, share: float) -> int:
    """A text size ceiling: ``share`` of the screen's shorter side."""
    return max(MIN_TEXT_PX, int(min(canvas.get_size()) * share))


def _inset(box: Rect) -> Rect:
    """The text area inside a button (padding on every side)."""
    pad_x, pad_y = max(4, box.w // 14), max(3, box.h // 10)
    return Rect(box.x + pad_x, box.y + pad_y, box.w - 2 * pad_x, box.h - 2 * pad_y)


@lru_cache(maxsize=32)
def _rating_layout(geometry: Geometry, scale: int, hint: bool, lang: bool) -> RatingLayout:
    return rating_layout(geometry, scale, hint=hint, lang_button=lang)


@lru_cache(maxsize=32)
def _follow_up_layout(geometry: Geometry, n: int, back: bool) -> FollowUpLayout:
    return follow_up_layout(geometry, n, back=back)


@lru_cache(maxsize=32)
def _list_layout(geometry: Geometry, n: int, cols: int | None, back: bool = False) -> ListLayout:
    return list_layout(geometry, n, cols=cols, back=back)


def _pin_layout(geometry: Geometry, cancel: bool) -> ListLayout:
    portrait = Frame.of(geometry).portrait
    return _list_layout(geometry, len(PIN_KEYS), 3 if portrait else 6, cancel)


def band_height(geometry: Geometry) -> int:
    """The height of the band across the top: 8 mm, at least 7 % of the screen's height."""
    return max(int(7 * geometry.px_per_mm), int(geometry.logical_size[1] * 0.06))


@lru_cache(maxsize=8)
def _status_buttons(geometry: Geometry) -> tuple[Rect, ...]:
    f = Frame.of(geometry)
    h = max(f.min_target, int(f.h * 0.16))
    area = Rect(f.margin, f.h - f.margin - h, f.w - 2 * f.margin, h)
    cw = (area.w - 2 * f.gap) // 3
    return tuple(Rect(area.x + i * (cw + f.gap), area.y, cw, h) for i in range(3))


__all__ = ["MIN_TARGET_MM", "Display", "TextFit", "draw_face", "draw_text", "fit_text", "mood"]

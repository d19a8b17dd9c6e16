"""Layout checks for every screen, panel size, rotation and shipped language:
every text fits its box, no two targets overlap, every target is at least 15 mm
given ``screen.mm``, and everything stays on the screen."""

from __future__ import annotations

import os

import pygame
import pytest

from device.flow import FlowSettings, FlowState
from device.screenshot import PANEL_MM, SCREENS, render, view_of
from device.views import view_for
from display import texts
from display.layout import MIN_TARGET_MM, Geometry
from display.screens import Display, band_height
from display.view import FollowUpView, LanguageView, PinView, RatingView, View

SIZES = list(PANEL_MM)
MIN_TEXT_MM = 2.5  # font size (about 1.8 mm capitals): readable at arm's length
MIN_LABEL_MM = 4.0  # the faces' labels: what a customer reads to choose


BAND = texts.staff("test_band", minutes=15)


def check(display: Display, view: View, band: str = "") -> None:
    display.render(view, band)
    w, h = display.geometry.logical_size
    ppm = display.geometry.px_per_mm
    bad = [t for t in display.texts if not t.fits]
    assert not bad, f"text does not fit: {bad}"
    small = [t for t in display.texts if t.size / ppm < MIN_TEXT_MM]
    assert not small, f"text under {MIN_TEXT_MM} mm: {small}"
    if isinstance(view, RatingView):  # face labels: one size, the same in every language, readable
        sizes = {t.size for t in display.texts if t.text in view.labels}
        assert len(sizes) == 1, f"labels in {len(sizes)} sizes: {sizes}"
        assert sizes.pop() / ppm >= MIN_LABEL_MM - 0.01, f"labels under {MIN_LABEL_MM} mm"
    for t in display.texts:
        assert t.box.x >= 0 and t.box.y >= 0 and t.box.x + t.box.w <= w and t.box.y + t.box.h <= h
    if band:
        assert display.texts[0].text == band, "the band is drawn"
        h -= band_height(display.geometry)  # targets are laid out below it
    actions = [action for _, action in display.actions(view)]
    if isinstance(view, LanguageView):
        assert ("back", None) in actions, "the language screen has a way back"
    if isinstance(view, PinView):
        assert ("pin_cancel", None) in actions, "the PIN pad has a cancel"
    if isinstance(view, FollowUpView):
        assert ("back", None) in actions and ("skip", None) in actions
    targets = [rect for rect, _ in display.actions(view)]
    for i, rect in enumerate(targets):
        assert min(rect.w, rect.h) / ppm >= MIN_TARGET_MM - 0.01, f"{rect} is under 15 mm"
        assert rect.x >= 0 and rect.y >= 0 and rect.x + rect.w <= w and rect.y + rect.h <= h
        for other in targets[i + 1:]:
            assert not rect.overlaps(other), f"{rect} overlaps {other}"


@pytest.fixture(scope="module")
def pg():
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    pygame.display.init()
    pygame.font.init()
    yield


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
@pytest.mark.parametrize("rotation", [0, 90])
@pytest.mark.parametrize("lang", texts.LANGUAGES)
def test_every_screen_fits(pg, size, rotation, lang) -> None:
    display = Display(pygame.Surface(size), Geometry(size, PANEL_MM[size], rotation))
    for band in ("", BAND):  # with the test-mode band across the top too
        for screen in SCREENS:
            for scale in (3, 4, 5) if screen in ("attract", "rating", "pressed") else (5,):
                check(display, view_of(screen, lang, scale), band)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
@pytest.mark.parametrize("n", [3, 4, 5])
def test_face_labels_have_one_size_in_every_language(pg, size, n) -> None:
    """The label size of a rating screen does not change when the customer changes language."""
    for rotation in (0, 90):
        display = Display(pygame.Surface(size), Geometry(size, PANEL_MM[size], rotation))
        sizes = set()
        for lang in texts.LANGUAGES:
            view = view_for(FlowState("rating", lang), FlowSettings(scale=n, languages=texts.LANGUAGES))
            display.render(view)
            sizes |= {t.size for t in display.texts if t.text in view.labels}  # type: ignore[union-attr]
        assert len(sizes) == 1, (size, rotation, n, sizes)


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
@pytest.mark.parametrize("n", range(2, 9))
def test_two_to_eight_reason_chips_fit(pg, size, n) -> None:
    for rotation in (0, 90):
        display = Display(pygame.Surface(size), Geometry(size, PANEL_MM[size], rotation))
        for lang in texts.LANGUAGES:
            settings = FlowSettings(reasons=texts.REASONS[:n], languages=texts.LANGUAGES)
            view = view_for(FlowState("followup", lang, pressed=1), settings)
            assert isinstance(view, FollowUpView) and len(view.reasons) == n
            check(display, view)


def test_every_language_has_every_text() -> None:
    for lang, table in texts.TEXTS.items():
        assert set(table) == set(texts.TEXTS["en"]), lang
        assert all(value.strip() for value in table.values()), lang
    assert set(texts.STAFF_TEXTS) == set(texts.TEXTS)  # staff screens speak every kiosk language
    for lang, table in texts.STAFF_TEXTS.items():
        assert set(table) == set(texts.STAFF_TEXTS["en"]), lang
        assert all(value.strip() for value in table.values()), lang


def test_the_font_has_every_glyph(pg) -> None:
    from display.screens import font

    f = font(20)
    for lang, table in [*texts.TEXTS.items(), *texts.STAFF_TEXTS.items()]:
        for value in table.values():
            for ch in set(value) - {" "}:
                assert f.metrics(ch)[0] is not None, f"{lang}: no glyph for {ch!r}"


def test_screenshot_writes_any_screen_size_rotation_and_language(tmp_path) -> None:
    out = render("followup", (720, 1280), (88, 155), 270, "el", 5, tmp_path / "f.png")
    img = pygame.image.load(str(out))
    assert img.get_size() == (720, 1280)


def test_text_contrast_is_at_least_4_5(pg) -> None:
    from display import screens as s

    def lum(c: tuple[int, int, int]) -> float:
        def ch(v: int) -> float:
            v2 = v / 255
            return v2 / 12.92 if v2 <= 0.03928 else ((v2 + 0.055) / 1.055) ** 2.4
        r, g, b = (ch(v) for v in c)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    def contrast(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
        hi, lo = sorted((lum(a), lum(b)), reverse=True)
        return (hi + 0.05) / (lo + 0.05)

    pairs = [(s.INK, s.BACKGROUND), (s.MUTED, s.BACKGROUND), (s.RING, s.BACKGROUND), (s.INK, s.BUTTON),
             (s.CHOSEN_INK, s.RING), (s.INK, s.BAND)]
    for fg, bg in pairs:
        assert contrast(fg, bg) >= 4.5, (fg, bg)


@pytest.mark.parametrize("preset", list(texts.PRESETS))
def test_every_reason_preset_fits_in_every_language(pg, preset) -> None:
    for size in SIZES:
        for rotation in (0, 90):
            display = Display(pygame.Surface(size), Geometry(size, PANEL_MM[size], rotation))
            for lang in texts.LANGUAGES:
                settings = FlowSettings(reasons=texts.PRESETS[preset], languages=texts.LANGUAGES)
                check(display, view_for(FlowState("followup", lang, pressed=1), settings))

"""The survey editor's preview is the kiosk's own screen: pixel for pixel what a running kiosk draws."""

from __future__ import annotations

import io
from typing import Any

import pygame
import pytest

from central import preview
from device.events import CONFIG_EVENT
from tests.support.kiosk import HeadlessKiosk

CONFIG: dict[str, Any] = {
    "schema": 1, "version": 4, "scale": 4, "followup_ratings": [1, 2],
    "question": {"en": "How was the luggage office today?", "de": "Wie war die Gepäckaufbewahrung heute?"},
    "followup_question": {"en": "What went wrong?"},
    "reasons": [{"key": "queue", "label": {"en": "The queue", "de": "Die Schlange"}},
                {"key": "price", "label": {"en": "The price"}}],
    "languages": ["en", "de"], "default_lang": "en",
}


def pixels(png: bytes) -> bytes:
    surface = pygame.image.load(io.BytesIO(png), "preview.png")
    return pygame.image.tobytes(surface, "RGB")


@pytest.mark.parametrize("lang", ["en", "de"])
def test_the_preview_is_what_the_kiosk_draws(kiosk_config: Any, tmp_path: Any, lang: str) -> None:
    clock = [0.0]
    with HeadlessKiosk(kiosk_config(), clock=lambda: clock[0]) as k:
        pygame.event.post(pygame.event.Event(CONFIG_EVENT, config=CONFIG))
        k.pump()
        if lang != "en":
            k.tap_target(("languages", None))
            k.tap_target(("lang", lang))
        k.kiosk.redraw(force=True)
        kiosk = pygame.image.tobytes(k.kiosk.display.target, "RGB")
        rating = preview.render_png(CONFIG, lang=lang, screen="rating")
        assert pixels(rating) == kiosk
        k.tap_rating(1, follow_up=None)
        follow_up = pygame.image.tobytes(k.kiosk.display.target, "RGB")
    drawn = preview.render_png(CONFIG, lang=lang, screen="followup")
    assert pixels(drawn) == follow_up
    assert pixels(drawn) != pixels(rating)

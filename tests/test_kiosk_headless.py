"""The real kiosk on SDL's dummy driver: taps land on the right answer, once, on disk first."""

from __future__ import annotations

import uuid
from pathlib import Path

import pygame
import pytest

from display.layout import MIN_TARGET_MM, Geometry
from display.view import MessageView
from sync import protocol
from sync.errors import OutboxError
from tests.support.kiosk import HeadlessKiosk, stored

SIZES = [((800, 480), (154, 86)), ((720, 1280), (88, 155)), ((1024, 600), (154, 86)), ((1920, 1080), (477, 268))]


@pytest.mark.parametrize(("size", "mm"), SIZES, ids=[f"{s[0]}x{s[1]}" for s, _ in SIZES])
@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_every_face_records_its_rating(kiosk_config, size, mm, rotation) -> None:
    config = kiosk_config(screen={"size": list(size), "mm": list(mm), "rotation": rotation},
                          survey={"thank_you_s": 0.5})
    clock = [0.0]
    with HeadlessKiosk(config, clock=lambda: clock[0]) as k:
        for rating in range(1, 6):
            k.tap_rating(rating)
            assert isinstance(k.kiosk.view, MessageView)
            clock[0] += 10  # past the thank-you
            k.pump()
        assert [e["rating"] for e in stored(k)] == [1, 2, 3, 4, 5]


def test_finger_and_its_mouse_twin_count_once(kiosk: HeadlessKiosk) -> None:
    kiosk.tap(kiosk.center_of(3), mouse_twin=True)
    assert [e["rating"] for e in stored(kiosk)] == [3]


def test_a_real_mouse_click_counts(kiosk: HeadlessKiosk) -> None:
    kiosk.click(kiosk.center_of(4))
    assert [e["rating"] for e in stored(kiosk)] == [4]


def test_a_tap_between_faces_records_nothing(kiosk: HeadlessKiosk) -> None:
    kiosk.tap((5, 5))
    assert stored(kiosk) == []


def test_pressed_face_shows_before_the_write_and_thanks_after(kiosk: HeadlessKiosk) -> None:
    """Each frame is checked against the outbox as another process would see it."""
    seen = []
    flip = kiosk.kiosk.flip

    def spy() -> None:
        rows = len(stored(kiosk))
        seen.append((type(kiosk.kiosk.view).__name__, getattr(kiosk.kiosk.view, "pressed", None), rows))
        flip()

    kiosk.kiosk.flip = spy
    kiosk.tap_rating(4)
    assert seen == [("RatingView", 4, 0), ("MessageView", None, 1)]


def test_every_field_the_schema_requires_is_filled(kiosk: HeadlessKiosk) -> None:
    kiosk.tap_rating(5)
    (event,) = stored(kiosk)
    assert set(protocol.schema("feedback")["required"]) <= set(event)
    assert (event["source"], event["scale"], event["lang"], event["seq"]) == ("touch", 5, "en", 1)


def test_a_full_disk_shows_sorry_and_keeps_running(kiosk_config) -> None:
    clock = [0.0]
    with HeadlessKiosk(kiosk_config(), clock=lambda: clock[0]) as k:
        outbox = k.kiosk.outbox
        pages = outbox._conn.execute("PRAGMA page_count").fetchone()[0]
        outbox._conn.execute(f"PRAGMA max_page_count = {pages + 2}")  # a disk about to fill up
        answer = {"ts": protocol.utc_timestamp(), "clock_synced": True, "boot_id": str(uuid.uuid4()), "mono_ms": 1,
                  "rating": 3, "scale": 5, "reasons": [], "lang": "en", "source": "touch",
                  "survey": 0, "flags": []}
        with pytest.raises(OutboxError):
            for _ in range(10_000):
                outbox.append(answer)
        before = stored(k)
        assert before
        k.tap_rating(2)
        assert k.kiosk.flow.state.screen == "sorry"
        assert stored(k) == before
        # Space comes back: the kiosk takes answers again without a restart.
        k.kiosk.outbox._conn.execute("PRAGMA max_page_count = 1000000")
        clock[0] += 60
        k.pump()
        k.tap_rating(5)
        assert k.kiosk.flow.state.screen == "thanks"
        assert [e["rating"] for e in stored(k)] == [e["rating"] for e in before] + [5]


def test_idle_kiosk_does_not_redraw(kiosk: HeadlessKiosk) -> None:
    before = kiosk.frames
    for _ in range(5):
        kiosk.kiosk.step(max_wait_ms=1)
    assert kiosk.frames == before


@pytest.mark.parametrize(("size", "mm"), SIZES, ids=[f"{s[0]}x{s[1]}" for s, _ in SIZES])
@pytest.mark.parametrize("rotation", [0, 90])
@pytest.mark.parametrize("scale", [3, 4, 5])
def test_layout_targets_are_large_and_apart(size, mm, rotation, scale) -> None:
    from display.layout import rating_layout

    geometry = Geometry(size, mm, rotation)
    layout = rating_layout(geometry, scale)
    w, h = geometry.logical_size
    for i, target in enumerate(layout.targets):
        assert min(target.w, target.h) / geometry.px_per_mm >= MIN_TARGET_MM
        assert target.x >= 0 and target.y >= 0 and target.x + target.w <= w and target.y + target.h <= h
        for other in layout.targets[i + 1:]:
            assert not target.overlaps(other)
        assert not target.overlaps(layout.question) and not target.overlaps(layout.note)


def test_screenshots_of_the_main_screens(kiosk_config, tmp_path: Path) -> None:
    """Saves PNGs (look at them); asserts the screens are not blank."""
    for size, mm in SIZES[:2]:
        with HeadlessKiosk(kiosk_config(screen={"size": list(size), "mm": list(mm)})) as k:
            rating = k.screenshot(tmp_path / f"rating-{size[0]}.png")
            k.tap_rating(4)
            thanks = k.screenshot(tmp_path / f"thanks-{size[0]}.png")
            for path in (rating, thanks):
                img = pygame.image.load(str(path))
                colors = {tuple(img.get_at((x, y)))[:3] for x in range(0, size[0], 13) for y in range(0, size[1], 13)}
                assert len(colors) > 3, f"{path} looks blank"

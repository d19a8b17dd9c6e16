"""The customer flow in the real kiosk (SDL dummy driver): what needs the kiosk itself.

Reason chips and faces hit at every size and rotation, what is drawn before and
after the disk write, what lands in the outbox, screens in the chosen language,
answers held by the follow-up surviving a close or a crash, kiosk mode. The
flow's own rules (timers, transitions, rapid_repeat flags, one Save per tap)
are specified once, in test_flow.py. Time is a test clock; nothing sleeps."""

from __future__ import annotations

import sqlite3

import pygame
import pytest

from device.held import HeldAnswer
from display.view import FollowUpView, LanguageView, MessageView, PinView, RatingView
from tests.support.kiosk import HeadlessKiosk, stored

SIZES = [((800, 480), (154, 86)), ((720, 1280), (88, 155)), ((1024, 600), (154, 86)), ((1920, 1080), (477, 268))]


@pytest.fixture
def clocked(kiosk_config):
    def make(**sections: dict) -> HeadlessKiosk:
        clock = [1000.0]
        k = HeadlessKiosk(kiosk_config(**sections), clock=lambda: clock[0])
        k.clock = clock  # type: ignore[attr-defined]
        return k
    return make


@pytest.mark.parametrize(("size", "mm"), SIZES, ids=[f"{s[0]}x{s[1]}" for s, _ in SIZES])
@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_a_reason_chip_is_stored_with_its_rating(kiosk_config, size, mm, rotation) -> None:
    config = kiosk_config(screen={"size": list(size), "mm": list(mm), "rotation": rotation})
    with HeadlessKiosk(config) as k:
        k.tap_rating(2, follow_up=None)
        assert isinstance(k.kiosk.view, FollowUpView)
        assert stored(k) == []  # held until the customer says why (or not)
        k.tap_target(("reason", "expertise"))
        assert isinstance(k.kiosk.view, MessageView)
        (event,) = stored(k)
        assert (event["rating"], event["reasons"]) == (2, ["expertise"])


def test_the_chosen_reason_shows_before_the_write_and_thanks_after(kiosk: HeadlessKiosk) -> None:
    seen = []
    flip = kiosk.kiosk.flip

    def spy() -> None:
        rows = len(stored(kiosk))
        view = kiosk.kiosk.view
        seen.append((type(view).__name__, getattr(view, "chosen", None), rows))
        flip()

    kiosk.tap_rating(1, follow_up=None)
    kiosk.kiosk.flip = spy
    kiosk.tap_target(("reason", "wait_time"))
    assert seen == [("FollowUpView", "wait_time", 0), ("MessageView", None, 1)]


def test_closing_the_kiosk_during_the_follow_up_stores_the_rating(kiosk_config) -> None:
    config = kiosk_config()
    with HeadlessKiosk(config) as k:
        k.tap_rating(1, follow_up=None)
    assert [e["rating"] for e in stored(config.outbox_path)] == [1]


def test_the_configured_follow_up_ratings_and_reasons_reach_the_screen(kiosk_config) -> None:
    with HeadlessKiosk(kiosk_config(survey={"follow_up_ratings": [3], "reasons": ["other", "outcome"]})) as k:
        k.tap_rating(1)
        assert isinstance(k.kiosk.view, MessageView)
        k.kiosk.flow.state = k.kiosk.flow._home()
        k.pump()
        k.tap_rating(3, follow_up=None)
        view = k.kiosk.view
        assert isinstance(view, FollowUpView) and [key for key, _ in view.reasons] == ["other", "outcome"]


def test_the_screens_speak_the_chosen_language_and_the_answer_records_it(clocked) -> None:
    with clocked(survey={"thank_you_s": 3}) as k:
        assert k.kiosk.view.hint  # the attract screen invites
        k.tap_target(("languages", None))
        assert isinstance(k.kiosk.view, LanguageView)
        k.tap_target(("lang", "uk"))
        view = k.kiosk.view
        assert isinstance(view, RatingView) and view.question.startswith("Як")
        k.tap_rating(5)
        assert stored(k)[-1]["lang"] == "uk"
        assert k.kiosk.view.title == "Дякуємо!"
        k.clock[0] += 3
        k.pump()
        view = k.kiosk.view
        assert isinstance(view, RatingView) and view.question == "How was our service today?"


def test_escape_and_window_close_do_not_leave_kiosk_mode(kiosk: HeadlessKiosk) -> None:
    kiosk.kiosk.exit_on_quit = False  # fullscreen kiosk mode
    pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_ESCAPE, mod=0, unicode="", scancode=41))
    pygame.event.post(pygame.event.Event(pygame.QUIT))
    kiosk.pump()
    assert kiosk.kiosk.running and isinstance(kiosk.kiosk.view, RatingView)  # no PIN configured: nothing


def test_escape_in_a_window_ends_the_program(kiosk: HeadlessKiosk) -> None:
    kiosk.kiosk.exit_on_quit = True
    pygame.event.post(pygame.event.Event(pygame.QUIT))
    kiosk.pump()
    assert not kiosk.kiosk.running


def test_escape_in_kiosk_mode_opens_the_pin_pad(kiosk_config) -> None:
    from device.staff import hash_pin

    with HeadlessKiosk(kiosk_config(staff={"pin_hash": hash_pin("2468", iterations=1000)})) as k:
        pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_ESCAPE, mod=0, unicode="", scancode=41))
        k.pump()
        assert isinstance(k.kiosk.view, PinView) and k.kiosk.running


def crash(k: HeadlessKiosk) -> None:
    """The process dies: no close(), no flush; only the files stay."""
    k.kiosk.outbox.close()
    pygame.display.quit()


def test_a_rating_held_by_the_follow_up_survives_a_crash(kiosk_config) -> None:
    config = kiosk_config()
    k = HeadlessKiosk(config)
    k.tap_rating(2, follow_up=None)
    assert stored(k) == []
    crash(k)
    with HeadlessKiosk(config) as again:
        assert [(e["rating"], e["reasons"]) for e in stored(again)] == [(2, [])]
        assert not (config.data_dir / "held-answer.json").exists()


def test_a_held_rating_already_stored_is_not_stored_twice(kiosk_config) -> None:
    """The kiosk died between the outbox commit and removing the held file."""
    config = kiosk_config()
    held = config.data_dir / "held-answer.json"
    k = HeadlessKiosk(config)
    k.tap_rating(1, follow_up=None)
    kept = held.read_bytes()
    k.tap_target(("reason", "wait_time"))
    assert not held.exists()
    held.write_bytes(kept)  # as if the removal never happened
    crash(k)
    with HeadlessKiosk(config) as again:
        assert [(e["rating"], e["reasons"]) for e in stored(again)] == [(1, ["wait_time"])]
        assert not held.exists()


def test_a_held_rating_stays_held_when_the_outbox_cannot_say_whether_it_is_stored(kiosk_config) -> None:
    """Storing on a guess could count one tap twice under two ids: keep the file, store it later."""
    config = kiosk_config()
    held = config.data_dir / "held-answer.json"
    k = HeadlessKiosk(config)
    k.tap_rating(2, follow_up=None)
    crash(k)
    with sqlite3.connect(config.outbox_path) as conn:  # a damaged row: the tap look-up cannot read it
        conn.execute("INSERT INTO outbox (seq, id, payload, created_at) VALUES (999, 'damaged', x'7b7b', 0)")
    again = HeldAnswer(held)
    k2 = HeadlessKiosk(config)
    assert len(again.set_aside_answers()) == 1, "the held rating is kept for the next start"
    assert [r["id"] for r in k2.kiosk.outbox._conn.execute("SELECT id FROM outbox")] == ["damaged"]
    k2.tap_rating(1, follow_up=None)  # the next customer's held rating cannot overwrite it
    assert held.exists()
    crash(k2)
    with sqlite3.connect(config.outbox_path) as conn:  # repaired
        conn.execute("DELETE FROM outbox WHERE id = 'damaged'")
    with HeadlessKiosk(config) as fixed:
        assert sorted((e["rating"], e["reasons"]) for e in stored(fixed)) == [(1, []), (2, [])]
        assert not held.exists() and again.set_aside_answers() == []


@pytest.mark.parametrize("scale", [3, 4])
@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_every_face_of_smaller_scales_records_its_rating(kiosk_config, scale, rotation) -> None:
    clock = [0.0]
    config = kiosk_config(screen={"rotation": rotation}, survey={"scale": scale, "thank_you_s": 0.5})
    with HeadlessKiosk(config, clock=lambda: clock[0]) as k:
        for rating in range(1, scale + 1):
            k.tap_rating(rating)
            clock[0] += 10
            k.pump()
        assert [(e["rating"], e["scale"]) for e in stored(k)] == [(r, scale) for r in range(1, scale + 1)]


def test_a_real_screen_that_falls_back_to_dummy_exits_non_zero(tmp_path) -> None:
    import os
    import subprocess
    import sys

    cfg = tmp_path / "kiosk.toml"
    cfg.write_text(f'[device]\nsite = "s"\nname = "d"\ndata_dir = "{tmp_path / "data"}"\n')
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy"}
    proc = subprocess.run([sys.executable, "-m", "device.cli", "run", "-c", str(cfg), "--windowed"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3
    assert "no screen" in proc.stderr and "dummy" in proc.stderr

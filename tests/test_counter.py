"""At the counter: test mode shows on every screen and ends by itself; the status says so."""

from __future__ import annotations

from collections.abc import Iterator

import pygame
import pytest
from hypothesis import given
from hypothesis import strategies as st

from device.staff import StaffMode, hash_pin
from display.palette import YELLOW, rgb
from display.screens import band_height
from display.view import FollowUpView, LanguageView, MessageView, PinView, RatingView, StatusView
from tests.support.broker import Mosquitto
from tests.support.kiosk import HeadlessKiosk, corner, enter, stored
from tests.support.status import StatusWatcher
from tests.support.wait import wait_for

PIN = "2468"
HASH = hash_pin(PIN, iterations=1000)


@given(on_at=st.floats(0, 1e6), minutes=st.floats(1, 24 * 60), later=st.floats(0, 2 * 24 * 3600))
def test_test_mode_ends_by_itself_on_the_monotonic_clock(on_at: float, minutes: float, later: float) -> None:
    staff = StaffMode(HASH, test_mode_s=minutes * 60)
    staff.screen = "status"
    staff.key("test_mode", None, on_at)
    assert staff.test_mode and staff.test_mode_left(on_at) == pytest.approx(minutes * 60)
    deadline = staff.deadline()
    assert deadline is not None and deadline <= on_at + minutes * 60  # the loop wakes up in time
    staff.tick(on_at + later)
    assert staff.test_mode == (later < minutes * 60)
    assert staff.test_mode_left(on_at + later) == pytest.approx(max(0.0, minutes * 60 - later), abs=1e-6)


def test_switching_test_mode_off_ends_it_at_once() -> None:
    staff = StaffMode(HASH)
    staff.screen = "status"
    staff.key("test_mode", None, 10.0)
    staff.key("test_mode", None, 20.0)
    assert not staff.test_mode and staff.deadline() is not None  # the screen's idle timer only
    staff.tick(10.0 + 15 * 60)
    assert not staff.test_mode


@pytest.fixture
def clocked(kiosk_config) -> Iterator[tuple[HeadlessKiosk, list[float]]]:
    clock = [500.0]
    config = kiosk_config(staff={"pin_hash": HASH, "test_mode_minutes": 10},
                          survey={"thank_you_s": 1, "repeat_interval_s": 0, "reasons": ["wait_time", "friendliness"]})
    with HeadlessKiosk(config, clock=lambda: clock[0]) as k:
        yield k, clock


def switch_test_mode(k: HeadlessKiosk) -> None:
    corner(k)
    enter(k, PIN)
    k.tap_target(("test_mode", None))


def band_pixels(k: HeadlessKiosk) -> set[tuple[int, int, int]]:
    """The colours of the band's row in the middle of the screen's top (the target surface, as shown)."""
    surface = k.kiosk.display.target
    y = band_height(k.kiosk.display.geometry) // 2
    return {tuple(surface.get_at((x, y)))[:3] for x in range(0, surface.get_width(), 4)}


def test_test_mode_shows_a_band_on_every_screen_and_ends_after_its_time(clocked) -> None:
    k, clock = clocked
    assert k.kiosk.band == "" and rgb(YELLOW) not in band_pixels(k)
    switch_test_mode(k)
    assert isinstance(k.kiosk.view, StatusView)
    assert "ends in 10 min" in dict(k.kiosk.view.lines)["Test mode"]
    seen: list[type] = []

    def shown() -> None:
        assert k.kiosk.band.startswith("TEST MODE") and "ends in" in k.kiosk.band
        assert k.kiosk.display.band == k.kiosk.band, "the band drawn is the band due"
        assert rgb(YELLOW) in band_pixels(k)
        assert all(fit.fits for fit in k.kiosk.display.texts), [f.text for f in k.kiosk.display.texts if not f.fits]
        seen.append(type(k.kiosk.view))

    shown()  # the status screen
    k.tap_target(("close", None))
    shown()  # attract
    k.tap_target(("languages", None))
    shown()  # language
    k.tap_target(("lang", "en"))
    k.tap_rating(1, follow_up=None)
    shown()  # follow-up
    k.tap_target(("skip", None))
    shown()  # thank-you
    clock[0] += 2
    k.pump()
    corner(k)
    shown()  # PIN pad
    k.tap_target(("pin_back", None))  # an empty PIN: back to the customer
    assert {RatingView, LanguageView, FollowUpView, MessageView, PinView, StatusView} <= set(seen)
    assert stored(k)[-1]["flags"] == ["test"]

    clock[0] += 9 * 60
    k.pump()
    assert k.kiosk.band.endswith("ends in 1 min")
    clock[0] += 60
    k.pump()
    assert k.kiosk.band == "" and k.kiosk.display.band == ""
    assert rgb(YELLOW) not in band_pixels(k)
    k.tap_rating(4)
    assert stored(k)[-1]["flags"] == []


def test_faces_are_hit_where_they_are_drawn_below_the_band(clocked) -> None:
    k, clock = clocked
    switch_test_mode(k)
    k.tap_target(("close", None))
    for rating in (5, 4, 3):
        k.tap_rating(rating)
        clock[0] += 2
        k.pump()
    assert [e["rating"] for e in stored(k)] == [5, 4, 3]


def test_test_mode_is_reported_in_the_status(broker: Mosquitto, kiosk_config) -> None:
    from device.kiosk import make_sender

    config = kiosk_config(broker.url, staff={"pin_hash": HASH, "test_mode_minutes": 10})
    sender = make_sender(config)
    clock = [500.0]
    pygame.display.init()
    watcher = StatusWatcher(broker, config.site, config.device)
    with HeadlessKiosk(config, sender=sender, clock=lambda: clock[0]) as k:
        sender.start()

        def alarm() -> str | None:
            return dict(sender.status.alarms).get("test-mode")

        switch_test_mode(k)
        wait_for(lambda: alarm() is not None, what="the test-mode alarm")
        assert "answers are flagged test" in (alarm() or "")
        wait_for(lambda: any("test-mode" in a for a in watcher.alarms()), what="test-mode in the retained status")
        clock[0] += 10 * 60
        k.pump()
        wait_for(lambda: alarm() is None, what="the alarm cleared when test mode ended")
        wait_for(lambda: "test-mode" not in watcher.alarms()[-1], what="a retained status without it")
    watcher.close()


def test_change_answer_withdraws_the_rating_from_disk_too(clocked) -> None:
    k, clock = clocked
    held = k.kiosk.config.data_dir / "held-answer.json"
    k.tap_rating(1, follow_up=None)
    assert isinstance(k.kiosk.view, FollowUpView) and held.exists()
    k.tap_target(("back", None))
    assert isinstance(k.kiosk.view, RatingView) and not held.exists()
    k.kiosk.close()  # a stop right after: nothing held, nothing stored
    assert stored(k) == []


def test_the_follow_up_counts_down_and_stores_the_rating_alone_at_zero(clocked) -> None:
    k, clock = clocked
    k.tap_rating(2, follow_up=None)
    view = k.kiosk.view
    assert isinstance(view, FollowUpView) and (view.seconds_left, view.total_s) == (10, 10)
    clock[0] += 3.2
    k.pump()
    view = k.kiosk.view
    assert isinstance(view, FollowUpView) and view.seconds_left == 7
    assert k.kiosk._countdown_tick() == pytest.approx(clock[0] + 0.8)  # the loop wakes for the next second
    clock[0] += 6.8
    k.pump()
    assert isinstance(k.kiosk.view, MessageView) and [(e["rating"], e["reasons"]) for e in stored(k)] == [(2, [])]


def test_back_and_cancel_leave_the_language_screen_and_the_pin_pad(clocked) -> None:
    k, _ = clocked
    k.tap_target(("languages", None))
    assert isinstance(k.kiosk.view, LanguageView)
    assert k.kiosk.view.title.startswith("Language · Sprache")  # readable whatever the current language
    k.tap_target(("back", None))
    assert isinstance(k.kiosk.view, RatingView)
    corner(k)
    k.tap_target(("digit", 1))  # typed, not sent
    assert isinstance(k.kiosk.view, PinView)
    k.tap_target(("pin_cancel", None))
    assert isinstance(k.kiosk.view, RatingView) and k.kiosk.staff.screen is None
    assert stored(k) == []


# ---------------------------------------------------------------- reason presets


def test_a_preset_in_the_config_offers_its_reasons_in_every_language(kiosk_config) -> None:
    from display import texts

    config = kiosk_config(survey={"reason_preset": "pharmacy", "thank_you_s": 1})
    assert config.survey.reasons == texts.PRESETS["pharmacy"]
    with HeadlessKiosk(config) as k:
        k.tap_target(("languages", None))
        k.tap_target(("lang", "el"))
        k.tap_rating(1, follow_up=None)
        view = k.kiosk.view
        assert isinstance(view, FollowUpView)
        assert [key for key, _ in view.reasons] == list(texts.PRESETS["pharmacy"])
        assert ("availability", "Διαθεσιμότητα φαρμάκου") in view.reasons
        k.tap_target(("reason", "availability"))
        assert stored(k)[-1]["reasons"] == ["availability"]  # the key, never the words


def test_a_preset_and_reasons_together_or_an_unknown_preset_are_refused(kiosk_config) -> None:
    from sync.errors import ConfigError

    with pytest.raises(ConfigError, match="survey.reason_preset must be one of service_desk, luggage_office"):
        kiosk_config(survey={"reason_preset": "bakery"})
    with pytest.raises(ConfigError, match="give survey.reasons or survey.reason_preset, not both"):
        kiosk_config(survey={"reason_preset": "hotel", "reasons": ["room", "noise"]})


def test_a_remote_configuration_selects_a_preset(kiosk_config) -> None:
    from device.events import CONFIG_EVENT
    from display import texts
    from sync import protocol

    config = {"schema": 1, "version": 4, "scale": 5, "reason_preset": "luggage_office"}
    protocol.encode("config", config)  # valid by the shared schema
    with HeadlessKiosk(kiosk_config()) as k:
        pygame.event.post(pygame.event.Event(CONFIG_EVENT, config=config))
        k.pump()
        k.tap_rating(2, follow_up=None)
        view = k.kiosk.view
        assert isinstance(view, FollowUpView)
        assert [key for key, _ in view.reasons] == list(texts.PRESETS["luggage_office"])
        assert ("baggage_delivery", "Getting my bag back") in view.reasons


def test_the_schema_names_exactly_the_kiosks_presets() -> None:
    import json
    from importlib import resources

    from display import texts

    schema = json.loads(resources.files("sync").joinpath("schema/config.v1.json").read_text())
    assert schema["properties"]["reason_preset"]["enum"] == list(texts.PRESETS)
    assert all(key in texts.REASONS for keys in texts.PRESETS.values() for key in keys)


# ---------------------------------------------------------------- sound


def test_the_confirmation_chime_is_off_by_default_and_plays_after_a_stored_answer(kiosk_config) -> None:
    with HeadlessKiosk(kiosk_config()) as quiet:
        assert quiet.kiosk.chime is None
    with HeadlessKiosk(kiosk_config(sound={"confirm": True, "volume": 0.5})) as k:  # SDL's dummy audio driver
        assert k.kiosk.chime is not None and k.kiosk.chime.sound is not None
        assert not pygame.mixer.get_busy()
        k.tap_rating(5)
        assert stored(k) and pygame.mixer.get_busy(), "the chime plays once the answer is on disk"
        assert 0.1 < k.kiosk.chime.sound.get_length() < 0.3  # short


def test_the_chime_has_no_clicks_and_keeps_to_its_volume() -> None:
    from device.sound import chime_samples

    samples = chime_samples(0.5)
    assert abs(samples[0]) < 500 and abs(samples[-1]) < 500  # soft edges
    assert max(abs(v) for v in samples) <= 0.5 * 32767 + 1

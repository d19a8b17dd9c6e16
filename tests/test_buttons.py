"""Physical buttons and lights with gpiozero's MockFactory: the real kiosk records a
press like a tap; bounce is simulated by driving the mock pin rapidly (mock pins
do not bounce by themselves); time is a test clock."""

from __future__ import annotations

import threading

import pygame
import pytest

from device.buttons import Debouncer, Lights, RatingButtons, build, post_press
from device.config import GpioConfig
from device.events import TAP_EVENT
from display.view import FollowUpView, MessageView
from sync.errors import ConfigError
from tests.support.kiosk import HeadlessKiosk, stored

PINS = (17, 27, 22, 23, 24)


def press(factory, pin: int, bounces: int = 0) -> None:
    """Press and release a button wired to ground, with ``bounces`` extra contacts."""
    p = factory.pin(pin)
    for _ in range(bounces + 1):
        p.drive_low()
        p.drive_high()


@pytest.fixture
def wired(kiosk_config, mock_factory):
    clock = [100.0]
    config = kiosk_config(gpio={"buttons": list(PINS)}, survey={"thank_you_s": 1, "repeat_interval_s": 0})
    with HeadlessKiosk(config, clock=lambda: clock[0]) as k:
        buttons = RatingButtons(PINS, post_press, debounce_s=0.05, clock=lambda: clock[0])
        try:
            yield k, clock
        finally:
            buttons.close()


@pytest.mark.parametrize("rating", [1, 2, 3, 4, 5])
def test_a_press_records_its_rating_like_a_tap(wired, mock_factory, rating) -> None:
    k, clock = wired
    press(mock_factory, PINS[rating - 1])
    k.pump()
    if rating <= 2:  # the two worst open the follow-up on the screen
        assert isinstance(k.kiosk.view, FollowUpView)
        k.tap_target(("skip", None))
    assert isinstance(k.kiosk.view, MessageView)
    assert [(e["rating"], e["source"]) for e in stored(k)] == [(rating, "button")]


def test_bounce_within_the_debounce_time_records_one(wired, mock_factory) -> None:
    k, clock = wired
    press(mock_factory, PINS[4], bounces=6)  # all within the same instant
    posted = pygame.event.get(eventtype=TAP_EVENT)
    assert [(e.rating, e.source) for e in posted] == [(5, "button")]  # one press reached the loop
    for event in posted:
        pygame.event.post(event)
    k.pump()
    assert [e["rating"] for e in stored(k)] == [5]


def test_presses_after_a_quiet_time_count_again(wired, mock_factory) -> None:
    k, clock = wired
    press(mock_factory, PINS[3])
    k.pump()
    clock[0] += 2  # past the thank-you, and far past the debounce time
    k.pump()
    press(mock_factory, PINS[3], bounces=3)
    k.pump()
    assert [e["rating"] for e in stored(k)] == [4, 4]


def test_a_press_from_another_thread_is_handled_by_the_loop(wired, mock_factory) -> None:
    """gpiozero calls back on its own threads; the callback only posts an event."""
    k, clock = wired
    t = threading.Thread(target=press, args=(mock_factory, PINS[2]))
    t.start()
    t.join()
    assert stored(k) == []  # nothing happened outside the loop
    k.pump()
    assert [e["rating"] for e in stored(k)] == [3]


def test_debouncer_needs_a_quiet_time_before_a_press() -> None:
    clock = [0.0]
    d = Debouncer(0.05, lambda: clock[0])
    assert d.press()
    clock[0] = 0.01
    d.release()
    clock[0] = 0.055  # 55 ms after the press but only 45 ms after the release edge
    assert not d.press()
    clock[0] = 0.2
    assert d.press()


def test_lights_follow_the_thank_you_and_the_connection(mock_factory) -> None:
    lights = Lights(thank_you=5, status=6, buzzer=13)
    try:
        lights.show(thanks=True)
        assert mock_factory.pin(5).state
        lights.show(thanks=False)
        assert not mock_factory.pin(5).state
        lights.status(True)
        assert mock_factory.pin(6).state
    finally:
        lights.close()


def test_the_thank_you_led_is_lit_while_the_thank_you_shows(kiosk_config, mock_factory) -> None:
    clock = [0.0]
    _, lights = build(GpioConfig(thank_you_led=5), post_press)
    with HeadlessKiosk(kiosk_config(survey={"thank_you_s": 3}), clock=lambda: clock[0]) as k:
        k.kiosk.lights = lights
        k.tap_rating(5)
        assert mock_factory.pin(5).state
        clock[0] += 3
        k.pump()
        assert not mock_factory.pin(5).state


def test_the_pin_map_is_validated(kiosk_config) -> None:
    with pytest.raises(ConfigError, match="gpio.buttons must list one pin per rating"):
        kiosk_config(gpio={"buttons": [17, 27]})
    with pytest.raises(ConfigError, match="must all differ"):
        kiosk_config(gpio={"buttons": [17, 27, 22, 23, 24], "buzzer": 17})
    with pytest.raises(ConfigError, match="gpio.status_led must be a BCM"):
        kiosk_config(gpio={"status_led": 99})
    with pytest.raises(ConfigError, match="unknown key gpio.led"):
        kiosk_config(gpio={"led": 5})


def test_a_press_during_the_thank_you_is_stored_flagged_not_dropped(kiosk_config, mock_factory) -> None:
    clock = [100.0]
    config = kiosk_config(gpio={"buttons": list(PINS)}, survey={"thank_you_s": 3, "repeat_interval_s": 5})
    with HeadlessKiosk(config, clock=lambda: clock[0]) as k, \
            RatingButtons(PINS, post_press, debounce_s=0.05, clock=lambda: clock[0]):
        press(mock_factory, PINS[4])
        k.pump()
        assert isinstance(k.kiosk.view, MessageView)
        clock[0] += 1
        press(mock_factory, PINS[3])
        k.pump()
        assert [(e["rating"], e["flags"]) for e in stored(k)] == [(5, []), (4, ["rapid_repeat"])]

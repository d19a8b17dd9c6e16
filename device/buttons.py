"""Buttons and lights on the Pi's header, in the kiosk's words (gpiozero underneath).

:class:`RatingButtons` speaks in ratings: one push button per rating, built on
gpiozero's generic ``DigitalInputDevice``. Its callbacks run on gpiozero's
threads, so they do nothing but hand the rating on (the kiosk passes a function
that posts a pygame event, which is thread-safe); the pygame loop owns all
state. Debouncing is ours (:class:`Debouncer`), not gpiozero's ``bounce_time``,
so it is the same on every pin factory and testable with mock pins, which do
not bounce by themselves.

:class:`Lights` drives the optional thank-you LED, status LED and buzzer; only
the kiosk's loop calls it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from device.config import GpioConfig

log = logging.getLogger("deskpulse.buttons")


class Debouncer:
    """Accepts a press only after the contact was quiet for ``interval_s``.

    Every edge (press or release) restarts the quiet time, so a bouncing contact
    (press, release, press ... within milliseconds) counts once.

    Args:
        interval_s: the quiet time a press needs before it.
        clock: the monotonic clock (tests pass their own).
    """

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self._last_edge: float | None = None
        self._lock = threading.Lock()  # edges of one pin may arrive on different threads

    def press(self) -> bool:
        """A press edge: True if it counts."""
        with self._lock:
            now = self.clock()
            quiet = self._last_edge is None or now - self._last_edge >= self.interval_s
            self._last_edge = now
            return quiet

    def release(self) -> None:
        """A release edge (it only restarts the quiet time)."""
        with self._lock:
            self._last_edge = self.clock()


class RatingButtons:
    """One push button per rating (worst first), wired to ground by default.

    Args:
        pins: gpiozero pin names or BCM numbers, one per rating, worst first.
        on_press: called with the rating on gpiozero's thread; must only hand it on.
        debounce_s: quiet time a press needs (see :class:`Debouncer`).
        pull_up: buttons connect the pin to ground (True) or to 3.3 V (False).
        pin_factory: gpiozero pin factory (None: gpiozero's default).
        clock: monotonic clock for the debouncer.
    """

    def __init__(self, pins: tuple[int | str, ...], on_press: Callable[[int], None], *,
                 debounce_s: float = 0.05, pull_up: bool = True, pin_factory: Any = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        from gpiozero import DigitalInputDevice

        self.on_press = on_press
        self.devices: list[Any] = []
        try:
            for rating, pin in enumerate(pins, start=1):
                device = DigitalInputDevice(pin, pull_up=pull_up, bounce_time=None, pin_factory=pin_factory)
                debouncer = Debouncer(debounce_s, clock)
                device.when_activated = self._pressed(rating, debouncer)
                device.when_deactivated = lambda _d=None, d=debouncer: d.release()
                self.devices.append(device)
        except Exception:
            self.close()
            raise

    def _pressed(self, rating: int, debouncer: Debouncer) -> Callable[..., None]:
        def pressed(_device: object = None) -> None:
            if debouncer.press():
                self.on_press(rating)
        return pressed

    def close(self) -> None:
        """Release the pins. Safe to call twice."""
        for device in self.devices:
            device.close()
        self.devices = []

    def __enter__(self) -> RatingButtons:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Lights:
    """The optional thank-you LED, status LED and buzzer.

    The thank-you LED is lit while the thank-you shows; the status LED is steady
    while the broker is connected and blinks while it is not; the buzzer beeps
    once when an answer is stored.
    """

    def __init__(self, thank_you: int | str | None = None, status: int | str | None = None,
                 buzzer: int | str | None = None, *, pin_factory: Any = None) -> None:
        from gpiozero import LED, Buzzer

        self.thank_you = LED(thank_you, pin_factory=pin_factory) if thank_you is not None else None
        self.status_led = LED(status, pin_factory=pin_factory) if status is not None else None
        self.buzzer = Buzzer(buzzer, pin_factory=pin_factory) if buzzer is not None else None
        self._connected: bool | None = None

    def show(self, *, thanks: bool) -> None:
        """The thank-you is (or is not) on screen."""
        if self.thank_you is not None and bool(self.thank_you.is_lit) != thanks:
            self.thank_you.value = thanks

    def status(self, connected: bool) -> None:
        """The broker connection changed (or not: nothing happens then)."""
        if self.status_led is None or connected == self._connected:
            return
        self._connected = connected
        if connected:
            self.status_led.on()
        else:
            self.status_led.blink(on_time=0.2, off_time=1.8)

    def beep(self) -> None:
        """One short beep (in gpiozero's background thread)."""
        if self.buzzer is not None:
            self.buzzer.beep(on_time=0.08, off_time=0.08, n=1, background=True)

    def close(self) -> None:
        """Switch everything off and release the pins. Safe to call twice."""
        for device in (self.thank_you, self.status_led, self.buzzer):
            if device is not None:
                device.close()
        self.thank_you = self.status_led = self.buzzer = None


def build(config: GpioConfig, on_press: Callable[[int], None], *,
          pin_factory: Any = None) -> tuple[RatingButtons | None, Lights | None]:
    """The buttons and lights ``config`` asks for (None for parts not configured)."""
    buttons = None
    if config.buttons:
        buttons = RatingButtons(config.buttons, on_press, debounce_s=config.debounce_ms / 1000,
                                pull_up=config.pull_up, pin_factory=pin_factory)
    lights = None
    if any(p is not None for p in (config.thank_you_led, config.status_led, config.buzzer)):
        try:
            lights = Lights(config.thank_you_led, config.status_led, config.buzzer, pin_factory=pin_factory)
        except Exception:
            if buttons is not None:
                buttons.close()
            raise
    return buttons, lights


def post_press(rating: int) -> None:
    """Hand a button press to the pygame loop (safe from any thread)."""
    from device.events import post_tap

    post_tap(rating, "button")

"""The kiosk's main loop: the one owner of the flow and the screen.

Touches and button presses (posted from gpiozero's threads as pygame events,
see :mod:`device.buttons`) arrive as pygame events; the loop turns them into
flow inputs, carries out the flow's effects and redraws only when the view
changed. The order on an answer is the product's promise:

1. the pressed face (or the chosen reason) highlights at once, a frame before
   any disk write;
2. the answer is committed to the outbox (fsync'd);
3. only then the thank-you is drawn; the witness log, if any, is written after
   that frame, and the sender is woken.

With a follow-up, step 2 happens when the customer taps a reason or "skip", or
when the follow-up times out (the rating alone is stored), or when the kiosk
stops: the rating is held in memory meanwhile, never dropped.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import pygame

from device import __version__, events, facts, remote, sdnotify
from device.config import KioskConfig
from device.flow import (
    Back,
    ChooseLanguage,
    Flow,
    FlowSettings,
    Input,
    OpenLanguages,
    Reason,
    Save,
    Saved,
    SaveFailed,
    Skip,
    Tap,
    Tick,
)
from device.held import HeldAnswer
from device.remote import CustomTexts
from device.screen import RETRY_S, Screen
from device.script import TapScript
from device.sound import Chime
from device.staff import StaffMode
from device.views import StatusFacts, pin_view, status_view, view_for
from display import texts
from display.layout import Geometry
from display.screens import Display
from display.view import (
    Action,
    View,
)
from sync import protocol
from sync.errors import DeskPulseError
from sync.outbox import Outbox, Stats
from sync.sender import Sender, SenderSettings
from sync.survey import SurveyConfigs

log = logging.getLogger("deskpulse.kiosk")

#: SDL video drivers whose event wait sleeps in the kernel (the others poll every millisecond).
BLOCKING_WAIT_DRIVERS = frozenset({"x11", "wayland", "windows", "cocoa"})
#: How often the loop looks for events on the other drivers (KMSDRM on a Pi, dummy).
POLL_S = 0.02

def flow_settings(config: KioskConfig) -> FlowSettings:
    """The flow's settings from the kiosk configuration."""
    sv = config.survey
    return FlowSettings(
        scale=sv.scale,
        default_lang=sv.default_lang,
        languages=sv.languages,
        thank_you_s=sv.thank_you_s,
        repeat_interval_s=sv.repeat_interval_s,
        follow_up_ratings=frozenset(sv.follow_up_ratings),
        reasons=sv.reasons,
        follow_up_s=sv.follow_up_s,
        inactivity_s=sv.inactivity_s,
    )


class Kiosk:
    """The running kiosk.

    Args:
        config: validated configuration.
        surface: the surface to draw on (the display surface when running).
        flip: shows the surface (``pygame.display.flip`` when running).
        sender: the sender to wake after each answer, if any.
        witness: a file that receives each answer's id after its thank-you
            frame was shown (used by the durability tests).
        clock: the monotonic clock (tests may pass their own).
        exit_on_quit: a window close or Escape ends the program (windowed
            development); otherwise (kiosk mode) they open the staff PIN pad.
        lights: the LEDs and buzzer to drive, if any (:class:`device.buttons.Lights`).
        screen_down: why the panel could not be opened (the kiosk runs blind, on its buttons).
        screen_retry: tries the panel again (:class:`device.screen.ScreenRetry`), every
            :data:`device.screen.RETRY_S` while the screen is down.
    """

    def __init__(
        self,
        config: KioskConfig,
        surface: pygame.Surface,
        *,
        flip: Callable[[], None] = lambda: None,
        sender: Sender | None = None,
        witness: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        exit_on_quit: bool = False,
        lights: Any = None,
        screen_down: str | None = None,
        screen_retry: Callable[[], tuple[Screen, str | None]] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.flip = flip
        self.sender = sender
        self.exit_on_quit = exit_on_quit
        self.lights = lights
        #: Why the real screen is not there (None: it is); the kiosk then runs blind on its buttons.
        self.screen_down = screen_down
        self._screen_retry = screen_retry
        self._next_screen_try = clock() + RETRY_S
        #: Alarms only the kiosk sees (None clears one), and what the sender was last told of each.
        self._alarms: dict[str, str | None] = {}
        self._reported: dict[str, str | None] = {}
        self.chime = Chime(config.sound.volume) if config.sound.confirm else None
        self.display = Display(surface, Geometry(surface.get_size(), config.screen.mm, config.screen.rotation))
        self.settings = flow_settings(config)
        self.flow = Flow(self.settings)
        self.custom_texts: CustomTexts = {}
        self.survey_version = 0
        self._pending_config: dict[str, Any] | None = None

        self.staff = StaffMode(config.staff.pin_hash, test_mode_s=config.staff.test_mode_minutes * 60,
                               lock_file=config.data_dir / "staff-lock.json")
        self.staff.restore(self.clock())
        self.outbox = Outbox(config.outbox_path, config.site, config.device)
        self.held = HeldAnswer(config.data_dir / "held-answer.json")
        self._held_answer: dict[str, Any] | None = None
        self._recover_held()
        self._witness = open(witness, "a", encoding="utf-8") if witness else None
        self._shown: tuple[View, str] | None = None
        self._last_id: str | None = None
        self.running = True
        self._starving = False  # the watchdog is not fed: the sender is down past its limit
        self.answers = 0
        self._blocking_wait = pygame.display.get_init() and pygame.display.get_driver() in BLOCKING_WAIT_DRIVERS
        kept = SurveyConfigs(config.data_dir / "survey-config.json").current
        if kept is not None:  # the last good remote survey, even with no broker yet
            self.apply_config(kept)

    # ------------------------------------------------------------------ drawing

    @property
    def view(self) -> View:
        if self.staff.screen == "pin":
            return pin_view(len(self.staff.digits), self.staff.notice, self.staff.lock_left(self.clock()),
                            self.settings.default_lang)
        if self.staff.screen == "status":
            return status_view(self.status_facts())
        return view_for(self.flow.state, self.settings, self.custom_texts, self.clock())

    @property
    def band(self) -> str:
        """The band across the top of every screen: test mode and when it ends; "" for none."""
        if not self.staff.test_mode:
            return ""
        return texts.staff("test_band", self.settings.default_lang,
                           minutes=math.ceil(self.staff.test_mode_left(self.clock()) / 60))

    def redraw(self, force: bool = False) -> bool:
        """Draw the current view if it changed since the last frame."""
        view, band = self.view, self.band
        if (view, band) == self._shown and not force:
            return False
        self.display.render(view, band)
        self.flip()
        self._shown = (view, band)
        if self.lights is not None:
            self.lights.show(thanks=self.flow.state.screen == "thanks")
        return True

    # ------------------------------------------------------------------ input

    def handle(self, event: pygame.event.Event) -> None:
        """Handle one pygame event."""
        if event.type == pygame.FINGERDOWN:
            w, h = self.display.geometry.size
            self.tap_at((event.x * w, event.y * h), "touch")
        elif event.type == pygame.MOUSEBUTTONDOWN:
            # SDL also turns each touch into a mouse click: count it once.
            if event.button == 1 and not getattr(event, "touch", False):
                self.tap_at(event.pos, "touch")
        elif event.type == events.TAP_EVENT:
            self.tap(event.rating, event.source)
        elif event.type == events.CONFIG_EVENT:
            self.apply_config(event.config)
        elif event.type == pygame.QUIT or (event.type == pygame.KEYDOWN and event.key == pygame.K_ESCAPE):
            # In kiosk mode nothing leaves without the PIN: these open the PIN pad.
            if self.exit_on_quit:
                self.running = False
            elif self.staff.screen is None and self.staff.open(self.clock()):
                self.redraw()

    def apply_config(self, config: dict[str, Any]) -> None:
        """Run a remote survey configuration (validated by the sender).

        It takes effect at once when nobody is answering, else as soon as the
        kiosk is back on the attract screen: a customer's answer is never cut.
        """
        if self.flow.state.screen != "attract":
            self._pending_config = config
            return
        self._pending_config = None
        self.settings, self.custom_texts = remote.apply(flow_settings(self.config), config)
        self.flow.settings = self.settings
        self.flow.state = replace(self.flow.state, lang=self.settings.default_lang)
        self.survey_version = config["version"]
        log.info("survey version %d in force (scale %d)", self.survey_version, self.settings.scale)
        self.redraw()

    def tap_at(self, point: tuple[float, float], source: str) -> None:
        """A touch at a panel point."""
        action = self.display.hit(self.view, point)
        if action is not None:
            self.act(action, source)

    def act(self, action: Action, source: str = "touch") -> None:
        """Carry out what a touched target does."""
        kind, value = action
        now = self.clock()
        if self.staff.screen is not None:
            if kind == "quit":
                log.info("staff quit the kiosk")
                self.running = False
                return
            self.staff.key(kind, value, now)
            self._follow_test_mode()
            self.redraw()
            return
        if kind == "corner":
            if self.flow.state.screen in ("attract", "rating") and self.staff.corner_tap(now):
                self.redraw()
            return
        inputs: dict[str, Callable[[], Input]] = {
            "face": lambda: Tap(int(value or 0), source),  # type: ignore[arg-type]
            "reason": lambda: Reason(str(value)),
            "skip": Skip,
            "back": Back,
            "languages": OpenLanguages,
            "lang": lambda: ChooseLanguage(str(value)),
        }
        if kind in inputs:
            self.apply(inputs[kind]())

    def tap(self, rating: int, source: str) -> None:
        """The customer chose ``rating`` (a touch, or a button press)."""
        if self.staff.screen is not None:
            return  # a button pressed while staff work on the screen
        self.apply(Tap(rating, source))  # type: ignore[arg-type]

    def apply(self, event: Input) -> None:
        """Give the flow one input; if it asks for a save: highlight, store, then thank."""
        effect = self.flow.handle(event, self.clock())
        if effect is None:
            self.redraw()
            self._keep_held()
            return
        self.redraw()  # the pressed face or chosen reason, before the disk write
        self._save(effect)
        self.redraw()  # the thank-you, after the write
        if self.flow.state.screen == "thanks" and self._last_id is not None:
            self._witnessed(self._last_id)

    def _answer(self, effect: Save) -> dict[str, Any]:
        return facts.answer(effect, self.survey_version)

    def _keep_held(self) -> None:
        """A rating waits on the follow-up: keep it on disk until it is stored."""
        held = self.flow.held()
        if held is None and self._held_answer is not None and not self.flow.state.saving:
            # "Change answer": the customer withdrew the rating; it is never stored.
            log.info("the customer withdrew a held rating (%d)", self._held_answer["rating"])
            self._held_answer = None
            self.held.clear()
            return
        if held is None or self._held_answer is not None:
            return
        self._held_answer = self._answer(held)  # the answer's time is the rating's tap
        try:
            self.held.keep(self._held_answer)
        except OSError as exc:
            log.error("held rating not kept on disk (it stays in memory): %s", exc)

    def _recover_held(self) -> None:
        """Store ratings an interrupted follow-up held (this file or ones set aside), unless already stored.

        When the outbox cannot say (or the write fails), the answer waits in a
        file of its own for the next start and an alarm says so: storing on a
        guess could count one tap twice under two ids.
        """
        waiting = self.held.set_aside_answers()
        answer = self.held.load()
        if answer is not None:
            waiting.append((self.held.path, answer))
        for path, answer in waiting:
            try:
                if self.outbox.has_tap(answer.get("boot_id"), answer.get("mono_ms")):
                    log.info("the rating held by an interrupted follow-up is stored already")
                else:
                    record = self.outbox.append(answer)
                    log.warning("stored the rating held by an interrupted follow-up: %s", record.id)
                path.unlink(missing_ok=True)
            except (DeskPulseError, OSError) as exc:
                kept = self.held.set_aside(answer) if path == self.held.path else path
                log.error("a rating held by an interrupted follow-up waits in %s for the next start: %s", kept, exc)
                self._alarms["held-answer"] = f"a held rating could not be stored yet: {exc}"

    def _save(self, effect: Save) -> None:
        answer = self._answer(effect)
        was_held = self._held_answer is not None
        if self._held_answer is not None:  # the follow-up ended: its rating, with the reason if any
            answer = {**self._held_answer, "reasons": list(effect.reasons)}
            self._held_answer = None
        try:
            record = self.outbox.append(answer)
        except DeskPulseError as exc:
            # Never crash in front of a customer: say sorry, log, keep running.
            log.error("answer not saved: %s", exc)
            if self.sender is not None:
                self.sender.set_alarm("save-failed", f"an answer could not be saved: {exc}")
            self._last_id = None
            self.flow.handle(SaveFailed(str(exc)), self.clock())
            return
        self._last_id = record.id
        if was_held:
            self.held.clear()
        self.answers += 1
        log.info("answer %s saved: rating %d/%d seq %d%s", record.id, effect.rating, effect.scale, record.seq,
                 f" reasons {','.join(effect.reasons)}" if effect.reasons else "")
        if self.sender is not None:
            self.sender.set_alarm("save-failed", None)
        self.flow.handle(Saved(), self.clock())
        if self.lights is not None:
            self.lights.beep()
        if self.chime is not None:
            self.chime.play()
        if self.sender is not None:
            self.sender.notify()

    def _witnessed(self, id_: str) -> None:
        if self._witness is not None:
            self._witness.write(id_ + "\n")
            self._witness.flush()
            os.fsync(self._witness.fileno())

    # ------------------------------------------------------------------ staff

    def _follow_test_mode(self) -> None:
        """Staff switched test mode, or its time ran out: flag answers accordingly and say so in status."""
        on = self.staff.test_mode
        if on == self.flow.test_mode:
            return
        self.flow.test_mode = on
        if on:
            ends = datetime.now().astimezone() + timedelta(seconds=self.staff.test_mode_left(self.clock()))
            log.warning("test mode on until %s: answers are flagged test", ends.strftime("%H:%M"))
            message: str | None = f"test mode is on until {ends.strftime('%H:%M')}: answers are flagged test"
        else:
            log.warning("test mode off: answers count again")
            message = None
        if self.sender is not None:
            self.sender.set_alarm(protocol.TEST_MODE_ALARM, message)

    def status_facts(self) -> StatusFacts:
        """What the staff status screen shows, read now from the sender's snapshot and the outbox."""
        now = time.time()
        stats: Stats | str
        try:
            stats = self.outbox.stats()
        except DeskPulseError as exc:
            stats = str(exc)
        midnight = datetime.now().astimezone().replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
        today: int | str
        try:
            today = self.outbox.count_since(midnight)
        except DeskPulseError:
            today = "?"
        return StatusFacts(site=self.config.site, device=self.config.device, version=__version__,
                           sender=None if self.sender is None else self.sender.status, outbox=stats, today=today,
                           ip=ip_address(), test_mode=self.staff.test_mode,
                           test_mode_left_s=self.staff.test_mode_left(self.clock()), now=now,
                           lang=self.settings.default_lang)

    # ------------------------------------------------------------------ loop

    def step(self, max_wait_ms: int = 1000) -> None:
        """Wait for one event or the next timer, handle it, redraw if needed."""
        deadlines = [d for d in (self.flow.next_deadline(), self.staff.deadline(), self._countdown_tick())
                     if d is not None]
        wait = max_wait_ms
        if deadlines:
            wait = max(0, min(wait, int((min(deadlines) - self.clock()) * 1000) + 1))
        event = self._wait(wait)
        if event.type != pygame.NOEVENT:
            self.handle(event)
            for more in pygame.event.get():
                self.handle(more)
        self.staff.tick(self.clock())
        self._follow_test_mode()
        self.apply(Tick())
        if self._pending_config is not None and self.flow.state.screen == "attract":
            self.apply_config(self._pending_config)
        if self.lights is not None and self.sender is not None:
            self.lights.status(self.sender.status.connected)
        self._watch_screen()
        self._report_alarms()

    def _watch_screen(self) -> None:
        """Try a missing screen again now and then, and say in the status whether it is there."""
        if (self.screen_down is not None and self._screen_retry is not None
                and self.clock() >= self._next_screen_try):
            for event in pygame.event.get():  # closing the display drops SDL's queue: nothing pressed is lost
                self.handle(event)
            screen, problem = self._screen_retry()
            self._next_screen_try = self.clock() + RETRY_S
            self.display = Display(screen.surface, Geometry(screen.surface.get_size(), self.config.screen.mm,
                                                            self.config.screen.rotation))
            self._blocking_wait = pygame.display.get_driver() in BLOCKING_WAIT_DRIVERS
            if problem is not None and problem != self.screen_down:
                log.error("%s; still collecting from the buttons", problem)
            self.screen_down = problem
            self.redraw(force=True)
        self._alarms["screen-down"] = (None if self.screen_down is None else
                                       f"{self.screen_down}; collecting from the buttons meanwhile")

    def _report_alarms(self) -> None:
        """Hand the sender what only the kiosk sees (it may be attached after the kiosk started)."""
        if self.sender is None:
            return
        for code, message in self._alarms.items():
            if self._reported.get(code) != message:
                self.sender.set_alarm(code, message)
                self._reported[code] = message

    def _countdown_tick(self) -> float | None:
        """When the follow-up's countdown shows one second less (None: no countdown on screen)."""
        state = self.flow.state
        if state.screen != "followup" or state.until is None or state.saving:
            return None
        left = state.until - self.clock()
        return state.until - max(0, math.ceil(left) - 1)

    def _wait(self, wait_ms: int) -> pygame.event.Event:
        """The next event, or NOEVENT after ``wait_ms``."""
        if wait_ms <= 0:
            return pygame.event.poll()  # pygame.event.wait(0) would block forever
        if self._blocking_wait:
            return pygame.event.wait(wait_ms)
        # Without a blocking wait in the video driver SDL polls every millisecond
        # inside event.wait (1 % of a core doing nothing); polling every POLL_S
        # costs a tenth of that and answers a touch within a frame or so.
        end = time.monotonic() + wait_ms / 1000
        while True:
            event = pygame.event.poll()
            left = end - time.monotonic()
            if event.type != pygame.NOEVENT or left <= 0:
                return event
            time.sleep(min(POLL_S, left))

    def run(self, script: TapScript | None = None) -> None:
        """Run until SIGTERM/SIGINT (or a window close, in windowed mode).

        Args:
            script: scripted taps to give (demo and tests).
        """
        self.redraw(force=True)
        sdnotify.notify(f"READY=1\nSTATUS=collecting answers for {self.config.site}/{self.config.device}")
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            while self.running:
                if script is not None and not script.done:
                    script.maybe_tap(self, self.clock())
                    self.step(max_wait_ms=100)
                else:
                    self.step()
                if self.healthy():
                    sdnotify.notify("WATCHDOG=1")  # a hung loop stops feeding the watchdog
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def healthy(self) -> bool:
        """Whether to feed systemd's watchdog: the loop runs (it calls this) and the sender works.

        A sender failing for longer than ``sync.sender_down_limit_s`` stops the
        feeding, so systemd restarts the whole kiosk (answers wait in the outbox).
        """
        if self.sender is None:
            return True
        down = self.sender.down_for()
        limit = self.config.sync.sender_down_limit_s
        if down <= limit:
            self._starving = False
            return True
        if not self._starving:
            self._starving = True
            log.error("the sender has been failing for %s (limit %.0f s): no longer feeding the watchdog, "
                      "so systemd restarts the kiosk", "ever since it stopped" if down == float("inf")
                      else f"{down:.0f} s", limit)
        return False

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.running = False

    def close(self) -> None:
        """Save a rating held by an open follow-up, stop the sender, close files. Safe to call twice."""
        effect = self.flow.flush(self.clock())
        if effect is not None:
            self._save(effect)
        if self.sender is not None:
            self.sender.stop()
            self.sender = None
        if self.lights is not None:
            self.lights.close()
            self.lights = None
        if self.chime is not None:
            self.chime.close()
            self.chime = None
        self.outbox.close()
        if self._witness is not None:
            self._witness.close()
            self._witness = None


def ip_address() -> str:
    """This device's outgoing IP address (no packet is sent), or "none"."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: a route lookup only
            return str(s.getsockname()[0])
    except OSError:
        return "none"


def make_sender(config: KioskConfig) -> Sender:
    """The sender for this kiosk's outbox, configured from ``config``."""
    return Sender(
        config.outbox_path,
        config.site,
        config.device,
        config.broker,
        SenderSettings(
            max_inflight=config.sync.max_inflight,
            resend_after_s=config.sync.resend_after_s,
            prune_after_s=config.sync.retention_days * 86400,
            max_outbox_bytes=int(config.sync.max_outbox_mb * 1_000_000),
        ),
        version=__version__,
        health=lambda: {"clock_synced": facts.clock_synced(), "undervoltage": facts.undervoltage()},
        on_config=events.post_config,
    )

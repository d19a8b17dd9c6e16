"""The kiosk's main loop: the one owner of the flow and the screen.

Touches (and, later, button presses posted from gpiozero's threads) arrive as
pygame events; the loop turns them into flow inputs, carries out the flow's
effects and redraws only when the view changed. The order on a tap is the
product's promise:

1. the pressed face highlights at once (a frame before any disk write);
2. the answer is committed to the outbox (fsync'd);
3. only then the thank-you is drawn; the witness log, if any, is written after
   that frame, and the sender is woken.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import pygame

from device import __version__, facts, sdnotify, texts
from device.config import KioskConfig
from device.flow import Flow, FlowSettings, FlowState, Save, Saved, SaveFailed, Tap, Tick
from device.script import TapScript
from display.layout import Geometry
from display.screens import Display
from display.view import MessageView, RatingView, View
from sync import protocol
from sync.errors import DeskPulseError
from sync.outbox import Outbox
from sync.sender import Sender, SenderSettings

log = logging.getLogger("deskpulse.kiosk")

#: Posted by scripted taps and (later) by gpiozero button callbacks.
TAP_EVENT = pygame.event.custom_type()


def view_for(state: FlowState, scale: int) -> View:
    """The screen the customer sees in ``state`` (all text translated)."""
    lang = state.lang
    if state.screen == "thanks":
        return MessageView(texts.text(lang, "thanks"), texts.text(lang, "thanks_body"), "thanks")
    if state.screen == "sorry":
        return MessageView(texts.text(lang, "sorry"), texts.text(lang, "sorry_body"), "sorry")
    return RatingView(
        question=texts.text(lang, "question"),
        labels=texts.labels(lang, scale),
        note=texts.text(lang, "anonymous"),
        pressed=state.pressed,
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
    ) -> None:
        self.config = config
        self.clock = clock
        self.flip = flip
        self.sender = sender
        self.exit_on_quit = exit_on_quit
        self.display = Display(surface, Geometry(surface.get_size(), config.screen.mm, config.screen.rotation))
        self.flow = Flow(
            FlowSettings(
                scale=config.survey.scale,
                default_lang=config.survey.default_lang,
                thank_you_s=config.survey.thank_you_s,
                repeat_interval_s=config.survey.repeat_interval_s,
            )
        )
        self.outbox = Outbox(config.outbox_path, config.site, config.device)
        self._witness = open(witness, "a", encoding="utf-8") if witness else None
        self._shown: View | None = None
        self._last_id: str | None = None
        self.running = True
        self.answers = 0

    # ------------------------------------------------------------------ drawing

    @property
    def view(self) -> View:
        return view_for(self.flow.state, self.config.survey.scale)

    def redraw(self, force: bool = False) -> bool:
        """Draw the current view if it changed since the last frame."""
        view = self.view
        if view == self._shown and not force:
            return False
        self.display.render(view)
        self.flip()
        self._shown = view
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
        elif event.type == TAP_EVENT:
            self.tap(event.rating, event.source)
        elif event.type == pygame.QUIT and self.exit_on_quit:
            self.running = False

    def tap_at(self, point: tuple[float, float], source: str) -> None:
        """A touch at a panel point."""
        rating = self.display.hit(self.view, point)
        if rating is not None:
            self.tap(rating, source)

    def tap(self, rating: int, source: str) -> None:
        """The customer chose ``rating``: highlight, store, then thank."""
        effect = self.flow.handle(Tap(rating, source), self.clock())  # type: ignore[arg-type]
        if effect is None:
            return
        self.redraw()  # the pressed face, before the disk write
        self._save(effect)
        self.redraw()  # the thank-you, after the write
        if self.flow.state.screen == "thanks" and self._last_id is not None:
            self._witnessed(self._last_id)

    def _save(self, effect: Save) -> None:
        answer = {
            "ts": protocol.utc_timestamp(datetime.now(UTC)),
            "clock_synced": facts.clock_synced(),
            "boot_id": facts.boot_id(),
            "mono_ms": facts.mono_ms(),
            "rating": effect.rating,
            "scale": effect.scale,
            "reasons": list(effect.reasons),
            "lang": effect.lang,
            "source": effect.source,
            "survey": 0,
            "flags": list(effect.flags),
        }
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
        self.answers += 1
        log.info("answer %s saved: rating %d/%d seq %d", record.id, effect.rating, effect.scale, record.seq)
        if self.sender is not None:
            self.sender.set_alarm("save-failed", None)
        self.flow.handle(Saved(), self.clock())
        if self.sender is not None:
            self.sender.notify()

    def _witnessed(self, id_: str) -> None:
        if self._witness is not None:
            self._witness.write(id_ + "\n")
            self._witness.flush()
            os.fsync(self._witness.fileno())

    # ------------------------------------------------------------------ loop

    def step(self, max_wait_ms: int = 1000) -> None:
        """Wait for one event or the flow's next timer, handle it, redraw if needed."""
        deadline = self.flow.next_deadline()
        wait = max_wait_ms
        if deadline is not None:
            wait = max(0, min(wait, int((deadline - self.clock()) * 1000) + 1))
        # pygame.event.wait(0) would block forever: 0 means "no timeout" there.
        event = pygame.event.poll() if wait <= 0 else pygame.event.wait(wait)
        if event.type != pygame.NOEVENT:
            self.handle(event)
            for more in pygame.event.get():
                self.handle(more)
        self.flow.handle(Tick(), self.clock())
        self.redraw()

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
                sdnotify.notify("WATCHDOG=1")  # a hung loop stops feeding the watchdog
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.running = False

    def close(self) -> None:
        """Stop the sender and close files. Safe to call twice."""
        if self.sender is not None:
            self.sender.stop()
            self.sender = None
        self.outbox.close()
        if self._witness is not None:
            self._witness.close()
            self._witness = None


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
        ),
        version=__version__,
        health=lambda: {"clock_synced": facts.clock_synced(), "undervoltage": facts.undervoltage()},
    )

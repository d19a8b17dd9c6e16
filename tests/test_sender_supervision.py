"""The sender cannot die quietly: a failing loop is restarted, reported, and escalated to systemd.

Real parts: a private Mosquitto, real outbox files, a real ``deskpulse-central``
process (its store deduplicates, its JSON API lists what it stored), and a real
unix datagram socket standing in for systemd's ``NOTIFY_SOCKET``. The fault is an
exception raised inside the sender's own thread, the way a bug would.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pygame
import pytest
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from device.kiosk import Kiosk
from device.views import StatusFacts, status_view
from sync import protocol
from sync.broker import BrokerSettings
from sync.outbox import Outbox, State
from sync.sender import RESTARTING_ALARM, Sender, SenderSettings
from tests.support.broker import Mosquitto
from tests.support.central import CentralProcess
from tests.support.status import StatusWatcher
from tests.support.wait import wait_for

SITE, DEVICE = "test-site", "desk-1"


def answer(rating: int) -> dict[str, Any]:
    return {"ts": protocol.utc_timestamp(), "clock_synced": True, "boot_id": str(uuid.uuid4()),
            "mono_ms": 1000, "rating": rating, "scale": 5, "reasons": [], "lang": "en",
            "source": "touch", "survey": 0, "flags": []}


def fail_on_puback(sender: Sender, *, after: int, times: int) -> list[int]:
    """Make the sender's PUBACK callback raise on PUBACK number ``after`` (and the next ``times - 1``
    sessions' first PUBACK): a bug in the middle of a stream, with answers in flight. Returns the
    list that counts the failures raised."""
    original = sender._on_publish
    seen = [0]
    raised: list[int] = []

    def on_publish(client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode,
                   props: Properties | None) -> None:
        seen[0] += 1
        if seen[0] >= after and len(raised) < times:
            raised.append(seen[0])
            raise RuntimeError(f"injected failure at PUBACK {seen[0]}")
        original(client, userdata, mid, reason, props)

    sender._on_publish = on_publish  # type: ignore[method-assign]
    return raised


def test_a_failing_sender_loop_restarts_and_delivers_every_answer_exactly_once(
        broker: Mosquitto, tmp_path: Path) -> None:
    outbox_path = tmp_path / "kiosk" / "outbox.sqlite3"
    with Outbox(outbox_path, SITE, DEVICE) as box:
        ids = [box.append(answer(1 + i % 5)).id for i in range(60)]
    watcher = StatusWatcher(broker, SITE, DEVICE)
    sender = Sender(outbox_path, SITE, DEVICE, BrokerSettings(broker.host, broker.port, keepalive=5),
                    SenderSettings(max_inflight=10, resend_after_s=1.0, restart_base_s=0.2, restart_cap_s=0.5,
                                   recovered_after_s=2.0),
                    version="test")
    raised = fail_on_puback(sender, after=5, times=3)
    try:
        with CentralProcess(broker, tmp_path / "central") as central:
            sender.start()
            wait_for(lambda: len(raised) == 3, timeout=30, what="three injected failures")
            wait_for(lambda: sender.status.restarts == 3, what="three restarts counted")
            # While failing: the alarm is in the retained status and the sender says how long it has been down.
            wait_for(lambda: any(RESTARTING_ALARM in a for a in watcher.alarms()), timeout=15,
                     what="sender-restarting in a retained status report")
            assert sender.down_for() > 0
            assert dict(sender.status.alarms)[RESTARTING_ALARM].startswith("the sender's loop failed 3 times")

            central.wait_for_count(len(ids), timeout=60)
            with Outbox(outbox_path, SITE, DEVICE) as box:
                wait_for(lambda: box.stats().confirmed == len(ids), timeout=30, what="every row confirmed")
            stored = [e["id"] for e in central.events()]
            assert sorted(stored) == sorted(ids), "each answer stored exactly once"

            # After running well for recovered_after_s the alarm clears, in the status and the snapshot.
            wait_for(lambda: sender.status.failing_since is None, timeout=15, what="the sender to recover")
            assert sender.down_for() == 0.0
            assert RESTARTING_ALARM not in dict(sender.status.alarms)
            wait_for(lambda: watcher.alarms() and RESTARTING_ALARM not in watcher.alarms()[-1], timeout=15,
                     what="a status report without the alarm")
            assert sender.status.restarts == 3  # the count stays: ops can see it happened
    finally:
        sender.stop()
        watcher.close()
    with Outbox(outbox_path, SITE, DEVICE) as box:
        assert {r.state for r in (box.get(i) for i in ids) if r is not None} == {State.CONFIRMED}


def test_the_sender_snapshot_is_immutable_and_replaced_whole(broker: Mosquitto, tmp_path: Path) -> None:
    sender = Sender(tmp_path / "outbox.sqlite3", SITE, DEVICE, BrokerSettings(broker.host, broker.port, keepalive=5),
                    version="test").start()
    try:
        before = sender.status
        wait_for(lambda: sender.status.connected, what="the sender to connect")
        assert before.connected is False  # the old snapshot did not change under its reader
        with pytest.raises(AttributeError):
            sender.status.connected = False  # type: ignore[misc]
        sender.set_alarm("save-failed", "disk full")
        wait_for(lambda: dict(sender.status.alarms).get("save-failed") == "disk full", what="the alarm taken up")
        sender.set_alarm("save-failed", None)
        wait_for(lambda: "save-failed" not in dict(sender.status.alarms), what="the alarm cleared")
    finally:
        sender.stop()


def test_the_staff_screen_shows_a_restarting_sender() -> None:
    from sync.sender import SenderStatus

    status = SenderStatus(connected=False, last_error="sender loop failed: RuntimeError: boom", restarts=2,
                          failing_since=1.0, alarms=((RESTARTING_ALARM, "the sender's loop failed 2 times"),))
    view = status_view(StatusFacts(site="s", device="d", version="1", sender=status, outbox="locked", today="?",
                                   ip="none", test_mode=False, now=0.0))
    lines = dict(view.lines)
    assert lines["Sender"] == "restarting (2 failures; see the journal)"
    assert lines["Alarms"] == RESTARTING_ALARM


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], list[str]]]:
    """A datagram socket where systemd's would be; returns a reader of what arrived."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))

    def read() -> list[str]:
        out = []
        while True:
            try:
                out.append(sock.recv(4096).decode())
            except BlockingIOError:
                return out

    yield read
    sock.close()


def test_the_kiosk_stops_feeding_the_watchdog_when_the_sender_keeps_failing(
        broker: Mosquitto, kiosk_config: Callable[..., Any], notify_socket: Callable[[], list[str]]) -> None:
    config = kiosk_config(broker.url, sync={"sender_down_limit_s": 1.5})
    sender = Sender(config.outbox_path, config.site, config.device, config.broker,
                    SenderSettings(restart_base_s=0.1, restart_cap_s=0.2), version="test")
    fail_on_puback(sender, after=1, times=10_000)  # every session fails at its first PUBACK
    pygame.display.init()
    surface = pygame.display.set_mode(config.screen.size)
    kiosk = Kiosk(config, surface, sender=sender)
    sender.start()
    fed: list[float] = []
    failing_at: list[float] = []
    try:
        kiosk.redraw(force=True)

        def loop_turn() -> None:  # what Kiosk.run does each turn, with the datagrams read back
            kiosk.step(max_wait_ms=50)
            if kiosk.healthy():
                from device import sdnotify
                sdnotify.notify("WATCHDOG=1")
            if "WATCHDOG=1" in notify_socket():
                fed.append(time.monotonic())

        loop_turn()
        assert fed, "a healthy kiosk feeds the watchdog"
        kiosk.tap(4, "touch")  # an answer: its PUBACK makes the session fail
        wait_for(lambda: (loop_turn(), sender.status.restarts >= 1)[1], what="the sender to fail")
        failing_at.append(time.monotonic())
        # Within the limit the kiosk keeps feeding (a restart is normal) ...
        wait_for(lambda: (loop_turn(), fed[-1] > failing_at[0])[1], what="feeding while within the limit")
        # ... past it the feeding stops for good while the failures go on.
        wait_for(lambda: (loop_turn(), not kiosk.healthy())[1], timeout=15, what="the limit to pass")
        stopped = time.monotonic()
        restarts = sender.status.restarts
        # The marker that time passed with the loop turning: two more failures. Still no WATCHDOG=1.
        wait_for(lambda: (loop_turn(), sender.status.restarts >= restarts + 2)[1], what="two more failures")
        assert max(fed) <= stopped
        assert sender.down_for() > 1.5 and sender.status.restarts >= 2
    finally:
        kiosk.close()
        pygame.display.quit()

"""The whole path of one tap: kiosk (real display code) -> outbox -> Mosquitto -> central.

Central runs as a real ``deskpulse-central`` process; the broker is a private
Mosquitto; the kiosk runs in-process on SDL's dummy driver or as a
``deskpulse-kiosk`` subprocess that the test SIGKILLs.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from dev.broker import free_port
from device.kiosk import make_sender
from sync import protocol
from sync.outbox import State
from tests.support.broker import Mosquitto
from tests.support.central import CentralProcess
from tests.support.kiosk import HeadlessKiosk
from tests.support.mqtt_client import FakeDevice
from tests.support.wait import wait_for

SITE, DEVICE = "test-site", "desk-1"


def outbox_rows(path: Path) -> dict[str, tuple[State, bytes]]:
    with closing(sqlite3.connect(path)) as conn:
        return {i: (State(s), p) for i, s, p in conn.execute("SELECT id, state, payload FROM outbox")}


@pytest.fixture
def central(broker: Mosquitto, tmp_path: Path) -> Iterator[CentralProcess]:
    with CentralProcess(broker, tmp_path / "central") as proc:
        yield proc


def test_a_tap_reaches_central_once_with_every_field(broker, central, kiosk_config) -> None:
    config = kiosk_config(broker.url)
    sender = make_sender(config).start()
    with HeadlessKiosk(config, sender=sender) as k:
        k.tap_rating(4)
        assert k.kiosk.flow.state.screen == "thanks"
        central.wait_for_count(1)
        (stored,) = central.events()
        (row_id,) = outbox_rows(config.outbox_path)
        sent = protocol.decode("feedback", outbox_rows(config.outbox_path)[row_id][1])
        assert stored["id"] == row_id
        for field in protocol.schema("feedback")["required"]:
            assert stored[field] == sent[field], field
        assert (stored["rating"], stored["site"], stored["device"]) == (4, SITE, DEVICE)
        wait_for(lambda: outbox_rows(config.outbox_path)[row_id][0] == State.CONFIRMED,
                 what="the receipt to confirm the row")

        # The same event three more times (a device re-sending after a lost receipt).
        with FakeDevice(broker, DEVICE, site=SITE, client_id="replay") as replay:
            payload = outbox_rows(config.outbox_path)[row_id][1]
            for _ in range(3):
                replay.send(payload)
            replay.wait_for(lambda: len(replay.receipts()) >= 3, what="three receipts for the replays")
            receipts = replay.receipts()
        assert receipts == [{"id": row_id, "outcome": "duplicate"}] * 3
        assert central.health()["events"] == 1
        assert [e["id"] for e in central.events()] == [row_id]


def kiosk_toml(tmp_path: Path, broker: Mosquitto) -> Path:
    path = tmp_path / "kiosk.toml"
    path.write_text(f"""
[device]
site = "{SITE}"
name = "{DEVICE}"
data_dir = "{tmp_path / 'kiosk-data'}"
[broker]
url = "{broker.url}"
keepalive = 5
[screen]
fullscreen = false
[sync]
resend_after_s = 2
""")
    return path


def start_kiosk(config: Path, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "device.cli", "run", "-c", str(config), "--headless", *extra],
                                stdout=out, stderr=out)


@pytest.mark.parametrize("broker_down", [False, True], ids=["broker-up", "broker-down"])
def test_kiosk_killed_after_the_thank_you_still_delivers(broker, central, tmp_path, broker_down) -> None:
    """SIGKILL right after the thank-you frame: the answer is on disk and reaches central."""
    config = kiosk_toml(tmp_path, broker)
    witness = tmp_path / "witness.log"
    log = tmp_path / "kiosk.log"
    if broker_down:
        broker.kill()  # nothing can leave the device before the kill
    kiosk = start_kiosk(config, log, "--script", "2", "--witness", str(witness))
    try:
        wait_for(lambda: witness.exists() and witness.read_text().endswith("\n"), timeout=30,
                 what=f"the thank-you witness line; kiosk log:\n{log.read_text() if log.exists() else ''}")
        kiosk.send_signal(signal.SIGKILL)
        kiosk.wait(5)
    finally:
        if kiosk.poll() is None:
            kiosk.kill()
    (answer_id,) = witness.read_text().split()
    rows = outbox_rows(tmp_path / "kiosk-data" / "outbox.sqlite3")
    assert answer_id in rows, "a thanked-for answer must be on disk"

    if broker_down:
        broker.start()
    first_run = len(log.read_text())
    kiosk = start_kiosk(config, log)
    try:
        central.wait_for_count(1, timeout=40)
        assert [e["id"] for e in central.events()] == [answer_id]
        assert central.events()[0]["rating"] == 2
        # The answer may have been stored before the kill: let the new kiosk come up (its loop, with its
        # SIGTERM handler, starts right after its first log line; its sender hears central's status a
        # little later) before it is stopped, so that its clean exit is what is checked.
        wait_for(lambda: "central is online" in log.read_text()[first_run:], timeout=30, what="the restarted kiosk")
    finally:
        kiosk.terminate()
        assert kiosk.wait(15) == 0, log.read_text()


def test_make_demo_runs_and_central_shows_the_taps(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "dev.demo", "--headless", "--script", "5,3,1", "--fresh",
         "--dir", str(tmp_path / "demo"), "--port", str(free_port()), "--exit-when-stored", "3",
         "--timeout", "120"],
        capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "dashboard at http://127.0.0.1:" in proc.stdout
    assert "central stored 3 answers" in proc.stdout

"""``deskpulse-sim``: a fleet of virtual kiosks (real flow, outbox and sender) against a real broker and collector.

The acceptance test of issue 18: 50 kiosks for a bounded time, the broker
SIGKILLed once and restarted on the same port, and every answer stored exactly
once, checked here from the kiosks' outbox files and central's ``events``
table (not only from the simulator's own summary).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from contextlib import closing
from pathlib import Path

import pytest

from device import sim
from sync.outbox import State
from tests.support.broker import Mosquitto
from tests.support.central import REPO, CentralProcess
from tests.support.wait import wait_for


def outbox(path: Path) -> tuple[str, list[tuple[str, int, int]]]:
    with closing(sqlite3.connect(path)) as conn:
        epoch = conn.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()[0]
        return epoch, conn.execute("SELECT id, seq, state FROM outbox ORDER BY seq").fetchall()


def central_events(db: Path, site: str) -> list[tuple[str, str, str, int]]:
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute("SELECT id, device, epoch, seq FROM events WHERE site = ?", (site,)).fetchall()


@pytest.mark.slow
def test_fifty_kiosks_survive_a_broker_kill_and_every_answer_is_stored_once(broker: Mosquitto,
                                                                            tmp_path: Path) -> None:
    kiosks_dir = tmp_path / "kiosks"
    report = tmp_path / "sim.json"
    with CentralProcess(broker, tmp_path / "central") as central:
        db = Path(central.db_url.removeprefix("sqlite:///"))
        log = open(tmp_path / "sim.log", "w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "device.sim", "--broker", broker.url, "--kiosks", "50", "--processes", "2",
             "--site", "sim-test", "--duration", "14", "--rate", "0.5", "--resend-after", "2", "--timeout", "45",
             "--central-db", central.db_url, "--dir", str(kiosks_dir), "--json", str(report)],
            stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        try:
            # Kill the broker once answers are flowing, with more being made.
            wait_for(lambda: (central.health() or {}).get("events", 0) >= 20, timeout=25,
                     what="the first answers stored")
            broker.kill()
            # Fault timing, not waiting for anything: the outage lasts 1.5 s, in which the kiosks find the
            # broker gone and back off while their customers keep answering into the outboxes.
            time.sleep(1.5)
            broker.start()  # same port, same persistence file
            assert proc.wait(timeout=55) == 0, (tmp_path / "sim.log").read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
            log.close()
        out = (tmp_path / "sim.log").read_text()
        events = central_events(db, "sim-test")

    summary = json.loads(report.read_text())["summary"]
    assert "OK: every answer stored exactly once" in out
    assert summary["kiosks"] == 50 and summary["processes"] == 2
    # Every kiosk lost its connection and made at least one more attempt.
    assert summary["connection_attempts"] >= 100, summary

    # Every outbox: gap-free seq, every row confirmed by a receipt, and each in central exactly once.
    made: dict[str, str] = {}
    epochs = {}
    for path in sorted(kiosks_dir.glob("*/outbox.sqlite3")):
        epoch, rows = outbox(path)
        epochs[path.parent.name] = epoch
        assert [seq for _, seq, _ in rows] == list(range(1, len(rows) + 1)), path
        for id_, _, state in rows:
            assert state == State.CONFIRMED, (path, id_)
            made[id_] = path.parent.name
    assert len(epochs) == 50
    assert summary["answers_made"] == len(made) >= 100

    per_id = Counter(e[0] for e in events)
    assert set(per_id) == set(made), "central has exactly the answers the kiosks made"
    assert max(per_id.values()) == 1
    assert len({(d, ep, seq) for _, d, ep, seq in events}) == len(events)
    for id_, device, epoch, _ in events:
        assert made[id_] == device and epochs[device] == epoch


def test_the_check_finds_a_missing_and_a_doubled_answer(tmp_path: Path) -> None:
    """The summary's check is not blind: an answer central lacks and one it has twice are counted."""
    from sync.outbox import Outbox

    rows = []
    paths = []
    for device in ("sim-0001", "sim-0002"):
        path = tmp_path / device / "outbox.sqlite3"
        with Outbox(path, "s", device) as box:
            for rating in (3, 4):
                record = box.append({"ts": "2026-01-01T00:00:00Z", "clock_synced": True,
                                     "boot_id": "00000000-0000-4000-8000-000000000000", "mono_ms": rating,
                                     "rating": rating, "scale": 5, "reasons": [], "lang": "en", "source": "touch",
                                     "survey": 0, "flags": []})
                rows.append((record.id, device, box.epoch, record.seq))
        paths.append((device, path))
    db = tmp_path / "central.sqlite3"
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("CREATE TABLE events (id TEXT, site TEXT, device TEXT, epoch TEXT, seq INTEGER)")
        # the first answer is missing; the last is stored twice (once under another id, same seq)
        kept = rows[1:] + [("another-id", *rows[-1][1:])]
        conn.executemany("INSERT INTO events VALUES (?, 's', ?, ?, ?)", kept)
        conn.commit()
    result = sim.check(paths, {"sim-0001": 2, "sim-0002": 2}, "s", f"sqlite:///{db}")
    assert (result.made, result.stored, result.missing, result.duplicated) == (4, 3, 1, 1)
    assert result.extra_in_central == 1 and not result.ok
    by_receipts = sim.check(paths, {"sim-0001": 2, "sim-0002": 3}, "s", None)
    assert (by_receipts.confirmed, by_receipts.missing, by_receipts.lost_at_outbox) == (0, 4, 1)


def test_help_names_the_options() -> None:
    out = subprocess.run([sys.executable, "-m", "device.sim", "--help"], capture_output=True, text=True,
                         cwd=REPO, timeout=30)
    assert out.returncode == 0
    for option in ("--kiosks", "--processes", "--rate", "--answers", "--duration", "--timeout", "--central-db",
                   "--backlog", "--broker"):
        assert option in out.stdout
    assert "--no-jitter" not in out.stdout  # the storm bench's switch is not a user-facing option


def test_a_too_low_open_file_limit_is_said_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    import resource

    monkeypatch.setattr(resource, "getrlimit", lambda which: (256, 512))
    monkeypatch.setattr(resource, "setrlimit", lambda which, limits: None)
    soft, hard, problem = sim.raise_open_files(4000)
    assert (soft, hard) == (512, 512)
    assert problem is not None and "open-file limit is 512" in problem and "--processes" in problem


def test_no_broker_ends_at_the_timeout_with_a_failed_summary(tmp_path: Path) -> None:
    """Nothing listens on the port: the answers wait in the outboxes, the run stops at --timeout and says so."""
    from dev.broker import free_port

    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "device.sim", "--broker", f"mqtt://127.0.0.1:{free_port()}", "--kiosks", "3",
         "--processes", "1", "--answers", "1", "--rate", "5", "--timeout", "8", "--no-progress",
         "--dir", str(tmp_path / "kiosks")],
        capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 1, out.stdout + out.stderr
    assert time.monotonic() - started < 40
    assert "FAILED: --timeout 8 s reached with 3 answers unconfirmed" in out.stdout
    assert "not confirmed           3" in out.stdout and "missing                 3" in out.stdout
    assert "Connection refused" in out.stdout  # the kiosks' last error, counted
    for path in (tmp_path / "kiosks").glob("*/outbox.sqlite3"):
        assert [state for _, _, state in outbox(path)[1]] == [State.PENDING]


def test_a_usage_error_exits_2() -> None:
    out = subprocess.run([sys.executable, "-m", "device.sim", "--kiosks", "0"], capture_output=True, text=True,
                         cwd=REPO, timeout=30)
    assert out.returncode == 2 and "--kiosks and --processes must be at least 1" in out.stderr

"""The outbox: durable, gap-free, forward-only."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sync import protocol
from sync.errors import ProtocolError
from sync.outbox import Outbox, State


def answer(rating: int = 4, **changes: object) -> dict:
    base = {
        "ts": protocol.utc_timestamp(), "clock_synced": True,
        "boot_id": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "mono_ms": 1000,
        "rating": rating, "scale": 5, "reasons": [], "lang": "en", "source": "touch",
        "survey": 0, "flags": [],
    }
    base.update(changes)
    return base


@pytest.fixture
def outbox(tmp_path: Path):
    with Outbox(tmp_path / "outbox.sqlite3", "hq", "desk-1") as box:
        yield box


def test_append_writes_a_valid_event_in_wal_with_full_sync(outbox: Outbox) -> None:
    record = outbox.append(answer())
    event = protocol.decode_feedback(protocol.feedback_topic("hq", "desk-1"), record.payload)
    assert (event["site"], event["device"], event["epoch"], event["seq"]) == ("hq", "desk-1", outbox.epoch, 1)
    conn = sqlite3.connect(outbox.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert outbox._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_seq_is_gap_free_across_pruning_and_reopening(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    with Outbox(path, "hq", "d") as box:
        epoch = box.epoch
        first = [box.append(answer()) for _ in range(3)]
        box.mark_sent(r.id for r in first)
        box.settle([(r.id, "stored", None) for r in first])
        assert box.prune(older_than_s=-1) == 3
    with Outbox(path, "hq", "d") as box:
        assert box.epoch == epoch
        assert [box.append(answer()).seq for _ in range(2)] == [4, 5]


def test_an_invalid_answer_writes_nothing_and_uses_no_seq(outbox: Outbox) -> None:
    with pytest.raises(ProtocolError):
        outbox.append(answer(rating=9))
    assert outbox.append(answer()).seq == 1
    assert outbox.stats().pending == 1


def test_states_only_move_forward(outbox: Outbox) -> None:
    a, b = outbox.append(answer()), outbox.append(answer())
    assert outbox.settle([(a.id, "stored", None)]) == 1  # a receipt may overtake the PUBACK
    assert outbox.mark_sent([a.id, b.id]) == 1  # a stays confirmed
    assert outbox.get(a.id).state is State.CONFIRMED
    assert outbox.get(b.id).state is State.SENT
    assert outbox.settle([(b.id, "rejected", "bad")]) == 1
    assert outbox.settle([(b.id, "stored", None)]) == 0
    assert outbox.get(b.id).state is State.REJECTED


def test_due_gives_pending_then_stale_sent_rows(outbox: Outbox) -> None:
    a, b, c = (outbox.append(answer()) for _ in range(3))
    outbox.mark_sent([a.id])
    assert [r.id for r in outbox.due(10)] == [b.id, c.id]
    assert [r.id for r in outbox.due(10, resend_after=0)] == [b.id, c.id, a.id]
    sent_at = outbox.get(a.id).sent_at
    assert [r.id for r in outbox.due(10, resend_after=30, now=sent_at + 29)] == [b.id, c.id]
    assert [r.id for r in outbox.due(10, resend_after=30, now=sent_at + 30)] == [b.id, c.id, a.id]


def test_resends_back_off_but_never_stop(outbox: Outbox) -> None:
    row = outbox.append(answer())
    for _ in range(9):  # nine publishes, nine PUBACKs, no receipt
        outbox.mark_sent([row.id])
    sent_at = outbox.get(row.id).sent_at
    assert outbox.due(10, resend_after=10, now=sent_at + 10 * 32 - 1) == []
    assert [r.id for r in outbox.due(10, resend_after=10, now=sent_at + 10 * 32)] == [row.id]


def test_prune_keeps_everything_not_confirmed(outbox: Outbox) -> None:
    rows = [outbox.append(answer()) for _ in range(4)]
    outbox.mark_sent([rows[1].id])
    outbox.settle([(rows[2].id, "rejected", "why"), (rows[3].id, "duplicate", None)])
    assert outbox.prune(older_than_s=-1) == 1
    stats = outbox.stats()
    assert (stats.pending, stats.sent, stats.rejected, stats.confirmed) == (1, 1, 1, 0)
    assert outbox.integrity_ok()


@pytest.mark.parametrize("damage", ["garbage-header", "torn-page"])
def test_a_corrupt_outbox_is_moved_aside_with_its_wal_and_a_new_epoch_begins(
        tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "outbox.sqlite3"
    box = Outbox(path, "hq", "desk-1")
    old_epoch = box.epoch
    for _ in range(50):
        box.append(answer())
    box.close()
    raw = bytearray(path.read_bytes())
    if damage == "garbage-header":
        raw[:100] = b"\x00garbage" * 12 + b"\x00" * 4
    else:  # overwrite the middle of the file, as a torn write would
        middle = len(raw) // 2
        raw[middle:middle + 2048] = b"\xff" * 2048
    path.write_bytes(bytes(raw))
    (tmp_path / "outbox.sqlite3-wal").write_bytes(b"pending answers may live here")

    with Outbox(path, "hq", "desk-1") as fresh:
        assert fresh.epoch != old_epoch
        assert fresh.stats().backlog == 0
        assert fresh.append(answer()).seq == 1  # seq restarts with the new epoch
        (alarm,) = fresh.alarms()
        assert alarm["code"] == "outbox-corrupt" and "moved aside" in alarm["message"]
        assert fresh._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    aside = sorted(p.name for p in tmp_path.glob("outbox.sqlite3.corrupt-*"))
    if damage == "garbage-header":
        # SQLite never touched it, so the WAL moved with its database, byte for byte.
        assert len(aside) == 2 and aside[1].endswith("-wal")
        assert (tmp_path / aside[1]).read_bytes() == b"pending answers may live here"
    else:
        # SQLite read this one (its header is fine) and discarded the invalid WAL.
        assert aside and not aside[0].endswith("-wal")
    assert "corrupt" in caplog.text and "new epoch" in caplog.text


def test_the_disk_cap_drops_only_confirmed_rows_and_raises_an_alarm(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.sqlite3", "hq", "desk-1", max_bytes=10_000_000) as box:
        rows = [box.append(answer()) for _ in range(400)]
        box.settle([(r.id, "stored", None) for r in rows[:300]])
        box.max_bytes = 1  # a cap nothing fits under
        assert box.enforce_cap() is False
        stats = box.stats()
        assert (stats.confirmed, stats.pending) == (0, 100)  # every unconfirmed answer kept
        (alarm,) = box.alarms()
        assert alarm["code"] == "outbox-over-cap" and "100 answers" in alarm["message"]
        box.max_bytes = 10_000_000
        assert box.enforce_cap() is True and box.alarms() == []


def test_a_second_handle_keeps_the_first_ones_file_locks(tmp_path: Path) -> None:
    """The kiosk and its sender open the same outbox in one process. Opening the
    second must not open()/close() the file itself: closing any descriptor drops
    all of the process's POSIX locks, and another process could then checkpoint
    and delete the WAL under the live connection (seen as lost receipts)."""
    import os

    locks = Path("/proc/locks")
    if not locks.exists():
        pytest.skip("no /proc/locks on this system")
    path = tmp_path / "outbox.sqlite3"

    def held() -> list[str]:
        ino = os.stat(path).st_ino
        # "12: POSIX  ADVISORY  READ 4242 08:01:1234 128 128": drop the ordinal, which moves
        # whenever any process on the machine takes or drops a lock.
        return [line.split(":", 1)[1].strip() for line in locks.read_text().splitlines()
                if f":{ino} " in line and f" {os.getpid()} " in line]

    with Outbox(path, "hq", "desk-1") as first:
        before = held()
        assert before, "SQLite holds a lock on an open WAL database"
        with Outbox(path, "hq", "desk-1") as second:
            assert held() == before
            second.append(answer())
        first.append(answer())
        assert held() == before

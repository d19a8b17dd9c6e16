"""Central's store on real databases: SQLite always, PostgreSQL when DESKPULSE_TEST_PG_URL is set.

``store_url`` (tests/conftest.py) gives each PostgreSQL test a fresh database, e.g. with
``DESKPULSE_TEST_PG_URL=postgresql://postgres@127.0.0.1:5432/test``.
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central import reads
from central.store import MAX_DEAD_LETTER_BYTES, DeadLetter, Store, dead_letters, metadata
from sync import protocol
from tests.support.central_rows import count_dead_letters, dead_letter_rows, get_event
from tests.support.events import feedback_event

#: The newest migration.
HEAD = "0013"



def test_migrate_creates_the_tables_through_alembic(store_url: str) -> None:
    with Store(store_url) as store:
        assert store.revision() is None
        assert store.migrate() == HEAD
        with store.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == HEAD
            tables = set(sa.inspect(conn).get_table_names())
        assert {"events", "dead_letters", "alembic_version"} <= tables


def test_migrate_twice_is_a_no_op(store: Store) -> None:
    store.insert_events([feedback_event()])
    assert store.migrate() == HEAD
    assert reads.count_events(store) == 1


def test_the_migration_matches_the_tables_the_queries_use(store: Store) -> None:
    with store.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diffs == []


def test_an_event_comes_back_as_it_was_sent(store: Store) -> None:
    event = feedback_event(reasons=["waiting-time", "friendliness"], flags=["test"], rating=2, scale=3)
    assert store.insert_events([event]) == {event["id"]: "stored"}
    stored = get_event(store, event["id"])
    assert stored is not None
    assert {k: stored[k] for k in event} == event
    assert stored["ingest_id"] >= 1
    assert protocol.parse_timestamp(stored["received_at"]).tzinfo is not None
    assert get_event(store, protocol.uuid7()) is None


def test_the_same_event_twice_is_stored_once(store: Store) -> None:
    event = feedback_event()
    assert store.insert_events([event]) == {event["id"]: "stored"}
    assert store.insert_events([event]) == {event["id"]: "duplicate"}
    assert reads.count_events(store) == 1


def test_a_batch_mixes_new_and_duplicate_events(store: Store) -> None:
    old = [feedback_event(seq=i) for i in range(1, 4)]
    store.insert_events(old)
    new = [feedback_event(seq=i) for i in range(4, 7)]
    batch = [old[0], new[0], old[1], new[1], new[1], new[2]]  # new[1] twice in one batch
    outcomes = store.insert_events(batch)
    assert outcomes == {old[0]["id"]: "duplicate", old[1]["id"]: "duplicate",
                        new[0]["id"]: "stored", new[1]["id"]: "stored", new[2]["id"]: "stored"}
    assert reads.count_events(store) == 6


def test_a_large_batch_commits_in_one_call(store: Store) -> None:
    batch = [feedback_event(seq=i) for i in range(1, 2501)]  # more rows than one INSERT's parameters
    outcomes = store.insert_events(batch)
    assert set(outcomes.values()) == {"stored"}
    assert reads.count_events(store) == 2500


def test_ingest_ids_are_monotonic_and_page_with_events_after(store: Store) -> None:
    ids = []
    for i in range(1, 8):
        event = feedback_event(seq=i)
        store.insert_events([event])
        ids.append(event["id"])
    rows = reads.events(store, after=0, limit=100)
    assert [r["id"] for r in rows] == ids
    ingest_ids = [r["ingest_id"] for r in rows]
    assert ingest_ids == sorted(ingest_ids) and len(set(ingest_ids)) == len(ingest_ids)
    assert [r["id"] for r in reads.events(store, after=ingest_ids[2], limit=2)] == ids[3:5]
    assert reads.events(store, after=ingest_ids[-1]) == []
    assert reads.last_ingest_id(store) == ingest_ids[-1]
    assert [r["id"] for r in reads.recent(store, 3)] == ids[::-1][:3]


def test_concurrent_writers_get_distinct_ids_and_no_duplicates(store: Store) -> None:
    shared = [feedback_event(seq=i) for i in range(1, 41)]
    results: list[dict[str, str]] = []
    lock = threading.Lock()

    def write(part: list[dict[str, Any]]) -> None:
        outcome = store.insert_events(part)
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=write, args=(shared[i::2] + shared[:10],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    stored = [id_ for r in results for id_, outcome in r.items() if outcome == "stored"]
    assert sorted(stored) == sorted(e["id"] for e in shared)  # each stored exactly once
    assert reads.count_events(store) == 40


def test_a_dead_letter_keeps_the_raw_bytes_and_the_reason(store: Store) -> None:
    raw = b'{"rating": true, "\xff": 1}'
    store.dead_letter("deskpulse/v1/test-site/desk-1/feedback", "feedback payload invalid at rating", raw)
    (letter,) = dead_letter_rows(store)
    assert letter["raw"] == raw
    assert letter["reason"] == "feedback payload invalid at rating"
    assert letter["topic"] == "deskpulse/v1/test-site/desk-1/feedback"
    assert count_dead_letters(store) == 1


def test_dead_letters_commit_with_the_events_of_their_batch(store: Store) -> None:
    event = feedback_event()
    outcomes = store.insert_events([event], dead=[DeadLetter("t/x", "bad", b"\x00\x01")])
    assert outcomes == {event["id"]: "stored"}
    assert count_dead_letters(store) == 1 and reads.count_events(store) == 1


def test_a_huge_dead_letter_is_cut(store: Store) -> None:
    store.dead_letter("t", "too big", b"x" * (MAX_DEAD_LETTER_BYTES + 10))
    (letter,) = dead_letter_rows(store)
    assert len(letter["raw"]) == MAX_DEAD_LETTER_BYTES
    assert "cut" in letter["reason"]


def test_an_impossible_date_is_refused_before_anything_is_written(store: Store) -> None:
    good, bad = feedback_event(), feedback_event(ts="2026-13-45T09:41:07Z", check=False)
    with pytest.raises(ValueError, match="ts"):
        store.insert_events([good, bad])
    assert reads.count_events(store) == 0


def test_a_sqlite_store_creates_its_folder(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "central.sqlite3"
    with Store(f"sqlite:///{path}") as store:
        store.migrate()
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    assert path.exists()


# ---------------------------------------------------------------- migrations


def _rows_at_0001(events_: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows as the foundation's first schema (revision 0001) stored them."""
    received = datetime.now(UTC)
    out = []
    for e in events_:
        row = {("schema_version" if k == "schema" else k): v for k, v in e.items()}
        row["reasons"] = json.dumps(e["reasons"])
        row["flags"] = json.dumps(e["flags"])
        row["ts_utc"] = protocol.parse_timestamp(e["ts"]).astimezone(UTC)
        row["received_at"] = received
        out.append(row)
    return out


def test_an_existing_database_at_0001_is_upgraded_in_place_with_its_data(store_url: str) -> None:
    old_events = [feedback_event(seq=i, rating=1 + i % 5) for i in range(1, 51)]
    old_events.append(feedback_event(seq=51, clock_synced=False, mono_ms=5_000))
    with Store(store_url) as store:
        assert store.migrate("0001") == "0001"
        with store.engine.begin() as conn:
            # The tables as 0001 made them, read from the database (not from today's model).
            old = sa.MetaData()
            old_table = sa.Table("events", old, autoload_with=conn)
            assert "time_source" not in old_table.c
            conn.execute(old_table.insert(), _rows_at_0001(old_events))
            conn.execute(sa.Table("dead_letters", old, autoload_with=conn).insert(),
                         [{"received_at": datetime.now(UTC), "topic": "t", "reason": "bad", "raw": b"\xff"}])
            before = {r.id: r.ingest_id for r in conn.execute(sa.select(old_table.c.id, old_table.c.ingest_id))}

    with Store(store_url) as store:  # a new process, as after a software update
        assert store.migrate() == HEAD
        assert reads.count_events(store) == len(old_events)
        assert count_dead_letters(store) == 1
        for event in old_events:
            stored = get_event(store, event["id"])
            assert stored is not None
            assert {k: stored[k] for k in event} == event  # every field as it was sent
            assert stored["ingest_id"] == before[event["id"]]  # ingest ids unchanged
            assert stored["time_source"] == "device"  # where 0001 placed every answer
        with store.engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
        # 0009 counted the old answers per epoch: each sits alone in its epoch at seq i, a hole 1..i-1.
        assert sorted((g["first"], g["last"]) for g in reads.gaps(store)) == [(1, i - 1) for i in range(2, 52)]
        # The upgraded database keeps working: new ids come after the old ones, duplicates are refused.
        new = feedback_event(seq=52)
        assert store.insert_events([new, old_events[0]]) == {new["id"]: "stored", old_events[0]["id"]: "duplicate"}
        stored_new = get_event(store, new["id"])
        assert stored_new is not None and stored_new["ingest_id"] > max(before.values())
        store.record_status({"schema": 1, "site": "test-site", "device": "desk-1", "state": "offline"})
        assert [d["state"] for d in reads.device_rows(store)] == ["offline"]


# ---------------------------------------------------------------- time


def _placed(store: Store, id_: str) -> tuple[str, datetime]:
    row = get_event(store, id_)
    assert row is not None
    return row["time_source"], protocol.parse_timestamp(row["placed_at"])


def test_a_synchronised_answer_keeps_its_device_time(store: Store) -> None:
    event = feedback_event(ts="2026-11-20T09:41:07.250Z")
    store.insert_events([event])
    source, placed = _placed(store, event["id"])
    assert source == "device"
    assert placed == datetime(2026, 11, 20, 9, 41, 7, 250_000, tzinfo=UTC)


def test_an_unsynchronised_answer_alone_is_placed_at_receipt_and_marked(store: Store) -> None:
    event = feedback_event(ts="1970-01-01T00:02:03Z", clock_synced=False)
    before = datetime.now(UTC)
    store.insert_events([event])
    source, placed = _placed(store, event["id"])
    assert source == "received"
    assert before - timedelta(seconds=1) <= placed <= datetime.now(UTC) + timedelta(seconds=1)
    stored = get_event(store, event["id"])
    assert stored is not None and stored["ts"] == "1970-01-01T00:02:03Z"  # the device's ts is kept


def test_earlier_answers_are_retimed_when_a_later_synchronised_one_arrives(store: Store) -> None:
    boot = str(uuid.uuid4())
    early = feedback_event(seq=1, boot_id=boot, mono_ms=10_000, clock_synced=False, ts="1970-01-01T00:00:10Z")
    middle = feedback_event(seq=2, boot_id=boot, mono_ms=70_000, clock_synced=False, ts="1970-01-01T00:01:10Z")
    other_boot = feedback_event(seq=3, mono_ms=20_000, clock_synced=False, ts="1970-01-01T00:00:20Z")
    store.insert_events([early, middle, other_boot])
    assert _placed(store, early["id"])[0] == "received"

    synced = feedback_event(seq=4, boot_id=boot, mono_ms=100_000, ts="2026-11-20T10:00:00Z")
    store.insert_events([synced])
    anchor = datetime(2026, 11, 20, 10, 0, 0, tzinfo=UTC)
    assert _placed(store, early["id"]) == ("retimed", anchor - timedelta(seconds=90))
    assert _placed(store, middle["id"]) == ("retimed", anchor - timedelta(seconds=30))
    assert _placed(store, other_boot["id"])[0] == "received"  # another boot: no anchor
    assert _placed(store, synced["id"]) == ("device", anchor)

    # A nearer synchronised answer (less monotonic drift) re-places the one before it.
    nearer = feedback_event(seq=5, boot_id=boot, mono_ms=80_000, ts="2026-11-20T09:59:40.500Z")
    store.insert_events([nearer])
    assert _placed(store, middle["id"]) == ("retimed", datetime(2026, 11, 20, 9, 59, 30, 500_000, tzinfo=UTC))
    assert _placed(store, early["id"]) == ("retimed", datetime(2026, 11, 20, 9, 58, 30, 500_000, tzinfo=UTC))


def test_an_unsynchronised_answer_after_the_last_synchronised_one_keeps_its_receipt_time(store: Store) -> None:
    boot = str(uuid.uuid4())
    synced = feedback_event(seq=1, boot_id=boot, mono_ms=10_000)
    late = feedback_event(seq=2, boot_id=boot, mono_ms=20_000, clock_synced=False)  # clock lost after
    store.insert_events([synced, late])
    assert _placed(store, late["id"])[0] == "received"


def test_an_answer_arriving_after_its_anchor_is_retimed_at_once(store: Store) -> None:
    boot = str(uuid.uuid4())
    synced = feedback_event(seq=2, boot_id=boot, mono_ms=50_000, ts="2026-11-20T10:00:00Z")
    store.insert_events([synced])
    early = feedback_event(seq=1, boot_id=boot, mono_ms=45_000, clock_synced=False)  # a resend, late
    store.insert_events([early])
    assert _placed(store, early["id"]) == ("retimed", datetime(2026, 11, 20, 9, 59, 55, tzinfo=UTC))


# ---------------------------------------------------------------- gaps


def test_gaps_are_the_missing_seq_ranges_per_device_and_epoch(store: Store) -> None:
    e1, e2 = str(uuid.uuid4()), str(uuid.uuid4())
    batch = [feedback_event(device="desk-1", epoch=e1, seq=s) for s in (1, 2, 5, 6, 9)]
    batch += [feedback_event(device="desk-1", epoch=e2, seq=s) for s in (3, 4)]  # a new epoch, 1-2 missing
    batch += [feedback_event(device="desk-2", seq=s, epoch=e1) for s in (1, 2, 3)]  # same epoch text, other desk
    store.insert_events(batch)
    gaps = reads.gaps(store)
    expected = [{"epoch": e1, "first": 3, "last": 4}, {"epoch": e1, "first": 7, "last": 8},
                {"epoch": e2, "first": 1, "last": 2}]
    got = [{k: g[k] for k in ("epoch", "first", "last")} for g in gaps]
    def order(g: dict[str, Any]) -> tuple[str, int]:
        return g["epoch"], g["first"]

    assert sorted(got, key=order) == sorted(expected, key=order)
    assert {(g["site"], g["device"]) for g in gaps} == {("test-site", "desk-1")}
    assert reads.gaps(store, device="desk-2") == []
    # The missing answers arrive (resent): the gaps close.
    store.insert_events([feedback_event(device="desk-1", epoch=e1, seq=s) for s in (3, 4, 7, 8)])
    assert [(g["first"], g["last"]) for g in reads.gaps(store, device="desk-1")] == [(1, 2)]


# ---------------------------------------------------------------- gaps


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_gaps_from_the_epoch_counts_equal_a_scan_of_every_answer(store: Store, data: st.DataObject) -> None:
    """Whatever arrives, in whatever batches and however often: the gaps are the holes in each epoch's seqs."""
    epochs = [(device, str(uuid.uuid4())) for device in ("desk-1", "desk-2") for _ in range(2)]
    events = [feedback_event(device=device, epoch=epoch, seq=seq)
              for device, epoch in epochs for seq in data.draw(st.sets(st.integers(1, 40), max_size=25))]
    sent = data.draw(st.lists(st.sampled_from(events), max_size=80)) if events else []
    for first in range(0, len(sent), 7):
        store.insert_events(sent[first:first + 7])
    have: dict[tuple[str, str], set[int]] = {}
    for event in sent:
        have.setdefault((event["device"], event["epoch"]), set()).add(event["seq"])
    expected = []
    for (device, epoch), seqs in have.items():
        missing = [q for q in range(1, max(seqs) + 1) if q not in seqs]
        runs: list[list[int]] = []
        for q in missing:
            if runs and runs[-1][1] == q - 1:
                runs[-1][1] = q
            else:
                runs.append([q, q])
        expected += [(device, epoch, a, b) for a, b in runs]
    got = [(g["device"], g["epoch"], g["first"], g["last"]) for g in reads.gaps(store)
           if (g["device"], g["epoch"]) in have]
    assert sorted(got) == sorted(expected)


def test_a_retired_device_stays_retired_until_added_again(store: Store) -> None:
    from central.reads import device_rows

    store.record_status({"schema": 1, "site": "test-site", "device": "desk-1", "state": "online",
                         "health": {"backlog": 3}})
    store.retire_device("test-site", "desk-1")
    store.retire_device("test-site", "desk-7")  # never reported: retired all the same
    store.record_status({"schema": 1, "site": "test-site", "device": "desk-1", "state": "offline"})
    assert [(r["device"], r["state"], r["backlog"]) for r in device_rows(store)] == [
        ("desk-1", "retired", 3), ("desk-7", "retired", None)]
    assert store.unretire_device("test-site", "desk-1") is True
    assert store.unretire_device("test-site", "desk-1") is False
    store.record_status({"schema": 1, "site": "test-site", "device": "desk-1", "state": "online"})
    assert [(r["device"], r["state"]) for r in device_rows(store)] == [("desk-1", "online"), ("desk-7", "retired")]


def test_dead_letters_are_pruned_to_their_size_and_age_budget(store: Store) -> None:
    from datetime import timedelta

    from central import reads

    for i in range(50):
        store.dead_letter("deskpulse/v1/s/d/feedback", f"junk {i:03d}", b"x" * 1000)
    rows, size = reads.dead_letter_usage(store)
    each = size // rows
    assert rows == 50 and each >= 1000
    assert store.prune_dead_letters(10 * each, timedelta(days=1)) == 40
    assert reads.dead_letter_usage(store) == (10, 10 * each)
    with store.engine.connect() as conn:  # the newest are kept
        reasons = sorted(conn.execute(sa.select(dead_letters.c.reason)).scalars())
    assert reasons == [f"junk {i:03d}" for i in range(40, 50)]
    assert store.prune_dead_letters(10**9, timedelta(seconds=-1)) == 10  # all older than "in a second"
    assert reads.dead_letter_usage(store) == (0, 0)


def test_identical_refusals_are_logged_once_then_summarised(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from central.logsummary import MAX_KINDS, SummaryLog

    now = [0.0]
    refusals = SummaryLog(logging.getLogger("test.summary"), interval_s=60, clock=lambda: now[0])
    with caplog.at_level("WARNING", logger="test.summary"):
        for i in range(1000):
            refusals.warning(f"refused a payload on t/{i % 7}: rating {i} is out of range", key=f"rating {i}")
        refusals.warning("refused a payload on t/1: not JSON")
        for i in range(MAX_KINDS + 10):
            refusals.warning(f"kind {chr(65 + i % 26)}{chr(65 + i // 26)}")
        assert len(caplog.records) == MAX_KINDS + 1  # 50 kinds, then the first of the rest
        now[0] = 61.0
        refusals.flush()
    lines = [r.getMessage() for r in caplog.records]
    assert "999 more like this in the last 61 s, the last: refused a payload on t/5: rating 999 is out of range" \
        in lines
    assert lines[-1].startswith("11 more like this") and len(lines) == MAX_KINDS + 3


@pytest.mark.parametrize("value", [
    datetime(2026, 11, 29, 22, 51, 7, 123456, tzinfo=UTC),
    datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),  # no microseconds: still six digits
    datetime(2026, 1, 2, 3, 4, 5, 7),  # naive
    datetime(999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),  # a year of three digits
    None,
])
def test_sqlite_times_are_written_as_sqlalchemy_writes_them(tmp_path: Path, value: datetime | None) -> None:
    """The insert's own time formatting (store._sqlite_datetime) against SQLAlchemy's SQLite DateTime."""
    from central.store import _sqlite_datetime, events

    dialect = sa.create_engine(f"sqlite:///{tmp_path / 'x.sqlite3'}").dialect
    theirs = events.c.ts_utc.type.dialect_impl(dialect).bind_processor(dialect)
    assert theirs is not None
    assert _sqlite_datetime(value) == theirs(value)


def test_a_sqlite_store_checkpoints_its_wal_at_its_own_size(tmp_path: Path) -> None:
    from central.store import SQLITE_WAL_PAGES

    store = Store(f"sqlite:///{tmp_path / 'x.sqlite3'}")
    try:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == SQLITE_WAL_PAGES
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        store.close()

"""Central's store on real databases: SQLite always, PostgreSQL when DESKPULSE_TEST_PG_URL is set.

``store_url`` (tests/conftest.py) gives each PostgreSQL test a fresh database, e.g. with
``DESKPULSE_TEST_PG_URL=postgresql://postgres@127.0.0.1:5432/test``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from central.store import MAX_DEAD_LETTER_BYTES, DeadLetter, Store, metadata
from sync import protocol
from tests.support.events import feedback_event


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with Store(store_url) as s:
        s.migrate()
        yield s


def test_migrate_creates_the_tables_through_alembic(store_url: str) -> None:
    with Store(store_url) as store:
        assert store.revision() is None
        assert store.migrate() == "0001"
        with store.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == "0001"
            tables = set(sa.inspect(conn).get_table_names())
        assert {"events", "dead_letters", "alembic_version"} <= tables


def test_migrate_twice_is_a_no_op(store: Store) -> None:
    store.insert_events([feedback_event()])
    assert store.migrate() == "0001"
    assert store.count_events() == 1


def test_the_migration_matches_the_tables_the_queries_use(store: Store) -> None:
    with store.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diffs == []


def test_an_event_comes_back_as_it_was_sent(store: Store) -> None:
    event = feedback_event(reasons=["waiting-time", "friendliness"], flags=["test"], rating=2, scale=3)
    assert store.insert_events([event]) == {event["id"]: "stored"}
    stored = store.get_event(event["id"])
    assert stored is not None
    assert {k: stored[k] for k in event} == event
    assert stored["ingest_id"] >= 1
    assert protocol.parse_timestamp(stored["received_at"]).tzinfo is not None
    assert store.get_event(protocol.uuid7()) is None


def test_the_same_event_twice_is_stored_once(store: Store) -> None:
    event = feedback_event()
    assert store.insert_events([event]) == {event["id"]: "stored"}
    assert store.insert_events([event]) == {event["id"]: "duplicate"}
    assert store.count_events() == 1


def test_a_batch_mixes_new_and_duplicate_events(store: Store) -> None:
    old = [feedback_event(seq=i) for i in range(1, 4)]
    store.insert_events(old)
    new = [feedback_event(seq=i) for i in range(4, 7)]
    batch = [old[0], new[0], old[1], new[1], new[1], new[2]]  # new[1] twice in one batch
    outcomes = store.insert_events(batch)
    assert outcomes == {old[0]["id"]: "duplicate", old[1]["id"]: "duplicate",
                        new[0]["id"]: "stored", new[1]["id"]: "stored", new[2]["id"]: "stored"}
    assert store.count_events() == 6


def test_a_large_batch_commits_in_one_call(store: Store) -> None:
    batch = [feedback_event(seq=i) for i in range(1, 2501)]  # more rows than one INSERT's parameters
    outcomes = store.insert_events(batch)
    assert set(outcomes.values()) == {"stored"}
    assert store.count_events() == 2500


def test_ingest_ids_are_monotonic_and_page_with_events_after(store: Store) -> None:
    ids = []
    for i in range(1, 8):
        event = feedback_event(seq=i)
        store.insert_events([event])
        ids.append(event["id"])
    rows = store.events_after(0, limit=100)
    assert [r["id"] for r in rows] == ids
    ingest_ids = [r["ingest_id"] for r in rows]
    assert ingest_ids == sorted(ingest_ids) and len(set(ingest_ids)) == len(ingest_ids)
    assert [r["id"] for r in store.events_after(ingest_ids[2], limit=2)] == ids[3:5]
    assert store.events_after(ingest_ids[-1]) == []
    assert store.last_ingest_id() == ingest_ids[-1]
    assert [r["id"] for r in store.recent(3)] == ids[::-1][:3]


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
    assert store.count_events() == 40


def test_a_dead_letter_keeps_the_raw_bytes_and_the_reason(store: Store) -> None:
    raw = b'{"rating": true, "\xff": 1}'
    store.dead_letter("deskpulse/v1/test-site/desk-1/feedback", "feedback payload invalid at rating", raw)
    (letter,) = store.dead_letter_rows()
    assert letter["raw"] == raw
    assert letter["reason"] == "feedback payload invalid at rating"
    assert letter["topic"] == "deskpulse/v1/test-site/desk-1/feedback"
    assert store.count_dead_letters() == 1


def test_dead_letters_commit_with_the_events_of_their_batch(store: Store) -> None:
    event = feedback_event()
    outcomes = store.insert_events([event], dead=[DeadLetter("t/x", "bad", b"\x00\x01")])
    assert outcomes == {event["id"]: "stored"}
    assert store.count_dead_letters() == 1 and store.count_events() == 1


def test_a_huge_dead_letter_is_cut(store: Store) -> None:
    store.dead_letter("t", "too big", b"x" * (MAX_DEAD_LETTER_BYTES + 10))
    (letter,) = store.dead_letter_rows()
    assert len(letter["raw"]) == MAX_DEAD_LETTER_BYTES
    assert "cut" in letter["reason"]


def test_an_impossible_date_is_refused_before_anything_is_written(store: Store) -> None:
    good, bad = feedback_event(), feedback_event(ts="2026-13-45T09:41:07Z", check=False)
    with pytest.raises(ValueError, match="ts"):
        store.insert_events([good, bad])
    assert store.count_events() == 0


def test_a_sqlite_store_creates_its_folder(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "central.sqlite3"
    with Store(f"sqlite:///{path}") as store:
        store.migrate()
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    assert path.exists()

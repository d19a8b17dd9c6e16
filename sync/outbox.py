"""The device's durable outbox: every answer is a row in SQLite before the thank-you.

SQLite runs in WAL mode with ``synchronous=FULL`` so that a committed answer
survives power loss. Rows move only forward::

    PENDING ──PUBACK──► SENT ──receipt stored/duplicate──► CONFIRMED
       │                  └────receipt rejected──────────► REJECTED
       └───────────── receipt (PUBACK lost) ─────────────┘

A PUBACK proves nothing durable (the broker may drop queued messages), so only
central's receipt confirms a row. Each database has an ``epoch`` (a UUID made
with it) and a gap-free ``seq`` counter kept in the ``meta`` table, assigned in
the same transaction that inserts the row.

A connection belongs to one thread: the kiosk loop and the sender each open
their own :class:`Outbox` on the same file (WAL lets them work side by side).
"""

from __future__ import annotations

import enum
import logging
import os
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sync import protocol
from sync.errors import OutboxError

log = logging.getLogger("deskpulse.sync.outbox")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS outbox (
    seq          INTEGER PRIMARY KEY,          -- gap-free within this database's epoch
    id           TEXT    NOT NULL UNIQUE,      -- UUIDv7, central's dedup key
    state        INTEGER NOT NULL DEFAULT 0,   -- State
    payload      BLOB    NOT NULL,             -- the exact bytes published
    created_at   REAL    NOT NULL,             -- unix seconds (wall clock, informative)
    sent_at      REAL,                         -- last PUBACK, unix seconds
    attempts     INTEGER NOT NULL DEFAULT 0,   -- publishes so far
    done_at      REAL,                         -- confirmed or rejected, unix seconds
    reason       TEXT                          -- central's reason for a rejection
) STRICT;
CREATE INDEX IF NOT EXISTS outbox_state ON outbox (state, seq);
"""


class State(enum.IntEnum):
    """Where an outbox row is on its way to central. Values only increase."""

    PENDING = 0
    SENT = 1
    CONFIRMED = 2
    REJECTED = 3


@dataclass(frozen=True, slots=True)
class Record:
    """One outbox row."""

    seq: int
    id: str
    state: State
    payload: bytes
    created_at: float
    sent_at: float | None
    attempts: int


@dataclass(frozen=True, slots=True)
class Stats:
    """Counts for the device's health report."""

    pending: int
    sent: int
    confirmed: int
    rejected: int
    oldest_unconfirmed_at: float | None
    last_confirmed_at: float | None

    @property
    def backlog(self) -> int:
        """Answers central has not confirmed yet."""
        return self.pending + self.sent


def _record(row: sqlite3.Row) -> Record:
    return Record(
        seq=row["seq"],
        id=row["id"],
        state=State(row["state"]),
        payload=row["payload"],
        created_at=row["created_at"],
        sent_at=row["sent_at"],
        attempts=row["attempts"],
    )


class Outbox:
    """A handle on the outbox database, for use by one thread.

    Args:
        path: the SQLite file; its directory is created if missing.
        site: the device's site slug, written into each event.
        device: the device slug, written into each event.
    """

    def __init__(self, path: Path | str, site: str, device: str) -> None:
        self.path = Path(path)
        self.site = protocol.check_slug(site, "site")
        self.device = protocol.check_slug(device, "device")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = self._open()
        self.epoch = self._meta("epoch")

    # ------------------------------------------------------------------ setup

    def _open(self) -> sqlite3.Connection:
        # Two processes or threads opening a new outbox at once race to switch
        # it to WAL, which SQLite's busy handler does not cover: retry briefly.
        deadline = time.monotonic() + 10.0
        while True:
            try:
                return self._open_once()
            except OutboxError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _open_once(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=10.0)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            with self._transaction(conn):
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('epoch', :epoch), ('next_seq', '1')",
                    {"epoch": str(uuid.uuid4())},
                )
        except sqlite3.DatabaseError as exc:
            raise OutboxError(f"cannot open outbox {self.path}: {exc}") from exc
        return conn

    @staticmethod
    @contextmanager
    def _transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        # BEGIN IMMEDIATE takes the write lock up front, so two writers never
        # deadlock on a lock upgrade; the busy timeout makes the other wait.
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")

    def _meta(self, key: str) -> str:
        row = self._conn.execute("SELECT value FROM meta WHERE key = :key", {"key": key}).fetchone()
        if row is None:
            raise OutboxError(f"outbox {self.path} has no meta row {key!r}")
        return str(row["value"])

    def close(self) -> None:
        """Close the connection. Safe to call twice."""
        conn, self._conn = self._conn, None  # type: ignore[assignment]
        if conn is not None:
            conn.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ writing

    def append(self, answer: dict[str, Any]) -> Record:
        """Store one answer durably and return its row.

        ``answer`` holds the event's fields except ``schema``, ``id``, ``site``,
        ``device``, ``epoch`` and ``seq``, which the outbox assigns. The event
        is validated before anything is written; when this returns, the answer
        is on disk (fsync'd WAL) and the thank-you may show.

        Raises:
            ProtocolError: the answer is not a valid feedback event.
            OutboxError: the disk is full or the database unusable.
        """
        try:
            with self._transaction(self._conn) as conn:
                seq = int(self._meta("next_seq"))
                event = {
                    "schema": protocol.SCHEMA_VERSION,
                    "id": protocol.uuid7(),
                    "site": self.site,
                    "device": self.device,
                    "epoch": self.epoch,
                    "seq": seq,
                    **answer,
                }
                payload = protocol.encode("feedback", event)
                now = time.time()
                conn.execute(
                    "INSERT INTO outbox (seq, id, state, payload, created_at)"
                    " VALUES (:seq, :id, :state, :payload, :now)",
                    {"seq": seq, "id": event["id"], "state": State.PENDING, "payload": payload, "now": now},
                )
                conn.execute(
                    "UPDATE meta SET value = :next WHERE key = 'next_seq'", {"next": str(seq + 1)}
                )
        except sqlite3.DatabaseError as exc:
            raise OutboxError(f"could not store the answer in {self.path}: {exc}") from exc
        return Record(seq, event["id"], State.PENDING, payload, now, None, 0)

    def mark_sent(self, ids: Iterable[str]) -> int:
        """Record PUBACKs for ``ids`` in one transaction; returns rows that moved.

        Pending rows become SENT; SENT rows get a fresh ``sent_at`` (a re-publish
        was acknowledged); confirmed or rejected rows never move back.
        """
        rows = [{"id": i, "now": time.time()} for i in ids]
        if not rows:
            return 0
        with self._transaction(self._conn) as conn:
            cur = conn.executemany(
                "UPDATE outbox SET state = 1, sent_at = :now, attempts = attempts + 1"
                " WHERE id = :id AND state <= 1",
                rows,
            )
            return cur.rowcount

    def settle(self, outcomes: Sequence[tuple[str, str, str | None]]) -> int:
        """Apply central's receipts: ``(id, outcome, reason)`` tuples.

        ``stored`` and ``duplicate`` confirm a row; ``rejected`` rejects it and
        keeps the reason (it is never re-sent). Unknown ids are ignored (a
        receipt for an answer pruned already, or for another epoch).
        """
        rows = [
            {
                "id": i,
                "state": State.REJECTED if outcome == "rejected" else State.CONFIRMED,
                "reason": reason,
                "now": time.time(),
            }
            for i, outcome, reason in outcomes
        ]
        if not rows:
            return 0
        with self._transaction(self._conn) as conn:
            cur = conn.executemany(
                "UPDATE outbox SET state = :state, done_at = :now, reason = :reason"
                " WHERE id = :id AND state <= 1",
                rows,
            )
            return cur.rowcount

    def prune(self, older_than_s: float) -> int:
        """Delete confirmed rows settled more than ``older_than_s`` ago.

        Only confirmed rows go: pending, sent and rejected rows stay. The
        ``seq`` counter lives in ``meta``, so pruning never reuses a number.
        """
        with self._transaction(self._conn) as conn:
            cur = conn.execute(
                "DELETE FROM outbox WHERE state = 2 AND done_at < :cutoff",
                {"cutoff": time.time() - older_than_s},
            )
            return cur.rowcount

    # ------------------------------------------------------------------ reading

    def due(self, limit: int, *, resend_before: float | None = None) -> list[Record]:
        """Rows to publish: pending ones, oldest first, then (if ``resend_before``
        is given) sent-but-unconfirmed ones last acknowledged before that time."""
        rows = self._conn.execute(
            "SELECT * FROM outbox WHERE state = 0 ORDER BY seq LIMIT :limit", {"limit": limit}
        ).fetchall()
        if resend_before is not None and len(rows) < limit:
            rows += self._conn.execute(
                "SELECT * FROM outbox WHERE state = 1 AND sent_at < :before ORDER BY seq LIMIT :limit",
                {"before": resend_before, "limit": limit - len(rows)},
            ).fetchall()
        return [_record(r) for r in rows]

    def get(self, id_: str) -> Record | None:
        """One row by event id."""
        row = self._conn.execute("SELECT * FROM outbox WHERE id = :id", {"id": id_}).fetchone()
        return None if row is None else _record(row)

    def stats(self) -> Stats:
        """Counts per state and the ages the health report shows."""
        counts = {State(r[0]): r[1] for r in self._conn.execute(
            "SELECT state, count(*) FROM outbox GROUP BY state")}
        oldest = self._conn.execute(
            "SELECT min(created_at) FROM outbox WHERE state <= 1").fetchone()[0]
        last = self._conn.execute("SELECT max(done_at) FROM outbox WHERE state = 2").fetchone()[0]
        return Stats(
            pending=counts.get(State.PENDING, 0),
            sent=counts.get(State.SENT, 0),
            confirmed=counts.get(State.CONFIRMED, 0),
            rejected=counts.get(State.REJECTED, 0),
            oldest_unconfirmed_at=oldest,
            last_confirmed_at=last,
        )

    def integrity_ok(self) -> bool:
        """``PRAGMA integrity_check`` says ok."""
        return bool(self._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok")


def disk_free_bytes(path: Path) -> int | None:
    """Free bytes on the file system holding ``path`` (None if unknown)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize

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
import fcntl
import logging
import os
import sqlite3
import threading
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


class _Corrupt(Exception):
    """The database file is damaged (not locked, not missing): move it aside."""


def _is_corruption(exc: sqlite3.DatabaseError) -> bool:
    text = str(exc).lower()
    return any(m in text for m in ("malformed", "not a database", "file is encrypted", "corrupt"))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_MAGIC = b"SQLite format 3\x00"

#: Outbox files this process has SQLite connections to (path -> count).
_OPEN: dict[Path, int] = {}
_OPEN_LOCK = threading.Lock()


def _read_header(path: Path) -> bytes:
    """The first 16 bytes of ``path`` (b"" if it does not exist or is open already).

    Closing *any* descriptor of a file drops every POSIX lock this process
    holds on it, including SQLite's: another process could then checkpoint
    and delete the WAL under our other connection, losing its commits. So the
    file is read only while this process has no SQLite connection to it (the
    first opener checks; the others trust it).
    """
    with _OPEN_LOCK:
        if path.resolve() in _OPEN:
            return b""
        try:
            with open(path, "rb") as f:
                return f.read(16)
        except FileNotFoundError:
            return b""
        except OSError as exc:
            raise OutboxError(f"cannot read outbox {path}: {exc}") from exc


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

    def __init__(self, path: Path | str, site: str, device: str, *, max_bytes: int | None = None) -> None:
        self.path = Path(path)
        self.site = protocol.check_slug(site, "site")
        self.device = protocol.check_slug(device, "device")
        self.max_bytes = max_bytes
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = self._open()
        with _OPEN_LOCK:
            _OPEN[self.path.resolve()] = _OPEN.get(self.path.resolve(), 0) + 1
        self.epoch = self._meta("epoch")

    # ------------------------------------------------------------------ setup

    def _open(self) -> sqlite3.Connection:
        # Two processes or threads opening a new outbox at once race to switch
        # it to WAL, which SQLite's busy handler does not cover: retry briefly.
        deadline = time.monotonic() + 10.0
        while True:
            try:
                return self._open_once()
            except _Corrupt as exc:
                self._move_aside(str(exc))
            except OutboxError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _open_once(self) -> sqlite3.Connection:
        # Look at the header before SQLite does: opening a file that is not a
        # database lets SQLite discard its -wal, where pending rows may live.
        if _read_header(self.path) not in (b"", _MAGIC):
            raise _Corrupt("file is not a database (bad header)")
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=10.0)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise _Corrupt(f"quick_check says {check}")
            with self._transaction(conn):
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('epoch', :epoch), ('next_seq', '1')",
                    {"epoch": str(uuid.uuid4())},
                )
        except sqlite3.DatabaseError as exc:
            if conn is not None:
                conn.close()
            if _is_corruption(exc):
                raise _Corrupt(str(exc)) from exc
            raise OutboxError(f"cannot open outbox {self.path}: {exc}") from exc
        except _Corrupt:
            if conn is not None:
                conn.close()
            raise
        return conn

    def _move_aside(self, why: str) -> None:
        """Move a corrupt outbox (with its -wal and -shm) aside; a new epoch starts.

        Pending answers may live in the WAL, so all three files move together
        and are kept for people to rescue. A lock file makes sure two openers
        never both move: the second finds a healthy new database.
        """
        lock_path = self.path.with_name(self.path.name + ".lock")
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if self._healthy():
                    return  # another opener moved it aside already
                stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
                moved = []
                for suffix in ("", "-wal", "-shm"):
                    src = Path(str(self.path) + suffix)
                    if src.exists():
                        dst = Path(f"{self.path}.corrupt-{stamp}{suffix}")
                        os.replace(src, dst)
                        moved.append(dst.name)
                _fsync_dir(self.path.parent)
                log.error("outbox %s is corrupt (%s): moved aside as %s; a new epoch starts",
                          self.path, why, ", ".join(moved) or "nothing")
                conn = self._open_once()
                with self._transaction(conn):
                    conn.execute(
                        "INSERT OR REPLACE INTO meta (key, value) VALUES ('corrupt_note', :note)",
                        {"note": f"{time.time():.0f} outbox was corrupt ({why[:200]}); "
                                 f"moved aside as {self.path.name}.corrupt-{stamp}"},
                    )
                conn.close()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _healthy(self) -> bool:
        with _OPEN_LOCK:
            if self.path.resolve() in _OPEN:
                return True  # opened and checked by another handle in this process
        try:
            if _read_header(self.path) != _MAGIC:
                return False  # and SQLite must not touch it (its -wal)
        except OutboxError:
            return False
        try:
            conn = sqlite3.connect(self.path, timeout=10.0)
            try:
                return bool(conn.execute("PRAGMA quick_check").fetchone()[0] == "ok")
            finally:
                conn.close()
        except sqlite3.DatabaseError:
            return False

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
            with _OPEN_LOCK:
                key = self.path.resolve()
                _OPEN[key] -= 1
                if not _OPEN[key]:
                    del _OPEN[key]

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

    def size_bytes(self) -> int:
        """Bytes the outbox takes on disk (database and WAL)."""
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += os.stat(str(self.path) + suffix).st_size
            except FileNotFoundError:
                pass
        return total

    def enforce_cap(self) -> bool:
        """Keep the outbox under ``max_bytes`` by dropping *confirmed* rows early.

        Pending, sent and rejected rows are never dropped: when they alone
        exceed the cap the outbox keeps growing and :meth:`alarms` says so.
        Returns True when the outbox is within its cap (or has none).
        """
        if self.max_bytes is None or self.size_bytes() <= self.max_bytes:
            return True
        with self._transaction(self._conn) as conn:
            conn.execute("DELETE FROM outbox WHERE state = 2")
        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._conn.execute("VACUUM")
        return self.size_bytes() <= self.max_bytes

    def alarms(self) -> list[dict[str, str]]:
        """Health alarms the device reports in its status (``code``, ``message``)."""
        out: list[dict[str, str]] = []
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'corrupt_note'").fetchone()
        if row is not None:
            when, _, note = str(row["value"]).partition(" ")
            if time.time() - float(when or 0) < 7 * 86400:  # shown for a week after it happened
                out.append({"code": "outbox-corrupt", "message": note[:500]})
        if self.max_bytes is not None:
            size = self.size_bytes()
            if size > self.max_bytes:
                backlog = self.stats().backlog
                out.append({"code": "outbox-over-cap", "message": (
                    f"outbox uses {size / 1e6:.1f} MB, over its cap of {self.max_bytes / 1e6:.1f} MB, "
                    f"with {backlog} answers not yet confirmed; none is dropped")[:500]})
        return out

    # ------------------------------------------------------------------ reading

    def due(self, limit: int, *, after_seq: int = 0, resend_after: float | None = None,
            now: float | None = None) -> list[Record]:
        """Rows to publish: pending ones after ``after_seq``, oldest first; then,
        if ``resend_after`` is given, sent-but-unconfirmed ones whose wait is over.

        A row waits ``resend_after`` seconds after its last PUBACK, doubled for
        each further attempt up to 32 times as long: an answer central never
        confirms is tried ever more rarely, never dropped.
        """
        rows = self._conn.execute(
            "SELECT * FROM outbox WHERE state = 0 AND seq > :after ORDER BY seq LIMIT :limit",
            {"after": after_seq, "limit": limit},
        ).fetchall()
        if resend_after is not None and len(rows) < limit:
            rows += self._conn.execute(
                "SELECT * FROM outbox WHERE state = 1"
                " AND sent_at + :after * (1 << min(max(attempts - 1, 0), 5)) <= :now"
                " ORDER BY seq LIMIT :limit",
                {"after": resend_after, "now": time.time() if now is None else now, "limit": limit - len(rows)},
            ).fetchall()
        return [_record(r) for r in rows]

    def get(self, id_: str) -> Record | None:
        """One row by event id."""
        row = self._conn.execute("SELECT * FROM outbox WHERE id = :id", {"id": id_}).fetchone()
        return None if row is None else _record(row)

    def stats(self) -> Stats:
        """Counts per state and the ages the health report shows.

        Raises:
            OutboxError: the database could not be read.
        """
        with self._reading("read the outbox's counts"):
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

    def count_since(self, since: float) -> int:
        """How many answers were stored at or after ``since`` (unix seconds; rows keep their creation time).

        Raises:
            OutboxError: the database could not be read.
        """
        with self._reading("count today's answers"):
            row = self._conn.execute("SELECT count(*) FROM outbox WHERE created_at >= :since",
                                     {"since": since}).fetchone()
        return int(row[0])

    def has_tap(self, boot_id: object, mono_ms: object) -> bool:
        """Whether an answer of this tap (same ``boot_id`` and ``mono_ms``) is stored already.

        Pruned rows are gone: this only answers for the retention period, which is
        all a held answer found at start needs.

        Raises:
            OutboxError: the database could not be read; the caller cannot tell, so
                it must not store the answer again on a guess.
        """
        with self._reading("look for a held answer"):
            row = self._conn.execute(
                "SELECT 1 FROM outbox WHERE json_extract(CAST(payload AS TEXT), '$.boot_id') = :boot"
                " AND json_extract(CAST(payload AS TEXT), '$.mono_ms') = :mono LIMIT 1",
                {"boot": boot_id, "mono": mono_ms},
            ).fetchone()
        return row is not None

    @contextmanager
    def _reading(self, what: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot {what} in {self.path}: {exc}") from exc

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


@dataclass(frozen=True, slots=True)
class Inspection:
    """What ``deskpulse-kiosk doctor`` learns from an outbox file without changing it."""

    problem: str | None
    stats: Stats | None


def inspect(path: Path) -> Inspection:
    """Check an outbox file read-only (``quick_check``) and count its rows.

    Opened with ``mode=ro`` from another process than the kiosk's, so it
    creates no file (a root-owned ``-shm`` would lock the kiosk out) and
    changes nothing.

    Returns:
        ``problem`` says what is wrong (None when the file is sound), ``stats``
        its counts when they could be read.
    """
    if not path.exists():
        return Inspection(problem=None, stats=Stats(0, 0, 0, 0, None, None))
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error as exc:
        return Inspection(problem=f"cannot be opened: {exc}", stats=None)
    try:
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            return Inspection(problem=f"is damaged (quick_check: {check})", stats=None)
        counts = {State(r[0]): r[1] for r in conn.execute("SELECT state, count(*) FROM outbox GROUP BY state")}
        oldest = conn.execute("SELECT min(created_at) FROM outbox WHERE state <= 1").fetchone()[0]
        last = conn.execute("SELECT max(done_at) FROM outbox WHERE state = 2").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        return Inspection(problem=f"is damaged ({exc})" if _is_corruption(exc) else f"cannot be read: {exc}",
                          stats=None)
    finally:
        conn.close()
    return Inspection(problem=None, stats=Stats(
        pending=counts.get(State.PENDING, 0), sent=counts.get(State.SENT, 0),
        confirmed=counts.get(State.CONFIRMED, 0), rejected=counts.get(State.REJECTED, 0),
        oldest_unconfirmed_at=oldest, last_confirmed_at=last))

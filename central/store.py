"""Central's store, the write side: every feedback event once, with a monotonic ingest id.

SQLAlchemy Core over SQLite (the default, zero setup) or PostgreSQL with
psycopg 3 (at scale). The schema is created and upgraded by Alembic
migrations (``central/migrations``), never by ``create_all``; the tables below
mirror the newest migration and are what queries are built from
(``tests/test_central_store.py`` checks that the two agree).

This module owns the engine, the migrations, the transactions and what the
collector writes (answers with their re-timing, dead letters, device status).
Every read the web app makes is in :mod:`central.reads`.
"""

from __future__ import annotations

import bisect
import json
import logging
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url

from sync import protocol

log = logging.getLogger("deskpulse.central.store")

#: Alembic's folder (env.py, versions/), shipped inside the package.
MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"

#: Dead letters keep at most this much of a payload (a broker may allow huge messages).
MAX_DEAD_LETTER_BYTES: Final = 64 * 1024

# PostgreSQL advisory lock keys (any two constants, shared by every collector).
_INSERT_LOCK: Final = 0x6465_736B_7075_6C01  # "deskpul" + 1
_MIGRATE_LOCK: Final = 0x6465_736B_7075_6C02

#: New synchronised answers looked up per re-timing query (4 parameters each; SQLite allows 32766).
_ANSWERS_PER_QUERY: Final = 500
#: The entries of ix_events_boot_mono just before a new answer, within its boot,
#: newest first. PostgreSQL: a row-value range on exactly the index's columns,
#: which no other index serves, so it searches this index even without
#: statistics (with equalities it may pick (site, device, ts_utc) and read every
#: answer of the device). SQLite: equalities and a range on mono_ms (it would
#: bound a row-value range by its prefix only, reading every later answer).
_BEFORE: Final = {
    "postgresql": (
        "FROM events AS before WHERE (before.site, before.device, before.boot_id, before.mono_ms)"
        " < (new.site, new.device, new.boot_id, new.mono_ms)"
        " AND (before.site, before.device, before.boot_id, before.mono_ms) > (new.site, new.device, new.boot_id, -1)"
        " ORDER BY before.site DESC, before.device DESC, before.boot_id DESC, before.mono_ms DESC"
    ),
    "sqlite": (
        "FROM events AS before WHERE before.site = new.site AND before.device = new.device"
        " AND before.boot_id = new.boot_id AND before.mono_ms < new.mono_ms ORDER BY before.mono_ms DESC"
    ),
}
#: For each new synchronised answer (``new``): 1 when one of the two answers
#: right before it in its boot is unsynchronised or the two share a millisecond
#: (which of them comes first in the index is then arbitrary), else 0. One index
#: search per answer. See _retime.
_BEFORE_NEW: Final = {
    dialect: "SELECT new.site, new.device, new.boot_id, ("
    "SELECT CASE WHEN min(CASE WHEN two.synced THEN 1 ELSE 0 END) = 0"
    " OR (count(*) = 2 AND min(two.mono_ms) = max(two.mono_ms)) THEN 1 ELSE 0 END"
    f" FROM (SELECT before.mono_ms AS mono_ms, before.clock_synced AS synced {before} LIMIT 2) AS two"
    ") AS suspect FROM new"
    for dialect, before in _BEFORE.items()
}
#: PostgreSQL: the new answers as one JSON text (a short, constant text PostgreSQL prepares;
#: four arrays cost more in psycopg's pure-Python array dumping).
_PG_BEFORE_NEW: Final = (
    "WITH new (site, device, boot_id, mono_ms) AS (SELECT * FROM json_to_recordset(%s::json)"
    " AS x(site text, device text, boot_id text, mono_ms bigint)) " + _BEFORE_NEW["postgresql"]
)


@lru_cache(maxsize=8)
def _sqlite_insert(n: int) -> str:
    """SQLite: ``INSERT … VALUES`` of ``n`` rows ``ON CONFLICT (id) DO NOTHING RETURNING id`` (qmark)."""
    row = "(" + ", ".join(["?"] * len(_INSERTED)) + ")"
    return (f"INSERT INTO events ({', '.join(_INSERTED)}) VALUES {', '.join([row] * n)}"
            " ON CONFLICT (id) DO NOTHING RETURNING id")


@lru_cache(maxsize=8)
def _sqlite_before_new(n: int) -> str:
    """SQLite: the new answers as a VALUES list of ``n`` rows (qmark parameters; sqlite3 caches the statement)."""
    values = ", ".join(["(?, ?, ?, CAST(? AS BIGINT))"] * n)
    return f"WITH new (site, device, boot_id, mono_ms) AS (VALUES {values}) {_BEFORE_NEW['sqlite']}"


metadata = sa.MetaData()

#: An integer primary key that autoincrements on SQLite (INTEGER) and PostgreSQL (BIGINT).
IngestId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

events = sa.Table(
    "events",
    metadata,
    sa.Column("ingest_id", IngestId, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(36), nullable=False),
    sa.Column("schema_version", sa.SmallInteger, nullable=False),
    sa.Column("site", sa.String(64), nullable=False),
    sa.Column("device", sa.String(64), nullable=False),
    sa.Column("epoch", sa.String(36), nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("ts", sa.String(32), nullable=False),
    sa.Column("ts_utc", sa.DateTime(timezone=True), nullable=False),
    sa.Column("clock_synced", sa.Boolean, nullable=False),
    sa.Column("boot_id", sa.String(36), nullable=False),
    sa.Column("mono_ms", sa.BigInteger, nullable=False),
    sa.Column("rating", sa.SmallInteger, nullable=False),
    sa.Column("scale", sa.SmallInteger, nullable=False),
    sa.Column("reasons", sa.Text, nullable=False),
    sa.Column("lang", sa.String(16), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("survey", sa.BigInteger, nullable=False),
    sa.Column("flags", sa.Text, nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    # device | retimed | received: how ts_utc was found (docs/central.md, "Time").
    sa.Column("time_source", sa.String(16), nullable=False, server_default="device"),
    sa.UniqueConstraint("id", name="uq_events_id"),
    sa.Index("ix_events_site_device_ts", "site", "device", "ts_utc"),
    sa.Index("ix_events_device_epoch_seq", "site", "device", "epoch", "seq"),
    sa.Index("ix_events_boot_mono", "site", "device", "boot_id", "mono_ms"),
    sa.Index("ix_events_ts_utc", "ts_utc"),
    # AUTOINCREMENT: SQLite never reuses an ingest id, even after deletes.
    sqlite_autoincrement=True,
)

dead_letters = sa.Table(
    "dead_letters",
    metadata,
    sa.Column("dead_id", IngestId, primary_key=True, autoincrement=True),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("topic", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("raw", sa.LargeBinary, nullable=False),
    sa.Index("ix_dead_letters_received_at", "received_at"),
    sqlite_autoincrement=True,
)

#: A device's state after ``deskpulse-central device remove`` (else online or offline, from its status).
RETIRED: Final = "retired"

devices = sa.Table(
    "devices",
    metadata,
    sa.Column("site", sa.String(64), primary_key=True),
    sa.Column("device", sa.String(64), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),  # online | offline | retired
    sa.Column("status_ts", sa.String(32), nullable=True),  # the status's own ts (device clock)
    sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),  # central's clock
    sa.Column("version", sa.String(64), nullable=True),
    sa.Column("backlog", sa.BigInteger, nullable=True),
    sa.Column("oldest_pending_age_s", sa.Float, nullable=True),
    sa.Column("clock_synced", sa.Boolean, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("config_error", sa.Text, nullable=True),  # JSON: the rejected remote config
    sa.Column("health", sa.Text, nullable=True),  # JSON: the status's whole health object
)

epochs = sa.Table(
    "epochs",
    metadata,
    # Per (device, epoch): answers stored and the highest seq; fewer answers than the
    # highest seq means a hole (seq is gap-free from 1), found without scanning events.
    sa.Column("site", sa.String(64), primary_key=True),
    sa.Column("device", sa.String(64), primary_key=True),
    sa.Column("epoch", sa.String(36), primary_key=True),
    sa.Column("answers", sa.BigInteger, nullable=False),
    sa.Column("max_seq", sa.BigInteger, nullable=False),
)

#: Flags that keep an answer out of the scores unless asked for (they are still stored and shown).
EXCLUDED_FLAGS: Final = frozenset({"rapid_repeat", "test"})


def is_flagged(flags: Iterable[str]) -> bool:
    """Whether these flags keep an answer out of the scores by default."""
    return not EXCLUDED_FLAGS.isdisjoint(flags)


#: The rating columns (answers per rating 1..5) and per local hour the answers and sum of (rating - 1).
RATING_COLUMNS: Final = tuple(f"r{r}" for r in range(1, 6))
HOUR_COLUMNS: Final = tuple(f"h{h:02d}" for h in range(24))
STEP_COLUMNS: Final = tuple(f"s{h:02d}" for h in range(24))
_COUNTS: Final = RATING_COLUMNS + HOUR_COLUMNS + STEP_COLUMNS

day_rollups = sa.Table(
    "day_rollups",
    metadata,
    # Per desk, local day at the site, scale and flagged-or-not (docs/central.md, "Rollups").
    sa.Column("site", sa.String(64), primary_key=True),
    sa.Column("device", sa.String(64), primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("scale", sa.SmallInteger, primary_key=True),
    sa.Column("flagged", sa.Boolean, primary_key=True),
    *[sa.Column(name, sa.BigInteger, nullable=False, server_default="0") for name in _COUNTS],
    sa.Index("ix_day_rollups_day", "day"),
)

reason_rollups = sa.Table(
    "reason_rollups",
    metadata,
    sa.Column("site", sa.String(64), primary_key=True),
    sa.Column("device", sa.String(64), primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("flagged", sa.Boolean, primary_key=True),
    sa.Column("reason", sa.String(64), primary_key=True),
    sa.Column("answers", sa.BigInteger, nullable=False),
    sa.Index("ix_reason_rollups_day", "day"),
)

rollup_zones = sa.Table(
    "rollup_zones",
    metadata,
    # The zone each site's rollup rows were made in; a site not here (or in another
    # zone than central.toml says) is read from events until rebuilt.
    sa.Column("site", sa.String(64), primary_key=True),
    sa.Column("timezone", sa.String(64), nullable=False),
)

#: (site, device, local day, scale, flagged) -> the counts of :data:`_COUNTS`, in that order.
DayKey = tuple[str, str, date, int, bool]
#: (site, device, local day, flagged, reason) -> answers.
ReasonKey = tuple[str, str, date, bool, str]


@dataclass(slots=True)
class RollupDelta:
    """What a batch adds to (or, for a re-timed answer, moves within) the rollups."""

    days: dict[DayKey, list[int]] = field(default_factory=dict)
    reasons: dict[ReasonKey, int] = field(default_factory=dict)

    def add(self, site: str, device: str, local: datetime, rating: int, scale: int, flags: Iterable[str],
            reasons: Iterable[str], sign: int = 1) -> None:
        """Count one answer placed at ``local`` (its site's local time); ``sign=-1`` takes it away."""
        flagged = is_flagged(flags)
        day = local.date()
        counts = self.days.setdefault((site, device, day, scale, flagged), [0] * len(_COUNTS))
        counts[rating - 1] += sign
        counts[5 + local.hour] += sign
        counts[29 + local.hour] += sign * (rating - 1)
        for reason in set(reasons):
            key = (site, device, day, flagged, reason)
            self.reasons[key] = self.reasons.get(key, 0) + sign

    def write(self, conn: Connection) -> None:
        """Add the counts to the rollup rows (made when missing), in the caller's transaction.

        Rows in key order (several collectors lock them in the same order). The
        statements are fixed texts (:func:`_rollup_upserts`): building the 58
        ``SET`` expressions with SQLAlchemy for every batch cost more than the write.
        """
        days, reasons = _rollup_upserts(conn.dialect.name)
        if conn.dialect.name == "postgresql":
            # One statement per table: the rows as one JSON text (only the counts that are not 0),
            # which PostgreSQL unpacks in C, where 100 upserts of 63 parameters each cost
            # more in psycopg than the rows themselves.
            if self.days:
                conn.exec_driver_sql(days, (_json_text([
                    {"site": k[0], "device": k[1], "day": k[2].isoformat(), "scale": k[3], "flagged": k[4],
                     **{c: n for c, n in zip(_COUNTS, v, strict=True) if n}}
                    for k, v in sorted(self.days.items())]),))
            if self.reasons:
                conn.exec_driver_sql(reasons, (_json_text([
                    {"site": k[0], "device": k[1], "day": k[2].isoformat(), "flagged": k[3], "reason": k[4],
                     "answers": n} for k, n in sorted(self.reasons.items())]),))
            return
        # SQLite stores a Date as ISO text and a Boolean as 0/1 (SQLAlchemy's own way); psycopg adapts both.
        text = conn.dialect.name == "sqlite"
        if self.days:
            conn.exec_driver_sql(days, [(k[0], k[1], k[2].isoformat() if text else k[2], k[3],
                                         int(k[4]) if text else k[4], *v) for k, v in sorted(self.days.items())])
        if self.reasons:
            conn.exec_driver_sql(reasons, [(k[0], k[1], k[2].isoformat() if text else k[2],
                                            int(k[3]) if text else k[3], k[4], n)
                                           for k, n in sorted(self.reasons.items())])


@lru_cache(maxsize=2)
def _rollup_upserts(dialect: str) -> tuple[str, str]:
    """The upserts of ``day_rollups`` and ``reason_rollups``: add to a row, or make it.

    SQLite: one row per parameter tuple (sqlite3 keeps the statement prepared;
    one statement unpacking the rows from JSON measured slower there: 11 against
    3.5 µs per answer).
    PostgreSQL: one statement per batch, the rows one JSON array of objects
    (``json_to_recordset``; a count left out is 0): one short constant text that
    is prepared once, and no per-row parameters in Python. (Arrays per column,
    as the events' insert does, cost more: psycopg dumps 58 arrays of integers
    in Python; one upsert per row cost twice as much: 32 against 16 µs per answer.)
    """
    day_keys = ("site", "device", "day", "scale", "flagged")
    reason_keys = ("site", "device", "day", "flagged", "reason")
    add = ", ".join(f"{c} = day_rollups.{c} + excluded.{c}" for c in _COUNTS)
    on_day = f"ON CONFLICT ({', '.join(day_keys)}) DO UPDATE SET {add}"
    on_reason = (f"ON CONFLICT ({', '.join(reason_keys)}) DO UPDATE SET answers = reason_rollups.answers + "
                 "excluded.answers")
    if dialect == "postgresql":
        counts = ", ".join(f"coalesce(x.{c}, 0)" for c in _COUNTS)
        types = ", ".join(["site text", "device text", "day date", "scale smallint", "flagged boolean",
                           *(f"{c} bigint" for c in _COUNTS)])
        days = (f"INSERT INTO day_rollups ({', '.join(day_keys + _COUNTS)}) "
                f"SELECT x.site, x.device, x.day, x.scale, x.flagged, {counts} "
                f"FROM json_to_recordset(%s::json) AS x({types}) {on_day}")
        reasons = (f"INSERT INTO reason_rollups ({', '.join(reason_keys)}, answers) "
                   "SELECT x.site, x.device, x.day, x.flagged, x.reason, x.answers FROM json_to_recordset(%s::json)"
                   " AS x(site text, device text, day date, flagged boolean, reason text, answers bigint) "
                   f"{on_reason}")
        return days, reasons
    days = (f"INSERT INTO day_rollups ({', '.join(day_keys + _COUNTS)}) "
            f"VALUES ({', '.join(['?'] * (len(day_keys) + len(_COUNTS)))}) {on_day}")
    reasons = (f"INSERT INTO reason_rollups ({', '.join(reason_keys)}, answers) VALUES ({', '.join(['?'] * 6)}) "
               f"{on_reason}")
    return days, reasons


def _json_text(value: Any) -> str:
    return _json_bytes(value).decode()


sessions = sa.Table(
    "sessions",
    metadata,
    # HMAC-SHA256 of the cookie's random token under the secret file's key (hex): the
    # cookie itself is never stored, and a row cannot be made without the key.
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("account", sa.String(64), nullable=False),
    # A digest of the account's password hash when the session began: a new password ends it.
    sa.Column("credential", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_sessions_account", "account"),
    sa.Index("ix_sessions_expires_at", "expires_at"),
)

sign_in_throttle = sa.Table(
    "sign_in_throttle",
    metadata,
    sa.Column("kind", sa.String(8), primary_key=True),  # address | account
    sa.Column("subject", sa.String(64), primary_key=True),  # an IPv4 address, an IPv6 /64, or an account name
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("last_failure", sa.DateTime(timezone=True), nullable=False),
    sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_sign_in_throttle_last_failure", "last_failure"),
)

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("password_hash", sa.Text, nullable=False),  # argon2id
    sa.Column("role", sa.String(8), nullable=False),  # viewer | admin
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("lang", sa.String(8), nullable=True),  # the staff pages' language; NULL: the browser's
)

tv_tokens = sa.Table(
    "tv_tokens",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    # SHA-256 of the token (hex): the token itself is shown once, when it is made.
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("site", sa.String(64), nullable=False),
    sa.Column("device", sa.String(64), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

site_settings = sa.Table(
    "site_settings",
    metadata,
    # What an admin set on the sites page; NULL: central.toml's value (central/sites.py).
    sa.Column("site", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=True),
    sa.Column("timezone", sa.String(64), nullable=True),
    sa.Column("hours", sa.Text, nullable=True),  # JSON: {"mon": "08:00-18:00" | "closed", ...}
    sa.Column("target", sa.Float, nullable=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_by", sa.String(64), nullable=False),
)

desk_settings = sa.Table(
    "desk_settings",
    metadata,
    sa.Column("site", sa.String(64), primary_key=True),
    sa.Column("device", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_by", sa.String(64), nullable=False),
)

surveys = sa.Table(
    "surveys",
    metadata,
    # Every survey configuration published; version is the config's own, unique across all.
    sa.Column("version", IngestId, primary_key=True, autoincrement=False),
    sa.Column("site", sa.String(64), nullable=False),
    sa.Column("device", sa.String(64), nullable=False, server_default=""),  # "": the whole site
    sa.Column("body", sa.Text, nullable=False),  # the config as published (JSON)
    sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("published_by", sa.String(64), nullable=False),
    sa.Index("ix_surveys_site_device", "site", "device", "version"),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("audit_id", IngestId, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("account", sa.String(64), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),  # site | desk | site-reset | survey
    sa.Column("subject", sa.String(140), nullable=False),  # site or site/desk
    sa.Column("detail", sa.Text, nullable=False),  # JSON: what changed (before and after) or was published
    sa.Index("ix_audit_log_at", "at"),
)

alerts = sa.Table(
    "alerts",
    metadata,
    # One row per alert, raised once: `key` is unique, so collectors racing raise it once
    # (the SQL that writes these tables is in alerts.py; docs/central.md, "Alerts").
    sa.Column("alert_id", IngestId, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),  # unhappy | offline | backlog | test-mode | refused-survey
    sa.Column("site", sa.String(64), nullable=False),
    sa.Column("device", sa.String(64), nullable=True),  # None: the site as a whole
    sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),  # central's clock
    sa.Column("since", sa.DateTime(timezone=True), nullable=False),  # the window's start, or the condition's
    sa.Column("until", sa.DateTime(timezone=True), nullable=True),  # the window's end (the answers' time)
    sa.Column("late", sa.Boolean, nullable=False),  # raised long after its window: kept, never sent
    sa.Column("answers", sa.Integer, nullable=True),
    sa.Column("unhappy", sa.Integer, nullable=True),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("cleared_at", sa.DateTime(timezone=True), nullable=True),  # the condition ended
    sa.Column("acked_at", sa.DateTime(timezone=True), nullable=True),  # the first acknowledgement
    sa.Column("acked_by", sa.String(64), nullable=True),
    sa.UniqueConstraint("key", name="uq_alerts_key"),
    sa.Index("ix_alerts_scope", "kind", "site", "device", "until"),
    sa.Index("ix_alerts_raised_at", "raised_at"),
    sqlite_autoincrement=True,
)

alert_acks = sa.Table(
    "alert_acks",
    metadata,
    sa.Column("ack_id", IngestId, primary_key=True, autoincrement=True),
    sa.Column("alert_id", sa.BigInteger, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("by", sa.String(64), nullable=False),
    sa.Column("comment", sa.Text, nullable=False),
    sa.Index("ix_alert_acks_alert_id", "alert_id"),
    sqlite_autoincrement=True,
)

alert_conditions = sa.Table(
    "alert_conditions",
    metadata,
    # Since when a kiosk's condition (offline, backlog, test mode, refused survey) has held,
    # as central first saw it: every collector reads the same start, so the same alert key.
    sa.Column("kind", sa.String(32), primary_key=True),
    sa.Column("site", sa.String(64), primary_key=True),
    sa.Column("device", sa.String(64), primary_key=True),
    sa.Column("since", sa.DateTime(timezone=True), nullable=False),
)

alert_deliveries = sa.Table(
    "alert_deliveries",
    metadata,
    # What is still to send, per alert (or acknowledgement) and channel: mqtt | webhook | email.
    sa.Column("delivery_id", IngestId, primary_key=True, autoincrement=True),
    sa.Column("alert_id", sa.BigInteger, nullable=False),
    sa.Column("ack_id", sa.BigInteger, nullable=True),  # None: the alert being raised
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # pending | done | failed
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_at", sa.DateTime(timezone=True), nullable=False),  # not before; a claim pushes it on
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_alert_deliveries_due", "state", "next_at"),
    sqlite_autoincrement=True,
)

#: Bytes a dead letter is counted as against the budget: its payload, reason and topic, plus a row's overhead.
DEAD_LETTER_ROW_OVERHEAD: Final = 64
dead_letter_size = (sa.func.length(dead_letters.c.raw) + sa.func.length(dead_letters.c.reason)
                    + sa.func.length(dead_letters.c.topic) + DEAD_LETTER_ROW_OVERHEAD)

#: Add answers to ``epochs`` (site, device, epoch, answers, max_seq): SQLite one row per
#: parameter tuple (kept prepared), PostgreSQL one statement with the rows as one JSON text.
_EPOCHS_UPSERT: Final = {
    "sqlite": "INSERT INTO epochs (site, device, epoch, answers, max_seq) VALUES (?, ?, ?, ?, ?)"
              " ON CONFLICT (site, device, epoch) DO UPDATE SET answers = epochs.answers + excluded.answers,"
              " max_seq = max(epochs.max_seq, excluded.max_seq)",
    "postgresql": "INSERT INTO epochs (site, device, epoch, answers, max_seq) SELECT * FROM json_to_recordset(%s::json)"
                  " AS x(site text, device text, epoch text, answers bigint, max_seq bigint)"
                  " ON CONFLICT (site, device, epoch) DO UPDATE SET answers = epochs.answers + excluded.answers,"
                  " max_seq = greatest(epochs.max_seq, excluded.max_seq)",
}

#: The columns an insert writes (every one but the ingest id), in table order.
#: SQLite: the WAL is checkpointed when it holds this many pages (4 KiB each; SQLite's default 1,000).
SQLITE_WAL_PAGES: Final = 10_000

_INSERTED: Final = tuple(c.name for c in events.columns if c.name != "ingest_id")
#: A row's values in the order of :data:`_INSERTED`.
_INSERTED_VALUES: Final = operator.itemgetter(*_INSERTED)


def _sqlite_datetime(value: datetime | None) -> str | None:
    """A time as SQLAlchemy's SQLite ``DateTime`` stores it: the wall clock's fields, always with
    microseconds, no zone (ours are all UTC)."""
    return None if value is None else value.replace(tzinfo=None).isoformat(" ", "microseconds")


class _SameAsLast:
    """``func``, remembering its last answer: a batch's rows share one ``received_at``.

    Thread-safe: the argument and the answer are kept together, as one tuple.
    """

    __slots__ = ("func", "last")

    def __init__(self, func: Callable[[Any], Any]) -> None:
        self.func = func
        self.last: tuple[Any, Any] = (None, func(None))

    def __call__(self, value: Any) -> Any:
        last = self.last
        if value is last[0]:
            return last[1]
        out = self.func(value)
        self.last = (value, out)
        return out


def _array_type(column: sa.Column[Any]) -> str:
    # String: text[], the column's own length is checked by the INSERT.
    for kind, name in ((sa.String, "TEXT"), (sa.SmallInteger, "SMALLINT"), (sa.BigInteger, "BIGINT"),
                       (sa.Boolean, "BOOLEAN"), (sa.DateTime, "TIMESTAMP WITH TIME ZONE")):
        if isinstance(column.type, kind):
            return f"{name}[]"
    raise TypeError(f"no array type for events.{column.name}")  # a new column: add its type here


#: PostgreSQL: a whole batch as one JSON array of rows (see Store._insert_rows).
_PG_INSERT: Final = (
    f"INSERT INTO events ({', '.join(_INSERTED)}) SELECT {', '.join(f'x.{name}' for name in _INSERTED)}"
    " FROM json_to_recordset(%s::json) AS x("
    + ", ".join(f"{name} {_array_type(events.c[name]).removesuffix('[]')}" for name in _INSERTED)
    + ") ON CONFLICT (id) DO NOTHING RETURNING id"
)

#: Event fields stored as JSON text.
JSON_FIELDS: Final = ("reasons", "flags")
#: The protocol field each renamed column holds.
RENAMED: Final = {"schema_version": "schema"}
#: Columns that are ours, not the protocol's (never copied from an event).
_OWN_COLUMNS: Final = frozenset({"ingest_id", "ts_utc", "received_at", "time_source"})


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A payload central refused, with the reason (written with :meth:`Store.insert_events`)."""

    topic: str
    reason: str
    raw: bytes


def engine_url(url: str) -> str:
    """SQLAlchemy's URL for ours: ``postgresql://`` means psycopg 3."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def event_time(event: Mapping[str, Any]) -> datetime:
    """The event's ``ts`` as an aware UTC datetime.

    The schema checks the shape of ``ts`` only, so ``2026-13-45T99:00:00Z``
    gets this far; the collector calls this to refuse such an event before
    it reaches a batch (where it would fail the whole commit).

    Raises:
        ValueError: ``ts`` is not a real date and time.
    """
    ts = event.get("ts")
    try:
        return protocol.parse_timestamp(str(ts)).astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValueError(f"feedback payload invalid at ts: {ts!r} is not a real date and time") from None


#: (column, protocol field, stored as JSON?) of the columns copied from an event, in table order.
_COPIED: Final = tuple((c.name, RENAMED.get(c.name, c.name), c.name in JSON_FIELDS) for c in events.columns
                       if c.name not in _OWN_COLUMNS)
_json_bytes: Final = msgspec.json.Encoder().encode


def _compact_json(value: list[str]) -> str:
    """``json.dumps(value, separators=(",", ":"))`` of a list of reason or flag keys (ASCII by the schema), in C."""
    return _json_bytes(value).decode()



def _row(event: Mapping[str, Any], received_at: datetime) -> dict[str, Any]:
    row: dict[str, Any] = {name: _compact_json(event[field]) if as_json else event[field]
                           for name, field, as_json in _COPIED}
    device_time = event_time(event)  # checked for every event: a bad ts fails before the batch
    synced = event["clock_synced"] is True
    row["ts_utc"] = device_time if synced else received_at
    row["time_source"] = "device" if synced else "received"
    row["received_at"] = received_at
    return row


def utc(value: datetime) -> datetime:
    """A stored time as an aware UTC datetime (SQLite hands back naive ones; we always store UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Store:
    """The database the collectors write and the dashboard reads (through :mod:`central.reads`).

    Thread-safe: every method takes its own pooled connection.

    Args:
        url: ``sqlite:///path`` or ``postgresql://user@host/db`` (psycopg 3).
            The folder of a SQLite file is created if missing.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = _make_engine(engine_url(url))
        self.dialect: str = self.engine.dialect.name
        self._binds: list[tuple[str, Any]] | None = None
        #: The IANA time zone of a site (from central.toml; central sets it): local days in the rollups.
        #: A zone set on the dashboard's sites page wins over it (:meth:`zones_in`).
        self.zones: Callable[[str], str] = lambda site: "UTC"
        #: False only for ``bench.ingest``'s comparison (see :meth:`leave_rollups`): answers are stored
        #: without adding to the rollups.
        self.rollups = True

    def __repr__(self) -> str:
        return f"Store({make_url(self.url).render_as_string(hide_password=True)!r})"

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every pooled connection. Safe to call twice."""
        self.engine.dispose()

    # ------------------------------------------------------------------ schema

    def migrate(self, target: str = "head") -> str:
        """Upgrade the schema to the newest migration (a no-op when it is current).

        Alembic is configured in code, with ``script_location`` pointing into
        the installed package; no ``alembic.ini`` is needed. On PostgreSQL an
        advisory lock keeps two collectors starting at once from migrating twice;
        on SQLite an exclusive ``flock`` on ``<database>-migrate.lock`` does
        (SQLite runs DDL outside a write transaction, so both would try
        ``CREATE TABLE``).

        Args:
            target: the revision to upgrade to; tests stop at an older one
                to check that an upgrade keeps the data.

        Returns:
            The schema's revision afterwards.
        """
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        # For `alembic` run offline by a person; '%' is ConfigParser syntax.
        config.set_main_option("sqlalchemy.url", engine_url(self.url).replace("%", "%%"))
        with self._sqlite_migrate_lock(), self.engine.begin() as conn:
            if self.dialect == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATE_LOCK)))
            config.attributes["connection"] = conn
            command.upgrade(config, target)
        revision = self.revision()
        log.info("database %s at revision %s", self, revision)
        return revision or ""

    @contextmanager
    def _sqlite_migrate_lock(self) -> Iterator[None]:
        database = make_url(self.url).database if self.dialect == "sqlite" else None
        if not database or database == ":memory:":
            yield
            return
        import fcntl

        # A file of its own: never open and close the database file itself (closing any
        # descriptor of it would drop this process's POSIX locks on it; see sync/outbox.py).
        with open(f"{database}-migrate.lock", "a+b") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def revision(self) -> str | None:
        """The schema's Alembic revision (None before the first migration)."""
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table("alembic_version"):
                return None
            value = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
            return None if value is None else str(value)

    # ------------------------------------------------------------------ writing

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One write transaction, committed when the block ends (rolled back on an exception).

        On PostgreSQL it first takes a transaction-level advisory lock, so
        writers commit one at a time and ingest ids become visible in order:
        a live feed reading ``ingest_id > N`` never skips a row that a slower
        transaction commits later with a smaller id. (SQLite has one writer
        at a time anyway.)
        """
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_INSERT_LOCK)))
            yield conn

    def insert_events(
        self,
        batch: Iterable[Mapping[str, Any]],
        *,
        dead: Iterable[DeadLetter] = (),
        conn: Connection | None = None,
    ) -> dict[str, str]:
        """Store valid events once, in one transaction.

        One ``INSERT … ON CONFLICT (id) DO NOTHING RETURNING id``: the ids that
        come back were new. An id twice in one batch is stored once.

        Args:
            batch: decoded, valid feedback events.
            dead: refused payloads to keep in the same transaction.
            conn: a connection from :meth:`transaction` to join; by default
                the call commits its own transaction.

        Returns:
            ``{id: "stored" | "duplicate"}`` for every id in ``batch``.

        Raises:
            ValueError: an event's ``ts`` is not a real date (nothing is written).
            sqlalchemy.exc.SQLAlchemyError: the database failed (nothing is written).
        """
        if conn is None:
            with self.transaction() as own:
                return self.insert_events(batch, dead=dead, conn=own)
        now = datetime.now(UTC)
        rows: dict[str, dict[str, Any]] = {}
        events_by_id: dict[str, Mapping[str, Any]] = {}
        for event in batch:
            if event["id"] not in rows:
                rows[event["id"]] = _row(event, now)
                events_by_id[event["id"]] = event
        stored: set[str] = set()
        if rows:
            stored = self._insert_rows(conn, list(rows.values()))
            new_rows = [rows[i] for i in stored]
            moves = _retime(conn, new_rows)
            if self.rollups:
                self._roll_up(conn, [events_by_id[i] for i in stored], {r["id"]: r["ts_utc"] for r in new_rows},
                              moves)
            self._count_epochs(conn, new_rows)
        letters = [_dead_row(d, now) for d in dead]
        if letters:
            conn.execute(dead_letters.insert(), letters)
        return {id_: ("stored" if id_ in stored else "duplicate") for id_ in rows}

    def _insert_rows(self, conn: Connection, rows: list[dict[str, Any]]) -> set[str]:
        """``INSERT … ON CONFLICT (id) DO NOTHING RETURNING id``: the ids that were new."""
        if self.dialect == "postgresql":
            # One statement with the rows as one JSON text, whatever the batch size: a
            # short, constant text that PostgreSQL prepares, where a multi-row VALUES
            # list is re-parsed in Python for every batch. (One array per column, as
            # before, cost a quarter of the whole batch in psycopg's pure-Python
            # array dumping.) The record's columns carry the base types; the
            # INSERT's own assignment casts still refuse a value too long for its
            # column. Times are aware UTC datetimes, which msgspec writes with a Z.
            return {r[0] for r in conn.exec_driver_sql(_PG_INSERT, (_json_text(rows),))}
        # SQLite: multi-row INSERTs of the same few sizes, written here rather
        # than by SQLAlchemy's "insertmanyvalues" (which rebuilds the text and
        # its parameters in Python for every batch); sqlite3 keeps each prepared.
        # The values go through the columns' own SQLAlchemy bind processors
        # (DateTime as text, Boolean as 0/1), so the rows are exactly as before.
        binds = self._sqlite_binds()
        per = max(1, min(500, conn.dialect.insertmanyvalues_max_parameters // len(binds)))
        converted = [(i, bind) for i, (_, bind) in enumerate(binds) if bind is not None]
        stored: set[str] = set()
        for start in range(0, len(rows), per):
            chunk = rows[start:start + per]
            values: list[Any] = []
            for row in chunk:
                value = list(_INSERTED_VALUES(row))
                for i, bind in converted:
                    value[i] = bind(value[i])
                values += value
            stored.update(r[0] for r in conn.exec_driver_sql(_sqlite_insert(len(chunk)), tuple(values)))
        return stored

    # ------------------------------------------------------------------ rollups

    def zone(self, site: str) -> ZoneInfo:
        """The time zone of ``site``'s local days and hours (what :attr:`zones` names; UTC by default)."""
        return _zone(self.zones(site))

    def zones_in(self, conn: Connection, sites: Iterable[str]) -> dict[str, str]:
        """Each site's zone as the caller's transaction sees it: the one an admin set on the sites page
        (``site_settings``), else what :attr:`zones` names (central.toml)."""
        wanted = sorted(set(sites))
        edited = dict(_rows_of_sites(conn, "SELECT site, timezone FROM site_settings"
                                     " WHERE timezone IS NOT NULL AND site", wanted))
        return {site: edited[site] if site in edited and _known_zone(edited[site]) else self.zones(site)
                for site in wanted}

    def rolled_up(self, conn: Connection) -> dict[str, str]:
        """Every site whose rollups are complete, with the zone they were made in."""
        return {r.site: r.timezone for r in conn.execute(sa.select(rollup_zones))}

    def _roll_up(self, conn: Connection, new: list[Mapping[str, Any]], placed: dict[str, datetime],
                 moves: list[Move]) -> None:
        """Add newly stored answers, and move re-timed ones, in the rollups of sites kept there.

        A site is kept in the rollups while ``rollup_zones`` names it in the zone
        :attr:`zones` gives it: a new site starts there with its first answers; a
        site seen in another zone leaves (read from events until
        :meth:`rebuild_rollups`), so its rows are never mixed from two zones.
        """
        sites = {e["site"] for e in new} | {m.site for m in moves}
        if not sites:
            return
        recorded = dict(_rows_of_sites(conn, "SELECT site, timezone FROM rollup_zones WHERE site", sorted(sites)))
        zones = self.zones_in(conn, sites)
        kept: set[str] = set()
        for site in sorted(sites):
            zone = zones[site]
            if recorded.get(site) == zone:
                kept.add(site)
            elif site in recorded:
                log.warning("site %s: rollups were made in %s, the configuration says %s: reading its answers "
                            "from events until `deskpulse-central rebuild-rollups`", site, recorded[site], zone)
                conn.execute(rollup_zones.delete().where(rollup_zones.c.site == site))
            elif not conn.execute(sa.select(epochs.c.site).where(epochs.c.site == site).limit(1)).first():
                conn.execute(rollup_zones.insert().values(site=site, timezone=zone))  # a new site
                kept.add(site)
        delta = RollupDelta()
        new_ids = set(placed)
        for move in moves:
            if move.id in new_ids:
                placed[move.id] = move.after  # a new answer: counted once, where it ends up
            elif move.site in kept:
                tz = _zone(zones[move.site])
                delta.add(move.site, move.device, move.before.astimezone(tz), move.rating, move.scale, move.flags,
                          move.reasons, sign=-1)
                delta.add(move.site, move.device, move.after.astimezone(tz), move.rating, move.scale, move.flags,
                          move.reasons)
        for event in new:
            if event["site"] in kept:
                local = utc(placed[event["id"]]).astimezone(_zone(zones[event["site"]]))
                delta.add(event["site"], event["device"], local,
                          event["rating"], event["scale"], event["flags"], event["reasons"])
        delta.write(conn)

    def rebuild_rollups(self, sites: Iterable[str] | None = None, *, progress: Callable[[str, int], None] | None = None
                        ) -> dict[str, int]:
        """Make the rollups of ``sites`` (every site with answers by default) anew from ``events``.

        One transaction per site, during which collectors wait (on PostgreSQL the
        insert lock; SQLite has one writer); the site is kept in the rollups from
        then on, in the zone :attr:`zones` gives it.

        Returns:
            ``{site: answers counted}``.
        """
        with self.engine.connect() as conn:
            known = sorted({r.site for r in conn.execute(sa.select(epochs.c.site).distinct())})
        done: dict[str, int] = {}
        for site in (known if sites is None else sorted(set(sites))):
            with self.transaction() as conn:
                count = self.rebuild_site(conn, site)
            done[site] = count
            if progress is not None:
                progress(site, count)
        return done

    def leave_rollups(self) -> None:
        """Store answers without the rollups from now on (``bench.ingest`` measures what they cost).

        Every site is taken out of the rollups first, so the dashboard reads
        them from ``events`` (correct, only slower) rather than from rows that
        stop being kept; the next ordinary start counts them again
        (:meth:`stale_rollups`).
        """
        with self.transaction() as conn:
            conn.execute(rollup_zones.delete())
        self.rollups = False

    def rebuild_site(self, conn: Connection, site: str) -> int:
        """Count one site's answers anew in the caller's transaction, in the zone :meth:`zones_in` gives it
        there (so a zone changed in the same transaction is the one used). Returns the answers counted."""
        zone = self.zones_in(conn, [site])[site]
        tz = _zone(zone)
        conn.execute(day_rollups.delete().where(day_rollups.c.site == site))
        conn.execute(reason_rollups.delete().where(reason_rollups.c.site == site))
        conn.execute(rollup_zones.delete().where(rollup_zones.c.site == site))
        delta, count = RollupDelta(), 0
        stmt = (sa.select(events.c.device, events.c.ts_utc, events.c.rating, events.c.scale, events.c.flags,
                          events.c.reasons).where(events.c.site == site)
                .execution_options(yield_per=20_000))
        for row in conn.execute(stmt):
            delta.add(site, row.device, utc(row.ts_utc).astimezone(tz), int(row.rating), int(row.scale),
                      _words(row.flags), _words(row.reasons))
            count += 1
        delta.write(conn)
        conn.execute(rollup_zones.insert().values(site=site, timezone=zone))
        return count

    def stale_rollups(self) -> list[str]:
        """Sites with answers whose rollups are missing or in another zone than :attr:`zones` gives."""
        with self.engine.connect() as conn:
            known = {r.site for r in conn.execute(sa.select(epochs.c.site).distinct())}
            recorded = self.rolled_up(conn)
            zones = self.zones_in(conn, known)
        return sorted(site for site in known if recorded.get(site) != zones[site])

    def _count_epochs(self, conn: Connection, new_rows: list[dict[str, Any]]) -> None:
        """Add the newly stored answers to their epochs' counts and highest seq (same transaction).

        A fixed statement (:data:`_EPOCHS_UPSERT`): building it with SQLAlchemy for
        every batch cost more than running it.
        """
        if not new_rows:
            return
        per: dict[tuple[str, str, str], list[int]] = {}
        for row in new_rows:
            entry = per.setdefault((row["site"], row["device"], row["epoch"]), [0, 0])
            entry[0] += 1
            entry[1] = max(entry[1], int(row["seq"]))
        values = [(*key, n, m) for key, (n, m) in sorted(per.items())]
        if self.dialect == "postgresql":
            conn.exec_driver_sql(_EPOCHS_UPSERT["postgresql"], (_json_text(
                [{"site": s, "device": d, "epoch": e, "answers": n, "max_seq": m} for s, d, e, n, m in values]),))
        else:
            conn.exec_driver_sql(_EPOCHS_UPSERT["sqlite"], values)

    def _sqlite_binds(self) -> list[tuple[str, Any]]:
        """(column, its bind processor or None) for every inserted column, on this engine's dialect.

        A time goes through :func:`_sqlite_datetime` rather than SQLAlchemy's own processor, which
        writes the same text (``tests/test_central_store.py`` compares them) at a third of the cost.
        """
        if self._binds is None:
            dialect = self.engine.dialect
            self._binds = [(name, _SameAsLast(_sqlite_datetime) if isinstance(events.c[name].type, sa.DateTime)
                            else events.c[name].type.dialect_impl(dialect).bind_processor(dialect))
                           for name in _INSERTED]
        return self._binds

    def dead_letter(self, topic: str, reason: str, raw: bytes, *, conn: Connection | None = None) -> None:
        """Keep a refused payload with the reason, for people to look at."""
        if conn is None:
            with self.transaction() as own:
                own.execute(dead_letters.insert(), [_dead_row(DeadLetter(topic, reason, raw), datetime.now(UTC))])
        else:
            conn.execute(dead_letters.insert(), [_dead_row(DeadLetter(topic, reason, raw), datetime.now(UTC))])

    def prune_dead_letters(self, max_bytes: int, max_age: timedelta) -> int:
        """Keep dead letters within a budget: delete those older than ``max_age``, then the oldest beyond
        ``max_bytes`` (each counted as :data:`dead_letter_size`). Returns how many were deleted."""
        cutoff = datetime.now(UTC) - max_age
        running = (sa.select(dead_letters.c.dead_id,
                             sa.func.sum(dead_letter_size).over(order_by=dead_letters.c.dead_id.desc())
                             .label("running"))
                   .subquery())
        over = sa.select(running.c.dead_id).where(running.c.running > max_bytes)
        with self.engine.begin() as conn:
            old = conn.execute(dead_letters.delete().where(dead_letters.c.received_at < cutoff)).rowcount
            big = conn.execute(dead_letters.delete().where(dead_letters.c.dead_id.in_(over))).rowcount
        return int(old) + int(big)

    def record_status(self, status: Mapping[str, Any], *, conn: Connection | None = None) -> None:
        """Keep a device's latest status (validated, body matching its topic).

        A status with ``health`` replaces the device's health; one without it
        (the last will says only ``offline``) changes the state and keeps the
        last known health, so an offline device still shows its backlog.
        """
        if conn is None:
            with self.transaction() as own:
                self.record_status(status, conn=own)
            return
        values: dict[str, Any] = {
            "site": status["site"],
            "device": status["device"],
            "state": status["state"],
            "last_seen": datetime.now(UTC),
        }
        if "ts" in status:
            values["status_ts"] = status["ts"]
        if "version" in status:
            values["version"] = status["version"]
        health = status.get("health")
        if health is not None:
            config_error = health.get("config_error")
            values.update(
                backlog=health.get("backlog"),
                oldest_pending_age_s=health.get("oldest_pending_age_s"),
                clock_synced=health.get("clock_synced"),
                last_error=health.get("last_error"),
                config_error=None if config_error is None else json.dumps(config_error, separators=(",", ":")),
                health=json.dumps(health, separators=(",", ":")),
            )
        insert = postgresql.insert(devices) if self.dialect == "postgresql" else sqlite.insert(devices)
        updates: dict[str, Any] = {k: v for k, v in values.items() if k not in ("site", "device")}
        # A retired device stays retired: its last will may arrive after `device remove`.
        updates["state"] = sa.case((devices.c.state == RETIRED, devices.c.state), else_=insert.excluded.state)
        conn.execute(insert.values(values).on_conflict_do_update(index_elements=["site", "device"], set_=updates))

    def retire_device(self, site: str, device: str) -> None:
        """Mark a device retired (``deskpulse-central device remove``); its answers stay.

        Later statuses (its last will, say) update its health but not the state.
        """
        values = {"site": site, "device": device, "state": RETIRED, "last_seen": datetime.now(UTC)}
        insert = postgresql.insert(devices) if self.dialect == "postgresql" else sqlite.insert(devices)
        with self.transaction() as conn:
            conn.execute(insert.values(values).on_conflict_do_update(
                index_elements=["site", "device"], set_={"state": RETIRED}))

    def unretire_device(self, site: str, device: str) -> bool:
        """Forget a retired device's row (``device add`` again); returns whether it was retired."""
        with self.transaction() as conn:
            result = conn.execute(devices.delete().where(
                devices.c.site == site, devices.c.device == device, devices.c.state == RETIRED))
        return bool(result.rowcount)


@dataclass(frozen=True, slots=True)
class Move:
    """An answer the re-timing placed elsewhere: what the rollups must move."""

    id: str
    site: str
    device: str
    before: datetime
    after: datetime
    rating: int
    scale: int
    flags: tuple[str, ...]
    reasons: tuple[str, ...]


@lru_cache(maxsize=64)
def _in_list(n: int) -> str:
    return " IN (" + ", ".join(["?"] * n) + ")"


def _rows_of_sites(conn: Connection, select: str, sites: list[str]) -> list[tuple[Any, ...]]:
    """``select`` (ending in ``… WHERE … site``) for these sites: a fixed text per dialect and chunk size,
    which the driver keeps prepared (SQLAlchemy's ``in_`` built and compiled anew cost more than the query)."""
    out: list[tuple[Any, ...]] = []
    for start in range(0, len(sites), _ANSWERS_PER_QUERY):
        chunk = sites[start:start + _ANSWERS_PER_QUERY]
        if conn.dialect.name == "postgresql":
            out.extend(tuple(r) for r in conn.exec_driver_sql(select + " = ANY(%s)", (chunk,)))
        else:
            out.extend(tuple(r) for r in conn.exec_driver_sql(select + _in_list(len(chunk)), tuple(chunk)))
    return out


def _retime(conn: Connection, new_rows: list[dict[str, Any]]) -> list[Move]:
    """Place answers recorded before the device's clock was set (docs/central.md, "Time").

    For every boot touched by ``new_rows``: each answer of that boot with
    ``clock_synced`` false is placed at ``anchor.ts - (anchor.mono_ms -
    mono_ms)``, where the anchor is the boot's first synchronised answer after
    it (the nearest, so the least monotonic-clock drift). Without such an
    anchor it stays at its receipt time. Re-run for a boot whenever a batch
    brings an answer that can change a placement, so earlier answers are
    re-timed when the synchronised one arrives later, in any order.

    Returns:
        Every answer moved, new ones of this batch included.
    """
    # A boot is re-timed when the batch brings one of its unsynchronised answers
    # (to place it), or a synchronised one right after an unsynchronised answer:
    # only then can a new anchor be nearer than the one an earlier answer has
    # (every batch leaves each unsynchronised answer at its nearest anchor, in
    # the same transaction). Almost always every clock is synchronised, so one
    # query per batch looks at the answer just before each new synchronised one:
    # a few index entries per answer, whatever the size of the boot (asking
    # "does this boot have unsynchronised answers at all" reads every answer of
    # the boot, as clock_synced is in no index). To stay exact when two answers
    # share a millisecond, it looks at the two answers before, and re-times the
    # boot when either is unsynchronised or they tie (re-timing more is harmless).
    to_retime = {(r["site"], r["device"], r["boot_id"]) for r in new_rows if r["clock_synced"] is not True}
    after = sorted({(r["site"], r["device"], r["boot_id"], r["mono_ms"]) for r in new_rows
                    if r["clock_synced"] is True and (r["site"], r["device"], r["boot_id"]) not in to_retime})
    for start in range(0, len(after), _ANSWERS_PER_QUERY):
        chunk = after[start:start + _ANSWERS_PER_QUERY]
        if conn.dialect.name == "postgresql":
            found = conn.exec_driver_sql(_PG_BEFORE_NEW, (_json_text(
                [{"site": s, "device": d, "boot_id": b, "mono_ms": m} for s, d, b, m in chunk]),))
        else:
            found = conn.exec_driver_sql(_sqlite_before_new(len(chunk)),
                                         tuple(value for answer in chunk for value in answer))
        to_retime.update((r.site, r.device, r.boot_id) for r in found if r.suspect)
    moves: list[Move] = []
    for site, device, boot_id in sorted(to_retime):
        same_boot = sa.and_(events.c.site == site, events.c.device == device, events.c.boot_id == boot_id)
        anchors = conn.execute(
            sa.select(events.c.mono_ms, events.c.ts_utc)
            .where(same_boot, events.c.clock_synced.is_(True))
            .order_by(events.c.mono_ms)
        ).all()
        if not anchors:
            continue
        monos = [a.mono_ms for a in anchors]
        unsynced = conn.execute(
            sa.select(events.c.ingest_id, events.c.id, events.c.mono_ms, events.c.ts_utc, events.c.time_source,
                      events.c.rating, events.c.scale, events.c.flags, events.c.reasons)
            .where(same_boot, events.c.clock_synced.is_(False))
        ).all()
        updates: list[dict[str, Any]] = []
        for row in unsynced:
            at = bisect.bisect_right(monos, row.mono_ms)
            if at == len(monos):
                continue  # no synchronised answer after it (yet): keeps its receipt time
            anchor = anchors[at]
            placed = utc(anchor.ts_utc) - timedelta(milliseconds=anchor.mono_ms - row.mono_ms)
            if row.time_source != "retimed" or utc(row.ts_utc) != placed:
                updates.append({"b_ingest_id": row.ingest_id, "b_ts_utc": placed})
                if utc(row.ts_utc) != placed:
                    moves.append(Move(row.id, site, device, utc(row.ts_utc), placed, int(row.rating),
                                      int(row.scale), _words(row.flags), _words(row.reasons)))
        if updates:
            conn.execute(
                events.update()
                .where(events.c.ingest_id == sa.bindparam("b_ingest_id"))
                .values(ts_utc=sa.bindparam("b_ts_utc"), time_source="retimed"),
                updates,
            )
    return moves


def _words(text: str | None) -> tuple[str, ...]:
    """A JSON list of words, as stored in ``reasons`` and ``flags``."""
    return tuple(str(v) for v in json.loads(text)) if text else ()


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@lru_cache(maxsize=256)
def _known_zone(name: str) -> bool:
    """Whether ``name`` is a time zone this machine knows (a value edited by hand in the database may not be)."""
    try:
        _zone(name)
    except (ValueError, KeyError):  # ZoneInfoNotFoundError is a KeyError; a malformed name a ValueError
        return False
    return True


def _dead_row(letter: DeadLetter, received_at: datetime) -> dict[str, Any]:
    raw = bytes(letter.raw)
    reason = letter.reason
    if len(raw) > MAX_DEAD_LETTER_BYTES:
        reason += f" (raw payload cut to {MAX_DEAD_LETTER_BYTES} of {len(raw)} bytes)"
        raw = raw[:MAX_DEAD_LETTER_BYTES]
    return {"received_at": received_at, "topic": letter.topic, "reason": reason[:2000], "raw": raw}


def _make_engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        # pre_ping: a PostgreSQL restart must not cost the next batch.
        return sa.create_engine(url, pool_pre_ping=True)
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    # timeout: how long a writer waits for another's lock; short enough that the
    # collector thread keeps its MQTT keepalive.
    engine = sa.create_engine(url, connect_args={"timeout": 10})

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")  # the dashboard reads while a collector writes
        cur.execute("PRAGMA synchronous=FULL")  # a receipt promises the event is on disk
        cur.execute("PRAGMA busy_timeout=10000")
        cur.execute("PRAGMA foreign_keys=ON")
        # Checkpoint the WAL at about 40 MB rather than SQLite's 4 MB: an index page that many
        # commits changed is copied back once, and fewer checkpoints interrupt ingest (its commits
        # run them); about -8 % of insert_events' CPU per answer, measured in-process.
        cur.execute(f"PRAGMA wal_autocheckpoint={SQLITE_WAL_PAGES}")
        cur.close()

    return engine

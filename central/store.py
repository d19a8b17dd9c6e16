"""Central's store: every feedback event once, with a monotonic ingest id.

SQLAlchemy Core over SQLite (the default, zero setup) or PostgreSQL (at
scale). The schema is created and upgraded by Alembic migrations
(``central/migrations``), never by ``create_all``; the tables below mirror the
newest migration and are what queries are built from.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from sync import protocol

log = logging.getLogger("deskpulse.central.store")

metadata = sa.MetaData()

#: An integer primary key that autoincrements on SQLite (INTEGER) and PostgreSQL (BIGINT).
IngestId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

events = sa.Table(
    "events",
    metadata,
    sa.Column("ingest_id", IngestId, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(36), nullable=False),
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
    sa.UniqueConstraint("id", name="uq_events_id"),
    sa.Index("ix_events_site_device_ts", "site", "device", "ts_utc"),
    sa.Index("ix_events_device_epoch_seq", "site", "device", "epoch", "seq"),
)

dead_letters = sa.Table(
    "dead_letters",
    metadata,
    sa.Column("dead_id", IngestId, primary_key=True, autoincrement=True),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("topic", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("raw", sa.LargeBinary, nullable=False),
)

#: Fields of an event stored as JSON text.
_JSON_FIELDS = ("reasons", "flags")


def engine_url(url: str) -> str:
    """SQLAlchemy's URL for ours: ``postgresql://`` means psycopg 3."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def _row(event: dict[str, Any], received_at: datetime) -> dict[str, Any]:
    row = {c.name: event.get(c.name) for c in events.columns if c.name in event}
    for name in _JSON_FIELDS:
        row[name] = json.dumps(event[name], separators=(",", ":"))
    row["ts_utc"] = protocol.parse_timestamp(event["ts"])
    row["received_at"] = received_at
    return row


def _event(row: sa.Row[Any]) -> dict[str, Any]:
    out = dict(row._mapping)
    for name in _JSON_FIELDS:
        out[name] = json.loads(out[name])
    out["schema"] = protocol.SCHEMA_VERSION
    for name in ("ts_utc", "received_at"):
        value = out[name]
        if value.tzinfo is None:  # SQLite hands back naive datetimes
            value = value.replace(tzinfo=UTC)
        out[name] = value
    out["received_at"] = protocol.utc_timestamp(out["received_at"])
    del out["ts_utc"]
    return out


class Store:
    """The database central writes and the dashboard reads.

    Args:
        url: ``sqlite:///path`` or ``postgresql://user@host/db``.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = self._engine(engine_url(url))

    @staticmethod
    def _engine(url: str) -> Engine:
        if url.startswith("sqlite"):
            path = url[len("sqlite:///"):]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(url, connect_args={"timeout": 30})

            @sa.event.listens_for(engine, "connect")
            def _pragmas(dbapi_conn: Any, _record: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=FULL")  # a receipt promises the event is on disk
                cur.execute("PRAGMA busy_timeout=30000")
                cur.close()

            return engine
        return sa.create_engine(url, pool_pre_ping=True)

    def migrate(self) -> str:
        """Upgrade the schema to the newest migration; returns its revision."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        config.set_main_option("sqlalchemy.url", engine_url(self.url).replace("%", "%%"))
        with self.engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
        return self.revision() or ""

    def revision(self) -> str | None:
        """The schema's current Alembic revision (None before the first migration)."""
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table("alembic_version"):
                return None
            return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction, committed on leaving the block."""
        with self.engine.begin() as conn:
            yield conn

    # ------------------------------------------------------------------ writing

    def insert_events(self, batch: Sequence[dict[str, Any]], conn: Connection | None = None) -> dict[str, str]:
        """Store valid events once; returns ``{id: "stored" | "duplicate"}``.

        One statement, ``ON CONFLICT (id) DO NOTHING ... RETURNING id``: ids
        that come back were new. An id twice in one batch is stored once.
        """
        if not batch:
            return {}
        if conn is None:
            with self.transaction() as own:
                return self.insert_events(batch, own)
        now = datetime.now(UTC)
        rows: dict[str, dict[str, Any]] = {}
        for event in batch:
            rows.setdefault(event["id"], _row(event, now))
        insert = self._dialect_insert()(events).values(list(rows.values()))
        stmt = insert.on_conflict_do_nothing(index_elements=["id"]).returning(events.c.id)
        stored = set(conn.execute(stmt).scalars())
        return {i: ("stored" if i in stored else "duplicate") for i in rows}

    def _dialect_insert(self) -> Any:
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        return insert

    def dead_letter(self, topic: str, reason: str, raw: bytes, conn: Connection | None = None) -> None:
        """Keep an invalid payload with the reason, for people to look at."""
        values = {"received_at": datetime.now(UTC), "topic": topic, "reason": reason[:2000],
                  "raw": bytes(raw)}
        if conn is None:
            with self.transaction() as own:
                own.execute(dead_letters.insert().values(values))
        else:
            conn.execute(dead_letters.insert().values(values))

    # ------------------------------------------------------------------ reading

    def count_events(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(events)).scalar_one())

    def get_event(self, id_: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(events).where(events.c.id == id_)).first()
        return None if row is None else _event(row)

    def events_after(self, ingest_id: int, limit: int = 100) -> list[dict[str, Any]]:
        """Events with a larger ingest id, oldest first (the live feed's cursor)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(events).where(events.c.ingest_id > ingest_id).order_by(events.c.ingest_id).limit(limit)
            ).all()
        return [_event(r) for r in rows]

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest events, newest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(events).order_by(events.c.ingest_id.desc()).limit(limit)).all()
        return [_event(r) for r in rows]

    def dead_letter_rows(self, limit: int = 100) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(dead_letters).order_by(dead_letters.c.dead_id.desc()).limit(limit)).all()
        return [dict(r._mapping) for r in rows]

    def close(self) -> None:
        self.engine.dispose()


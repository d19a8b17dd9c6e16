"""Read-side queries the dashboard and the JSON API share (the write side is in central/store.py).

Two kinds:

- :func:`events` — stored answers by filter (site, desk, placed time, flags),
  paged by ingest id;
- :func:`buckets` — answers counted per (site, desk, quarter hour, rating,
  scale, flags, reasons). Every time zone in use today is a whole number of
  quarter hours from UTC, so a quarter-hour bucket lies in one local hour of
  any site: the aggregates (central/scores.py) place buckets in each site's
  time zone in Python, with the database doing the counting.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from central.store import Store, _event
from central.store import devices as devices_table
from central.store import events as events_table

#: Seconds in a bucket: a quarter hour.
BUCKET_S: Final = 900

#: Flags that keep an answer out of the scores unless asked for (they are still stored and shown).
EXCLUDED_FLAGS: Final = frozenset({"rapid_repeat", "test"})


@dataclass(frozen=True, slots=True)
class Bucket:
    """``count`` answers of one desk in the quarter hour from ``start`` (UTC) with the same answer."""

    site: str
    device: str
    start: datetime
    rating: int
    scale: int
    flags: tuple[str, ...]
    reasons: tuple[str, ...]
    count: int

    @property
    def flagged(self) -> bool:
        """Whether a flag keeps these answers out of the scores by default."""
        return not EXCLUDED_FLAGS.isdisjoint(self.flags)


def _where(site: str | None, device: str | None, since: datetime | None,
           until: datetime | None) -> list[ColumnElement[bool]]:
    clauses: list[ColumnElement[bool]] = []
    if site is not None:
        clauses.append(events_table.c.site == site)
    if device is not None:
        clauses.append(events_table.c.device == device)
    if since is not None:
        clauses.append(events_table.c.ts_utc >= since.astimezone(UTC))
    if until is not None:
        clauses.append(events_table.c.ts_utc < until.astimezone(UTC))
    return clauses


def _not_flagged() -> ColumnElement[bool]:
    # flags is JSON text written by us: '["rapid_repeat","test"]'; a flag is a quoted word in it.
    return sa.and_(*(events_table.c.flags.not_like(f'%"{flag}"%') for flag in sorted(EXCLUDED_FLAGS)))


def events(
    store: Store,
    *,
    site: str | None = None,
    device: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    after: int = 0,
    limit: int = 100,
    include_flagged: bool = True,
) -> list[dict[str, Any]]:
    """Stored answers placed in ``[since, until)``, in ingest order after ``after``, at most ``limit``."""
    clauses = _where(site, device, since, until)
    if not include_flagged:
        clauses.append(_not_flagged())
    stmt = (sa.select(events_table).where(events_table.c.ingest_id > after, *clauses)
            .order_by(events_table.c.ingest_id).limit(limit))
    with store.engine.connect() as conn:
        return [_event(r) for r in conn.execute(stmt)]


def iter_events(store: Store, *, page: int = 1000, **filters: Any) -> Iterator[dict[str, Any]]:
    """Every answer matching ``filters`` (as :func:`events` takes them), read a page at a time."""
    after = 0
    while True:
        rows = events(store, after=after, limit=page, **filters)
        yield from rows
        if len(rows) < page:
            return
        after = rows[-1]["ingest_id"]


def _bucket_expr(dialect: str) -> ColumnElement[Any]:
    if dialect == "sqlite":
        seconds: ColumnElement[Any] = sa.cast(sa.func.strftime("%s", events_table.c.ts_utc), sa.Integer)
        return seconds // BUCKET_S
    return sa.cast(sa.func.floor(sa.extract("epoch", events_table.c.ts_utc) / BUCKET_S), sa.BigInteger)


def buckets(
    store: Store,
    *,
    site: str | None = None,
    device: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[Bucket]:
    """Answers placed in ``[since, until)`` counted per desk, quarter hour and answer."""
    bucket = _bucket_expr(store.dialect).label("bucket")
    t = events_table.c
    keys = (t.site, t.device, bucket, t.rating, t.scale, t.flags, t.reasons)
    stmt = (sa.select(*keys, sa.func.count().label("n"))
            .where(*_where(site, device, since, until))
            .group_by(*keys))
    with store.engine.connect() as conn:
        rows = conn.execute(stmt).all()
    return [Bucket(site=r.site, device=r.device, start=datetime.fromtimestamp(int(r.bucket) * BUCKET_S, UTC),
                   rating=int(r.rating), scale=int(r.scale), flags=_words(r.flags), reasons=_words(r.reasons),
                   count=int(r.n)) for r in rows]


def desks(store: Store, site: str | None = None) -> list[tuple[str, str]]:
    """Every (site, desk) that has sent an answer or a status."""
    found: set[tuple[str, str]] = set()
    with store.engine.connect() as conn:
        for table in (events_table, devices_table):
            stmt = sa.select(table.c.site, table.c.device).distinct()
            if site is not None:
                stmt = stmt.where(table.c.site == site)
            found.update((r.site, r.device) for r in conn.execute(stmt))
    return sorted(found)


def _words(text: str) -> tuple[str, ...]:
    value: Iterable[Any] = json.loads(text) if text else ()
    return tuple(str(v) for v in value)

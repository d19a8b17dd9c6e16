"""Central's read side: every query of the answers and device health that central serves.

The write side (schema, migrations, transactions, the collector's inserts)
is :mod:`central.store`; this module only reads. The JSON API, the pages, the
CSV exports, the live feed (:mod:`central.feed`) and the scores
(:mod:`central.scores`) all read through the functions here.

Rows come back as plain dicts: the protocol's fields as the device sent them
(``reasons`` and ``flags`` decoded back to lists), plus ``ingest_id``,
``received_at`` and ``placed_at`` (ISO 8601 UTC) and ``time_source``.

Kinds of read:

- answers by filter (:func:`events`, :func:`iter_events`, :func:`recent`),
  paged by ingest id, and where a live feed stands (:func:`last_ingest_id`);
- :func:`buckets` — answers counted per (site, desk, quarter hour, rating,
  scale, flags, reasons). Every time zone in use today is a whole number of
  quarter hours from UTC, so a quarter-hour bucket lies in one local hour of
  any site: the scores place buckets in each site's time zone in Python, with
  the database doing the counting;
- device health (:func:`device_rows`, :func:`gaps`, and both together:
  :func:`device_health`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from typing import Any, Final
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from central.store import (
    EXCLUDED_FLAGS as EXCLUDED_FLAGS,
)
from central.store import (
    HOUR_COLUMNS,
    JSON_FIELDS,
    RATING_COLUMNS,
    RENAMED,
    STEP_COLUMNS,
    Store,
    dead_letter_size,
    utc,
)
from central.store import day_rollups as day_rollups_table
from central.store import dead_letters as dead_letters_table
from central.store import devices as devices_table
from central.store import epochs as epochs_table
from central.store import events as events_table
from central.store import is_flagged as is_flagged
from central.store import reason_rollups as reason_rollups_table
from sync import protocol

#: Seconds in a bucket: a quarter hour.
BUCKET_S: Final = 900

#: A desk: (site, device).
Desk = tuple[str, str]


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
        return is_flagged(self.flags)


def event_row(row: sa.Row[Any]) -> dict[str, Any]:
    """A row of ``events`` as the API shows it (the one row-to-record function)."""
    out: dict[str, Any] = {}
    for name, value in row._mapping.items():
        if name == "ts_utc":
            out["placed_at"] = protocol.utc_timestamp(utc(value))
            continue
        if name in JSON_FIELDS:
            value = json.loads(value)
        elif name == "received_at":
            value = protocol.utc_timestamp(utc(value))
        out[RENAMED.get(name, name)] = value
    return out


# --------------------------------------------------------------------------- answers

def _where(site: str | None = None, device: str | None = None, since: datetime | None = None,
           until: datetime | None = None) -> list[ColumnElement[bool]]:
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


def _among(desks: Iterable[Desk]) -> ColumnElement[bool]:
    return sa.or_(sa.false(), *(sa.and_(events_table.c.site == s, events_table.c.device == d) for s, d in desks))


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
    only: Collection[Desk] | None = None,
    without: Collection[Desk] = (),
    tail: bool = False,
) -> list[dict[str, Any]]:
    """Stored answers placed in ``[since, until)``, in ingest order after ``after``, at most ``limit``.

    Args:
        store: the store to read.
        site: only this site's answers.
        device: only this desk's answers.
        since: placed at or after this moment.
        until: placed before this moment.
        after: only answers with a larger ingest id (the API's and the feed's cursor).
        limit: at most this many.
        include_flagged: False leaves out answers flagged ``rapid_repeat`` or ``test``.
        only: only answers of these desks (the live feed's delayed desks).
        without: no answers of these desks.
        tail: ``after`` is recent (the live feed's cursor): read on from it in ingest order
            and pick this site's or desk's answers on the way. SQLite, with no statistics,
            would otherwise read every answer of the site through its index, then sort them
            (40 ms a poll for a site with 125,000 answers, against 0.1 ms).
    """
    clauses = _where(site, device, since, until)
    if tail and store.dialect == "sqlite":
        clauses = [sa.func.likely(c) for c in clauses]
    if not include_flagged:
        clauses.append(_not_flagged())
    if only is not None:
        clauses.append(_among(only))
    if without:
        clauses.append(sa.not_(_among(without)))
    stmt = (sa.select(events_table).where(events_table.c.ingest_id > after, *clauses)
            .order_by(events_table.c.ingest_id).limit(limit))
    with store.engine.connect() as conn:
        return [event_row(r) for r in conn.execute(stmt)]


def iter_events(store: Store, *, page: int = 1000, **filters: Any) -> Iterator[dict[str, Any]]:
    """Every answer matching ``filters`` (as :func:`events` takes them), read a page at a time."""
    after = 0
    while True:
        rows = events(store, after=after, limit=page, **filters)
        yield from rows
        if len(rows) < page:
            return
        after = rows[-1]["ingest_id"]


def recent(
    store: Store,
    limit: int = 50,
    *,
    site: str | None = None,
    device: str | None = None,
    hide: Collection[Desk] = (),
    hold: Sequence[tuple[Collection[Desk], datetime]] = (),
) -> list[dict[str, Any]]:
    """The newest answers, newest first.

    Args:
        store: the store to read.
        limit: at most this many.
        site: only this site's answers.
        device: only this desk's answers.
        hide: no answers of these desks (the feed's aggregated desks).
        hold: ``(desks, cutoff)`` pairs: answers of these desks only if
            central received them at or before ``cutoff`` (delayed desks).
    """
    held = [desk for desks, _ in hold for desk in desks]
    received = events_table.c.received_at
    visible = [sa.not_(_among(held)),
               *(sa.and_(_among(desks), received <= cutoff.astimezone(UTC)) for desks, cutoff in hold)]
    rest = (sa.not_(_among(hide)), sa.or_(*visible))
    stmt = (sa.select(events_table).where(*_where(site, device), *rest)
            .order_by(events_table.c.ingest_id.desc()).limit(limit))
    with store.engine.connect() as conn:
        if store.dialect == "sqlite" and (site is not None or device is not None):
            # SQLite, with no statistics, reads every answer of the site through its index and
            # sorts them (60 ms for 125,000): look among the newest answers first.
            newest = conn.execute(sa.select(sa.func.max(events_table.c.ingest_id))).scalar() or 0
            recent_rows = conn.execute(
                sa.select(events_table)
                .where(events_table.c.ingest_id > newest - RECENT_WINDOW,
                       *(sa.func.likely(c) for c in _where(site, device)), *rest)
                .order_by(events_table.c.ingest_id.desc()).limit(limit)).all()
            if len(recent_rows) == limit:
                return [event_row(r) for r in recent_rows]
        return [event_row(r) for r in conn.execute(stmt)]


#: How many of the newest answers :func:`recent` looks among first (SQLite).
RECENT_WINDOW: Final = 20_000


def last_ingest_id(store: Store, *, among: Collection[Desk] | None = None,
                   received_before: datetime | None = None) -> int:
    """The largest ingest id (0 when none): where a live feed starts.

    Args:
        store: the store to read.
        among: only answers of these desks.
        received_before: only answers central received at or before this moment.
    """
    stmt = sa.select(sa.func.coalesce(sa.func.max(events_table.c.ingest_id), 0))
    if among is not None:
        stmt = stmt.where(_among(among))
    if received_before is not None:
        stmt = stmt.where(events_table.c.received_at <= received_before.astimezone(UTC))
    with store.engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())


def count_events(store: Store) -> int:
    """How many events are stored."""
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(events_table)).scalar_one())


def dead_letter_usage(store: Store) -> tuple[int, int]:
    """Dead letters kept: (rows, bytes as counted against ``ingest.dead_letters_max_mb``)."""
    with store.engine.connect() as conn:
        rows, size = conn.execute(sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(dead_letter_size), 0))
                                  .select_from(dead_letters_table)).one()
    return int(rows), int(size)


# --------------------------------------------------------------------------- counts for the scores

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


@dataclass(frozen=True, slots=True, order=True)
class DayRow:
    """One desk's answers on one local day, one scale, flagged or not (what the dashboard counts)."""

    site: str
    device: str
    day: date
    scale: int
    flagged: bool
    ratings: tuple[int, ...]  # answers per rating 1..5
    hours: tuple[int, ...]  # answers per local hour 0..23
    steps: tuple[int, ...]  # sum of (rating - 1) per local hour 0..23


@dataclass(frozen=True, slots=True, order=True)
class DayReason:
    """How many answers of one desk on one local day (flagged or not) gave ``reason``."""

    site: str
    device: str
    day: date
    flagged: bool
    reason: str
    count: int


#: The hours of a :class:`DayRow` read with ``hours=False``.
NO_HOURS: Final = (0,) * 24


def days(store: Store, zone_of: Callable[[str], str], *, site: str | None = None, device: str | None = None,
         first: date, last: date, known: Iterable[Desk] | None = None,
         hours: bool = True, reasons_by: str = "desk") -> tuple[list[DayRow], list[DayReason]]:
    """Answers per desk and local day from ``first`` to ``last`` (both included), in each site's zone.

    Read from the rollups for every site kept there in the zone ``zone_of`` gives
    it (an IANA name, from central.toml); counted from ``events`` for
    the others (a site whose rollups are missing or were made in another zone), so
    the numbers are the same either way, only slower for those. ``known``: the
    desks :func:`desks` would list, when the caller has them already. ``hours=False``:
    the rows read from the rollups leave their hours and steps per hour at zero (not
    read: 48 of their 58 columns), for callers that use only the answers per rating.
    ``reasons_by``: ``"desk"`` (each desk's reasons), ``"site"`` (summed over a site's
    desks in the database, ``device`` ``""``: fewer rows for callers that count reasons
    over every desk in view) or ``"none"`` (not read).
    """
    if reasons_by not in ("desk", "site", "none"):
        raise ValueError(f"reasons_by={reasons_by!r}: desk, site or none")
    with store.engine.connect() as conn:
        recorded = store.rolled_up(conn)
        d = day_rollups_table.c
        counts = (*RATING_COLUMNS, *HOUR_COLUMNS, *STEP_COLUMNS) if hours else RATING_COLUMNS
        stmt = (sa.select(d.site, d.device, d.day, d.scale, d.flagged, *(d[c] for c in counts))
                .where(d.day >= first, d.day <= last))
        r = reason_rollups_table.c
        by = (r.site, r.device if reasons_by == "desk" else sa.literal_column("''"), r.day, r.flagged, r.reason)
        rstmt = (sa.select(*by, sa.func.sum(r.answers)).where(r.day >= first, r.day <= last, r.answers != 0)
                 .group_by(*(c for i, c in enumerate(by) if i != 1 or reasons_by == "desk")))
        if site is not None:
            stmt, rstmt = stmt.where(d.site == site), rstmt.where(r.site == site)
        if device is not None:
            stmt, rstmt = stmt.where(d.device == device), rstmt.where(r.device == device)
        rolled = {s for s, zone in recorded.items() if zone == zone_of(s)}
        rows = [DayRow(x[0], x[1], x[2], int(x[3]), bool(x[4]), tuple(x[5:10]),
                       tuple(x[10:34]) if hours else NO_HOURS, tuple(x[34:58]) if hours else NO_HOURS)
                for x in conn.execute(stmt)
                if x[0] in rolled and any(x[5:10])]  # not emptied by a re-timing that moved its answers
        reasons = [] if reasons_by == "none" else [
            DayReason(x[0], x[1], x[2], bool(x[3]), x[4], int(x[5])) for x in conn.execute(rstmt) if x[0] in rolled]
        others = sorted({s for s, _ in (desks(store, site) if known is None else known)} - rolled)
    for other in others:  # not (or not yet) in the rollups: counted from events
        more, more_reasons = days_from_events(store, _zone(zone_of(other)), site=other, device=device,
                                              first=first, last=last)
        rows += more
        reasons += [] if reasons_by == "none" else more_reasons
    return rows, reasons


def day_hours(store: Store, zone_of: Callable[[str], str], *, site: str | None = None, device: str | None = None,
              first: date, last: date, known: Iterable[Desk] | None = None) -> list[DayRow]:
    """The answers and steps per local hour of :func:`days`' rows, summed over desks per site and day.

    Each row's ``device`` is ``""`` (every desk in the filter): what the heatmap needs,
    summed in the database (a site's day is one row, not one per desk), so the hours
    of every desk need not be read one by one. Sites not kept in the rollups are
    summed from :func:`days_from_events`.
    """
    d = day_rollups_table.c
    keys = (d.site, d.day, d.scale, d.flagged)
    stmt = (sa.select(*keys, *(sa.func.sum(d[c]) for c in (*RATING_COLUMNS, *HOUR_COLUMNS, *STEP_COLUMNS)))
            .where(d.day >= first, d.day <= last).group_by(*keys))
    if site is not None:
        stmt = stmt.where(d.site == site)
    if device is not None:
        stmt = stmt.where(d.device == device)
    with store.engine.connect() as conn:
        recorded = store.rolled_up(conn)
        rolled = {s for s, zone in recorded.items() if zone == zone_of(s)}
        rows = [DayRow(x[0], "", x[1], int(x[2]), bool(x[3]), tuple(map(int, x[4:9])),
                       tuple(map(int, x[9:33])), tuple(map(int, x[33:57])))
                for x in conn.execute(stmt) if x[0] in rolled and any(x[4:9])]
    others = sorted({s for s, _ in (desks(store, site) if known is None else known)} - rolled)
    for other in others:
        summed: dict[tuple[date, int, bool], list[list[int]]] = {}
        more, _ = days_from_events(store, _zone(zone_of(other)), site=other, device=device, first=first, last=last)
        for r in more:
            acc = summed.setdefault((r.day, r.scale, r.flagged), [[0] * 5, [0] * 24, [0] * 24])
            for part, values in zip(acc, (r.ratings, r.hours, r.steps), strict=True):
                for i, v in enumerate(values):
                    part[i] += v
        rows += [DayRow(other, "", day, scale, flagged, tuple(a), tuple(h), tuple(t))
                 for (day, scale, flagged), (a, h, t) in sorted(summed.items())]
    return rows


def days_from_events(store: Store, tz: tzinfo, *, site: str, device: str | None = None, first: date,
                     last: date) -> tuple[list[DayRow], list[DayReason]]:
    """What :func:`days` reads from the rollups for ``site``, counted from ``events`` (the reference)."""
    since = datetime.combine(first, time.min, tz) - timedelta(hours=1)
    until = datetime.combine(last + timedelta(days=1), time.min, tz) + timedelta(hours=1)
    counts: dict[tuple[str, date, int, bool], list[list[int]]] = {}
    reasons: dict[tuple[str, date, bool, str], int] = {}
    for b in buckets(store, site=site, device=device, since=since.astimezone(UTC), until=until.astimezone(UTC)):
        local = b.start.astimezone(tz)
        if not first <= local.date() <= last:
            continue
        entry = counts.setdefault((b.device, local.date(), b.scale, b.flagged), [[0] * 5, [0] * 24, [0] * 24])
        entry[0][b.rating - 1] += b.count
        entry[1][local.hour] += b.count
        entry[2][local.hour] += b.count * (b.rating - 1)
        for reason in set(b.reasons):
            key = (b.device, local.date(), b.flagged, reason)
            reasons[key] = reasons.get(key, 0) + b.count
    return ([DayRow(site, dev, day, scale, flagged, tuple(v[0]), tuple(v[1]), tuple(v[2]))
             for (dev, day, scale, flagged), v in sorted(counts.items())],
            [DayReason(site, dev, day, flagged, reason, n)
             for (dev, day, flagged, reason), n in sorted(reasons.items())])


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def desks(store: Store, site: str | None = None) -> list[Desk]:
    """Every (site, desk) that has sent an answer or a status."""
    found: set[Desk] = set()
    with store.engine.connect() as conn:
        # epochs has a row per device epoch that sent answers: small, where events is not.
        for table in (epochs_table, devices_table):
            stmt = sa.select(table.c.site, table.c.device).distinct()
            if site is not None:
                stmt = stmt.where(table.c.site == site)
            found.update((r.site, r.device) for r in conn.execute(stmt))
    return sorted(found)


def _words(text: str) -> tuple[str, ...]:
    value: Iterable[Any] = json.loads(text) if text else ()
    return tuple(str(v) for v in value)


# --------------------------------------------------------------------------- device health

def gaps(store: Store, site: str | None = None, device: str | None = None) -> list[dict[str, Any]]:
    """Missing seq ranges per (site, device, epoch): answers a device numbered but central lacks.

    ``seq`` is gap-free from 1 per (device, epoch), so every hole below the
    highest stored seq is an answer not (yet) received: ``{site, device,
    epoch, first, last}`` with both ends missing. Answers after the highest
    stored seq cannot be seen from here (the device's status backlog says).
    """
    # Only epochs holding fewer answers than their highest seq have holes (the store
    # keeps both per epoch as answers arrive): the window query reads just those.
    e = epochs_table.c
    holed = sa.select(e.site, e.device, e.epoch).where(e.answers < e.max_seq)
    if site is not None:
        holed = holed.where(e.site == site)
    if device is not None:
        holed = holed.where(e.device == device)
    with store.engine.connect() as conn:
        suspects = [tuple(r) for r in conn.execute(holed)]
    if not suspects:
        return []
    t = events_table.c
    prev = sa.func.lag(t.seq).over(partition_by=(t.site, t.device, t.epoch), order_by=t.seq)
    inner = (sa.select(t.site, t.device, t.epoch, t.seq, prev.label("prev"))
             .where(sa.tuple_(t.site, t.device, t.epoch).in_(suspects)))
    sub = inner.subquery()
    previous = sa.func.coalesce(sub.c.prev, 0)  # the first stored seq of an epoch: a hole from 1
    stmt = (sa.select(sub.c.site, sub.c.device, sub.c.epoch, (previous + 1).label("first"),
                      (sub.c.seq - 1).label("last"))
            .where(sub.c.seq - previous > 1)
            .order_by(sub.c.site, sub.c.device, sub.c.epoch, sub.c.seq))
    with store.engine.connect() as conn:
        return [{**dict(r._mapping), "first": int(r.first), "last": int(r.last)} for r in conn.execute(stmt)]


def device_rows(store: Store, site: str | None = None) -> list[dict[str, Any]]:
    """Every device's latest status, by site and device; ``health`` and ``config_error`` decoded."""
    stmt = sa.select(devices_table).order_by(devices_table.c.site, devices_table.c.device)
    if site is not None:
        stmt = stmt.where(devices_table.c.site == site)
    with store.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(stmt)]
    for row in rows:
        last_seen = utc(row["last_seen"])
        row["last_seen"] = protocol.utc_timestamp(last_seen)
        for name in ("health", "config_error"):
            row[name] = None if row[name] is None else json.loads(row[name])
        row.update(_fleet_facts(row, last_seen))
    return rows


def _fleet_facts(row: dict[str, Any], last_seen: datetime) -> dict[str, Any]:
    """What the fleet view reads from a status's health: uptime, the last restart, alarms, test mode.

    The last restart is the status's own ``ts`` (or, without one, when central
    received it) minus ``uptime_s``, the kiosk process's age when it sent it.
    """
    health = row["health"] or {}
    uptime = health.get("uptime_s")
    restarted_at = None
    if isinstance(uptime, int | float):
        sent = protocol.parse_timestamp(row["status_ts"]) if row["status_ts"] else last_seen
        restarted_at = protocol.utc_timestamp(sent - timedelta(seconds=float(uptime)))
    alarms = [{"code": a["code"], "message": a["message"]} for a in health.get("alarms") or []]
    return {"uptime_s": uptime, "restarted_at": restarted_at, "alarms": alarms,
            "test_mode": any(a["code"] == protocol.TEST_MODE_ALARM for a in alarms)}



#: A device known only from the gaps in its answers (no status yet).
_NO_STATUS: Final[dict[str, Any]] = {
    "state": None, "last_seen": None, "status_ts": None, "version": None, "backlog": None,
    "oldest_pending_age_s": None, "clock_synced": None, "last_error": None, "config_error": None, "health": None,
    "uptime_s": None, "restarted_at": None, "alarms": [], "test_mode": False,
}


def device_health(store: Store, site: str | None = None, device: str | None = None) -> list[dict[str, Any]]:
    """Fleet health: every device with a status or a missing seq range, by site and device.

    Each row is :func:`device_rows`'s (all None for a device that sent answers
    with holes but no status yet) plus ``gaps``: its ``{epoch, first, last}``
    missing ranges (:func:`gaps`). What ``GET /api/devices`` answers and the
    dashboard's kiosk health shows.
    """
    known: dict[Desk, dict[str, Any]] = {}
    for row in device_rows(store, site):
        if device is None or row["device"] == device:
            known[(row["site"], row["device"])] = {**row, "gaps": []}
    for gap in gaps(store, site, device):
        key = (gap["site"], gap["device"])
        entry = known.setdefault(key, {"site": key[0], "device": key[1], **_NO_STATUS, "gaps": []})
        entry["gaps"].append({"epoch": gap["epoch"], "first": gap["first"], "last": gap["last"]})
    return [known[k] for k in sorted(known)]

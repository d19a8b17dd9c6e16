"""The live feed: which answers a viewer sees one by one, and when (per-desk privacy).

A desk's ``feed`` mode (``[sites.<site>.desks.<desk>]``, docs/configuration.md):

- ``live``: its answers appear as soon as they are stored;
- ``delayed``: they appear ``delay_min`` minutes after central stored them;
- ``aggregated``: they never appear one by one; the feed sends a ``tick``
  naming the desk instead, so a page can refresh its numbers.

The server applies this, never the browser: an answer held back is not sent.

**Cursor.** A feed resumes from a cursor (the SSE ``id:``, which a browser sends
back as ``Last-Event-ID``). Answers are stored with a monotonic ingest id, but a
delayed desk's answer is sent later than live answers with larger ids, so one
number cannot say what was sent. The cursor is ``L`` followed by ``;M:D`` for
each delay in use: every answer of a live (or aggregated) desk up to ingest id
``L`` has been sent (or ticked), and every answer of the desks delayed by ``M``
minutes up to ``D``. Each part only grows, so nothing is sent twice or skipped
(answers are committed in ingest-id order: central/store.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from central.config import CentralConfig, DeskConfig
from central.store import Store, _event, events


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a feed stands: the live part and one part per delay (minutes -> ingest id)."""

    live: int
    delayed: tuple[tuple[int, int], ...] = ()

    def __str__(self) -> str:
        return str(self.live) + "".join(f";{m}:{d}" for m, d in self.delayed)

    def part(self, minutes: int) -> int | None:
        return dict(self.delayed).get(minutes)

    @classmethod
    def parse(cls, text: str) -> Cursor | None:
        """A cursor from its text (a plain ingest id is a cursor too); None if it is not one."""
        head, *rest = text.strip().split(";")
        if not head.isdigit():
            return None
        parts: dict[int, int] = {}
        for item in rest:
            minutes, sep, upto = item.partition(":")
            if not (sep and minutes.isdigit() and upto.isdigit()):
                return None
            parts[int(minutes)] = int(upto)
        return cls(int(head), tuple(sorted(parts.items())))


@dataclass(frozen=True, slots=True)
class Item:
    """One thing to send: ``kind`` ``feedback`` (``data`` is the event) or ``tick`` (``data`` names the desk)."""

    kind: str
    data: dict[str, Any]
    cursor: Cursor


class Feed:
    """The answers one viewer may see, filtered to a site and desk.

    Args:
        store: the store to read.
        config: sites, desks and their feed modes.
        site: only this site's answers (None: every site).
        device: only this desk's answers (None: every desk).
    """

    def __init__(self, store: Store, config: CentralConfig, *, site: str | None = None,
                 device: str | None = None) -> None:
        self.store, self.config, self.site, self.device = store, config, site, device
        held: dict[int, list[tuple[str, str]]] = {}
        hidden: list[tuple[str, str]] = []
        for site_cfg in config.sites.values():
            for desk in site_cfg.desks.values():
                if desk.feed == "delayed":
                    held.setdefault(desk.delay_min, []).append((site_cfg.slug, desk.slug))
                elif desk.feed == "aggregated":
                    hidden.append((site_cfg.slug, desk.slug))
        #: minutes -> the desks delayed by that much
        self.delays = dict(sorted(held.items()))
        self.aggregated = frozenset(hidden)

    def mode(self, site: str, device: str) -> DeskConfig:
        return self.config.site(site).desk(device)

    # ----------------------------------------------------------------- queries
    def _scope(self) -> list[ColumnElement[bool]]:
        clauses: list[ColumnElement[bool]] = []
        if self.site is not None:
            clauses.append(events.c.site == self.site)
        if self.device is not None:
            clauses.append(events.c.device == self.device)
        return clauses

    @staticmethod
    def _among(desks: Iterable[tuple[str, str]]) -> ColumnElement[bool]:
        return sa.or_(sa.false(), *(sa.and_(events.c.site == s, events.c.device == d) for s, d in desks))

    def _not_held(self) -> ColumnElement[bool]:
        return sa.not_(self._among([d for desks in self.delays.values() for d in desks]))

    def start(self, now: datetime | None = None) -> Cursor:
        """The cursor of "now": the next answer stored (or released from a delay) will be sent."""
        now = now or datetime.now(UTC)
        with self.store.engine.connect() as conn:
            live = conn.execute(sa.select(sa.func.coalesce(sa.func.max(events.c.ingest_id), 0))).scalar_one()
            parts = []
            for minutes, desks in self.delays.items():
                upto = conn.execute(
                    sa.select(sa.func.coalesce(sa.func.max(events.c.ingest_id), 0))
                    .where(self._among(desks), events.c.received_at <= now - timedelta(minutes=minutes))
                ).scalar_one()
                parts.append((minutes, int(upto)))
        return Cursor(int(live), tuple(parts))

    def recent(self, limit: int = 50, now: datetime | None = None) -> tuple[list[dict[str, Any]], Cursor]:
        """The newest answers a viewer may see now, newest first, and the cursor to go on from.

        The cursor is taken first: an answer stored meanwhile may then be both
        in the list and sent by the feed (a page drops the second copy by its
        ingest id), but none is missed.
        """
        now = now or datetime.now(UTC)
        cursor = self.start(now)
        visible = [self._not_held()]
        for minutes, desks in self.delays.items():
            visible.append(sa.and_(self._among(desks), events.c.received_at <= now - timedelta(minutes=minutes)))
        stmt = (sa.select(events)
                .where(*self._scope(), sa.not_(self._among(self.aggregated)), sa.or_(*visible))
                .order_by(events.c.ingest_id.desc()).limit(limit))
        with self.store.engine.connect() as conn:
            return [_event(r) for r in conn.execute(stmt)], cursor

    def poll(self, cursor: Cursor, limit: int = 200,
             now: datetime | None = None) -> tuple[list[Item], Cursor]:
        """What to send after ``cursor``: ``feedback`` items (an event) and ``tick`` items ({site, device}).

        Returns the items in sending order, each with the cursor to resume
        from once it is sent, and the cursor after all of them.
        """
        now = now or datetime.now(UTC)
        out: list[Item] = []
        ticks: set[tuple[str, str]] = set()
        with self.store.engine.connect() as conn:
            # Read the newest id first: ids become visible in order (central/store.py), so every
            # answer up to it is committed, and the query below, made later, sees all of them.
            newest = int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(events.c.ingest_id), 0))).scalar_one())
            rows = conn.execute(
                sa.select(events).where(events.c.ingest_id > cursor.live, *self._scope(), self._not_held())
                .order_by(events.c.ingest_id).limit(limit)).all()
            for row in rows:
                event = _event(row)
                key = (event["site"], event["device"])
                if key in self.aggregated:
                    ticks.add(key)
                else:
                    out.append(Item("feedback", event, Cursor(event["ingest_id"], cursor.delayed)))
            if len(rows) == limit:
                live = int(rows[-1].ingest_id)  # more to read: go on from the last one next time
            else:  # everything of ours up to `newest` was read (rows of other desks included)
                live = max(cursor.live, newest, int(rows[-1].ingest_id) if rows else 0)
            parts = dict(cursor.delayed)
            for minutes in list(parts):
                if minutes not in self.delays:
                    del parts[minutes]  # a delay no longer configured
            for minutes, desks in self.delays.items():
                upto = cursor.part(minutes)
                if upto is None:  # a delay added since the cursor was made: start it at "now"
                    parts[minutes] = self._released_upto(conn, desks, minutes, now)
                    continue
                released = conn.execute(
                    sa.select(events).where(events.c.ingest_id > upto, *self._scope(), self._among(desks))
                    .order_by(events.c.ingest_id).limit(limit)).all()
                for row in released:
                    if _aware(row.received_at) > now - timedelta(minutes=minutes):
                        break  # not yet; later ones are younger still
                    upto = parts[minutes] = int(row.ingest_id)
                    out.append(Item("feedback", _event(row), Cursor(live, tuple(sorted(parts.items())))))
        final = Cursor(live, tuple(sorted(parts.items())))
        for site, device in sorted(ticks):
            out.append(Item("tick", {"site": site, "device": device}, final))
        if out and out[-1].kind == "feedback" and out[-1].cursor.live != live:
            out[-1] = Item("feedback", out[-1].data, final)  # the last live one also covers the rows it skipped
        return out, final

    def _released_upto(self, conn: sa.Connection, desks: list[tuple[str, str]], minutes: int,
                       now: datetime) -> int:
        return int(conn.execute(
            sa.select(sa.func.coalesce(sa.func.max(events.c.ingest_id), 0))
            .where(self._among(desks), events.c.received_at <= now - timedelta(minutes=minutes))).scalar_one())


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value

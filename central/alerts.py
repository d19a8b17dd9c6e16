"""Alerts in the store: raised once, acknowledged with a comment, and queued for sending.

The tables are :data:`central.store.alerts`, ``alert_acks``, ``alert_conditions``
and ``alert_deliveries``; this module owns their SQL (as :mod:`central.sessions`
owns the sessions'). What raises an alert is :mod:`central.alertrules`; what
sends one is :mod:`central.notify`. docs/central.md, "Alerts", says how each
kind is computed.

**Once.** Every alert has a key made only from what every collector reads
alike (the rule, the site and desk, and the time the alert is about), and
``alerts.key`` is unique. A raise is one ``INSERT … SELECT … WHERE NOT EXISTS
… ON CONFLICT (key) DO NOTHING``, the first statement of its transaction (on
PostgreSQL after the store's insert lock, so raises are serialised; on SQLite
the statement takes the write lock before it reads), so neither two collectors
with the same key nor two with overlapping windows raise twice.

**Deliveries.** A raise (not a late one) and an acknowledgement add one
``alert_deliveries`` row per channel in the same transaction: a durable queue
that the sender (:mod:`central.notify`) claims row by row, so a crash never
loses one and two senders never send one twice (short of a crash mid-send).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from central.config import CentralConfig
from central.i18n import N_
from central.store import Store, alert_acks, alert_conditions, alert_deliveries, alerts, utc
from sync import protocol

#: The kinds of alert (``kind`` in alert.v1.json).
UNHAPPY: Final = "unhappy"
OFFLINE: Final = "offline"
BACKLOG: Final = "backlog"
TEST_MODE: Final = "test-mode"
REFUSED_SURVEY: Final = "refused-survey"
KINDS: Final = (UNHAPPY, OFFLINE, BACKLOG, TEST_MODE, REFUSED_SURVEY)
#: Kinds about a kiosk's condition: they clear when it ends.
CONDITIONS: Final = (OFFLINE, BACKLOG, TEST_MODE, REFUSED_SURVEY)
#: The words for each kind, as pages show them.
KIND_WORDS: Final = {UNHAPPY: N_("Unhappy customers"), OFFLINE: N_("Kiosk offline"), BACKLOG: N_("Answers held back"),
                     TEST_MODE: N_("Left in test mode"), REFUSED_SURVEY: N_("Survey refused")}

#: Delivery channels.
MQTT: Final = "mqtt"
WEBHOOK: Final = "webhook"
EMAIL: Final = "email"
#: The longest comment kept with an acknowledgement (characters).
MAX_COMMENT: Final = 500
#: The ``device`` part of a key for a whole site (an underscore: never a desk slug).
SITE_PART: Final = "_site"


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert as stored."""

    alert_id: int
    key: str
    kind: str
    site: str
    device: str | None
    raised_at: datetime
    since: datetime
    until: datetime | None
    late: bool
    answers: int | None
    unhappy: int | None
    message: str
    cleared_at: datetime | None
    acked_at: datetime | None
    acked_by: str | None

    @property
    def open(self) -> bool:
        """Not acknowledged, and (for a kiosk's condition) the condition still holds."""
        return self.acked_at is None and self.cleared_at is None

    def payload(self, state: str = "raised", *, at: datetime | None = None, by: str | None = None,
                message: str | None = None) -> dict[str, Any]:
        """The alert as ``alert.v1`` (what is published on ``{site}/alerts`` and POSTed to the webhook)."""
        body: dict[str, Any] = {"schema": protocol.SCHEMA_VERSION, "key": self.key, "site": self.site,
                                "kind": self.kind, "state": state,
                                "ts": protocol.utc_timestamp(at or self.raised_at),
                                "message": (message if message is not None else self.message)[:500]}
        if self.device is not None:
            body["device"] = self.device
        if by is not None:
            body["by"] = by[:100]
        return body


@dataclass(frozen=True, slots=True)
class Ack:
    """One acknowledgement: who, when, and what they said."""

    ack_id: int
    alert_id: int
    at: datetime
    by: str
    comment: str


@dataclass(frozen=True, slots=True)
class Candidate:
    """An alert a rule found (:mod:`central.alertrules`), to raise unless it was already.

    ``overlap``: for a window rule, no alert of the same kind, site and desk may
    have a window end within this much of ``until`` (one alert per run of
    unhappy answers); None for a condition (one alert while it holds).
    """

    key: str
    kind: str
    site: str
    device: str | None
    since: datetime
    until: datetime | None
    late: bool
    message: str
    answers: int | None = None
    unhappy: int | None = None
    overlap: timedelta | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """One thing to send: an alert raised (``ack`` None) or acknowledged, on one channel."""

    delivery_id: int
    channel: str
    attempts: int
    alert: Alert
    ack: Ack | None


def key_time(moment: datetime) -> str:
    """A time as it appears in a key: ``20261129T101500.250000Z`` (UTC, to the microsecond)."""
    return utc(moment).strftime("%Y%m%dT%H%M%S.%fZ")


def channels(config: CentralConfig, *, acknowledged: bool = False) -> list[str]:
    """The channels an alert (or its acknowledgement) is sent on: MQTT always, the webhook and e-mail
    when configured (e-mail for raised alerts only)."""
    out = [MQTT]
    if config.alerts.webhook.url:
        out.append(WEBHOOK)
    if not acknowledged and config.mail.configured and config.alerts.email_to:
        out.append(EMAIL)
    return out


def _insert(conn: Connection) -> Any:
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


def _same_place(site: str, device: str | None) -> sa.ColumnElement[bool]:
    where = alerts.c.site == site
    return sa.and_(where, alerts.c.device.is_(None) if device is None else alerts.c.device == device)


def raise_alert(store: Store, cand: Candidate, *, now: datetime | None = None,
                send_on: Sequence[str] = (MQTT,)) -> Alert | None:
    """Raise ``cand`` once: the new alert, or None when it (or one overlapping it) was raised before.

    Args:
        store: the store.
        cand: what a rule found.
        now: central's clock (the alert's ``raised_at``).
        send_on: the channels to queue it on (:func:`channels`); a late alert is queued on none.
    """
    now = now or datetime.now(UTC)
    values = {"key": cand.key, "kind": cand.kind, "site": cand.site, "device": cand.device, "raised_at": now,
              "since": cand.since, "until": cand.until, "late": cand.late, "answers": cand.answers,
              "unhappy": cand.unhappy, "message": cand.message[:2000]}
    if cand.overlap is not None and cand.until is not None:
        clash = sa.and_(alerts.c.until > cand.until - cand.overlap, alerts.c.until < cand.until + cand.overlap)
    else:
        clash = alerts.c.cleared_at.is_(None)
    exists = sa.exists().where(alerts.c.kind == cand.kind, _same_place(cand.site, cand.device), clash)
    names = list(values)
    source = sa.select(*[sa.bindparam(f"v_{n}", values[n], type_=alerts.c[n].type) for n in names]).where(~exists)
    with store.transaction() as conn:
        stmt = (_insert(conn)(alerts).from_select(names, source)
                .on_conflict_do_nothing(index_elements=["key"]).returning(alerts.c.alert_id))
        alert_id = conn.execute(stmt).scalar()
        if alert_id is None:
            return None
        if not cand.late and send_on:
            conn.execute(alert_deliveries.insert(), [
                {"alert_id": alert_id, "ack_id": None, "channel": c, "state": "pending", "attempts": 0,
                 "next_at": now} for c in send_on])
        row = conn.execute(sa.select(alerts).where(alerts.c.alert_id == alert_id)).one()
    return _alert(row)


# ---------------------------------------------------------------------------- kiosk conditions

def conditions(store: Store) -> dict[tuple[str, str, str], datetime]:
    """Every condition that holds: (kind, site, device) -> since when (as first seen)."""
    with store.engine.connect() as conn:
        return {(r.kind, r.site, r.device): utc(r.since) for r in conn.execute(sa.select(alert_conditions))}


def raised_conditions(store: Store) -> set[str]:
    """Keys of the condition alerts not cleared yet (raising one of them again would be a no-op)."""
    with store.engine.connect() as conn:
        return set(conn.execute(sa.select(alerts.c.key).where(alerts.c.kind.in_(CONDITIONS),
                                                              alerts.c.cleared_at.is_(None))).scalars())


def note_condition(store: Store, kind: str, site: str, device: str, since: datetime) -> datetime:
    """Record that a condition holds from ``since`` unless it was recorded already; since when it holds."""
    with store.transaction() as conn:
        conn.execute(_insert(conn)(alert_conditions).values(kind=kind, site=site, device=device, since=since)
                     .on_conflict_do_nothing(index_elements=["kind", "site", "device"]))
        found = conn.execute(sa.select(alert_conditions.c.since).where(
            alert_conditions.c.kind == kind, alert_conditions.c.site == site,
            alert_conditions.c.device == device)).scalar_one()
    return utc(found)


def end_condition(store: Store, kind: str, site: str, device: str, *, now: datetime | None = None) -> None:
    """A condition no longer holds: forget it and mark its alert cleared."""
    now = now or datetime.now(UTC)
    with store.transaction() as conn:
        conn.execute(alert_conditions.delete().where(
            alert_conditions.c.kind == kind, alert_conditions.c.site == site, alert_conditions.c.device == device))
        conn.execute(alerts.update().where(alerts.c.kind == kind, _same_place(site, device),
                                           alerts.c.cleared_at.is_(None)).values(cleared_at=now))


# ---------------------------------------------------------------------------- acknowledging

class AlertNotFound(LookupError):
    """No alert has that id."""


def acknowledge(store: Store, alert_id: int, by: str, comment: str, *, now: datetime | None = None,
                send_on: Sequence[str] = (MQTT,)) -> Ack:
    """Add an acknowledgement (the first one marks the alert acknowledged) and queue it for sending.

    Raises:
        AlertNotFound: no alert ``alert_id``.
    """
    now = now or datetime.now(UTC)
    comment = " ".join(comment.split())[:MAX_COMMENT]
    with store.transaction() as conn:
        found = conn.execute(sa.select(alerts.c.alert_id).where(alerts.c.alert_id == alert_id)).first()
        if found is None:
            raise AlertNotFound(alert_id)
        ack_id = conn.execute(alert_acks.insert().values(alert_id=alert_id, at=now, by=by[:64], comment=comment)
                              .returning(alert_acks.c.ack_id)).scalar_one()
        conn.execute(alerts.update().where(alerts.c.alert_id == alert_id, alerts.c.acked_at.is_(None))
                     .values(acked_at=now, acked_by=by[:64]))
        if send_on:
            conn.execute(alert_deliveries.insert(), [
                {"alert_id": alert_id, "ack_id": ack_id, "channel": c, "state": "pending", "attempts": 0,
                 "next_at": now} for c in send_on])
    return Ack(int(ack_id), alert_id, now, by[:64], comment)


# ---------------------------------------------------------------------------- reading

def listing(store: Store, *, site: str | None = None, device: str | None = None, open_only: bool = False,
            live_only: bool = False, limit: int = 200) -> list[Alert]:
    """Alerts, newest first.

    Args:
        site: only this site's.
        device: only this desk's and its site's as a whole (with ``site``).
        open_only: only those neither acknowledged nor cleared.
        live_only: leave out late ones.
        limit: at most this many.
    """
    stmt = sa.select(alerts).order_by(alerts.c.alert_id.desc()).limit(limit)
    if site is not None:
        stmt = stmt.where(alerts.c.site == site)
    if device is not None:
        stmt = stmt.where(sa.or_(alerts.c.device == device, alerts.c.device.is_(None)))
    if open_only:
        stmt = stmt.where(alerts.c.acked_at.is_(None), alerts.c.cleared_at.is_(None))
    if live_only:
        stmt = stmt.where(alerts.c.late.is_(False))
    with store.engine.connect() as conn:
        return [_alert(r) for r in conn.execute(stmt)]


def get(store: Store, alert_id: int) -> Alert | None:
    """One alert, or None."""
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(alerts).where(alerts.c.alert_id == alert_id)).first()
    return None if row is None else _alert(row)


def acks(store: Store, alert_ids: Iterable[int]) -> dict[int, list[Ack]]:
    """The acknowledgements of these alerts, oldest first."""
    ids = sorted(set(alert_ids))
    out: dict[int, list[Ack]] = {i: [] for i in ids}
    if not ids:
        return out
    with store.engine.connect() as conn:
        for r in conn.execute(sa.select(alert_acks).where(alert_acks.c.alert_id.in_(ids))
                              .order_by(alert_acks.c.ack_id)):
            out[int(r.alert_id)].append(_ack(r))
    return out


def deliveries(store: Store, alert_id: int) -> list[dict[str, Any]]:
    """How the alert's deliveries stand: channel, acknowledgement or not, state, attempts, last error."""
    d = alert_deliveries.c
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(
            sa.select(d.channel, d.ack_id, d.state, d.attempts, d.last_error)
            .where(d.alert_id == alert_id).order_by(d.delivery_id))]


# ---------------------------------------------------------------------------- the sending queue

def due(store: Store, *, now: datetime | None = None, limit: int = 50) -> list[int]:
    """Ids of deliveries waiting and due, oldest first."""
    now = now or datetime.now(UTC)
    d = alert_deliveries.c
    with store.engine.connect() as conn:
        return [int(i) for i in conn.execute(
            sa.select(d.delivery_id).where(d.state == "pending", d.next_at <= now)
            .order_by(d.next_at, d.delivery_id).limit(limit)).scalars()]


def claim(store: Store, delivery_id: int, *, lease: timedelta, now: datetime | None = None) -> Delivery | None:
    """Take one delivery to send: pushes its ``next_at`` on by ``lease`` (if this sender dies, another
    tries after it) and counts the attempt. None when another sender took it first."""
    now = now or datetime.now(UTC)
    d = alert_deliveries.c
    with store.transaction() as conn:
        taken = conn.execute(alert_deliveries.update()
                             .where(d.delivery_id == delivery_id, d.state == "pending", d.next_at <= now)
                             .values(next_at=now + lease, attempts=d.attempts + 1)).rowcount
        if taken != 1:
            return None
        row = conn.execute(sa.select(alert_deliveries).where(d.delivery_id == delivery_id)).one()
        alert = _alert(conn.execute(sa.select(alerts).where(alerts.c.alert_id == row.alert_id)).one())
        ack = None
        if row.ack_id is not None:
            ack = _ack(conn.execute(sa.select(alert_acks).where(alert_acks.c.ack_id == row.ack_id)).one())
    return Delivery(int(row.delivery_id), row.channel, int(row.attempts), alert, ack)


def sent(store: Store, delivery_id: int, *, now: datetime | None = None) -> None:
    """A delivery went out."""
    with store.transaction() as conn:
        conn.execute(alert_deliveries.update().where(alert_deliveries.c.delivery_id == delivery_id)
                     .values(state="done", done_at=now or datetime.now(UTC), last_error=None))


def failed(store: Store, delivery_id: int, error: str, *, retry_at: datetime | None) -> None:
    """A delivery failed: try again at ``retry_at``, or (None) give up."""
    values: dict[str, Any] = {"last_error": error[:2000]}
    if retry_at is None:
        values["state"] = "failed"
    else:
        values["next_at"] = retry_at
    with store.transaction() as conn:
        conn.execute(alert_deliveries.update().where(alert_deliveries.c.delivery_id == delivery_id).values(values))


def _alert(r: Any) -> Alert:
    return Alert(alert_id=int(r.alert_id), key=r.key, kind=r.kind, site=r.site, device=r.device,
                 raised_at=utc(r.raised_at), since=utc(r.since), until=None if r.until is None else utc(r.until),
                 late=bool(r.late), answers=r.answers, unhappy=r.unhappy, message=r.message,
                 cleared_at=None if r.cleared_at is None else utc(r.cleared_at),
                 acked_at=None if r.acked_at is None else utc(r.acked_at), acked_by=r.acked_by)


def _ack(r: Any) -> Ack:
    return Ack(int(r.ack_id), int(r.alert_id), utc(r.at), r.by, r.comment)

"""What raises an alert: the rules of ``[alerts]`` applied to the store (docs/central.md, "Alerts").

Two kinds of rule:

- **Unhappy answers** (:class:`AnswerWatcher`): follows new answers by ingest id
  and, for each desk (or site) they touch, looks at every window of
  ``window_min`` minutes of the answers' *own* time (the stored ``ts_utc``, the
  device's clock or the re-timed one) that ends at a counted answer: at least
  ``min_answers`` counted answers with at least ``unhappy_pct`` % unhappy (the
  two lowest faces of their scale) raise an alert. Counted answers are those
  the scores count: not flagged (``rapid_repeat``, ``test``), and with a known
  time (an answer still placed at its receipt time, its clock unset, waits for
  its re-timing and is left out). An alert whose window ended more than
  ``late_after_min`` before central raises it (a backlog after an outage) is
  *late*: kept and listed, never sent.
- **Kiosk conditions** (:func:`check_devices`): from each kiosk's latest status:
  offline longer than ``offline_min``; its oldest unconfirmed answer older than
  ``backlog_min``; in test mode longer than ``test_mode_min`` (since central first
  saw the ``test-mode`` alarm); a refused survey (``config_error``). One alert
  while the condition holds; it clears when the condition ends.

Both only find candidates; :func:`central.alerts.raise_alert` raises each once.
"""

from __future__ import annotations

import json
import logging
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa

from central import alerts as book
from central.alerts import Alert, Candidate
from central.config import AlertRule, CentralConfig
from central.store import EXCLUDED_FLAGS, RETIRED, Store, devices, events, utc
from sync import protocol

log = logging.getLogger("deskpulse.central.alerts")

#: New answers read per step at most (a step after a flood takes them in one go: each step reads
#: every touched desk's windows again, so fewer, larger steps cost less per answer).
STEP_ANSWERS: Final = 20000


@dataclass(frozen=True, slots=True)
class Answer:
    """A counted answer as the unhappy rule sees it."""

    at: datetime
    unhappy: bool


#: The two lowest faces of any scale (3, 4 or 5 faces) are unhappy.
UNHAPPY_MAX: Final = 2


def is_unhappy(rating: int) -> bool:
    """The two lowest faces of any scale (3, 4 or 5 faces)."""
    return rating <= UNHAPPY_MAX


def unhappy_windows(answers: Sequence[Answer], rule: AlertRule, *, ends_from: datetime | None = None,
                    ends_to: datetime | None = None) -> list[tuple[datetime, datetime, int, int]]:
    """Windows meeting ``rule``: (start, end, answers, unhappy), each ending at an answer.

    A window is (end - window_min, end], the end an answer's time in
    [``ends_from``, ``ends_to``]. After a window that meets the rule, the next
    may end no earlier than ``window_min`` later (one alert per run, as
    :func:`central.alerts.raise_alert` also ensures across collectors).

    Args:
        answers: counted answers of one desk or site, sorted by time.
    """
    width = timedelta(minutes=rule.window_min)
    times = [a.at for a in answers]
    unhappy_before = [0]
    for a in answers:
        unhappy_before.append(unhappy_before[-1] + a.unhappy)
    found: list[tuple[datetime, datetime, int, int]] = []
    blocked_until: datetime | None = None
    first = 0 if ends_from is None else bisect_left(times, ends_from)
    last = len(times) if ends_to is None else bisect_right(times, ends_to)
    for i in range(first, last):
        end = times[i]
        if blocked_until is not None and end < blocked_until:
            continue
        if i + 1 < len(times) and times[i + 1] == end:
            continue  # answers at the same instant: the window ends after the last of them
        lo = bisect_right(times, end - width)
        count = i + 1 - lo
        bad = unhappy_before[i + 1] - unhappy_before[lo]
        if count >= rule.min_answers and bad * 100 >= rule.unhappy_pct * count:
            found.append((end - width, end, count, bad))
            blocked_until = end + width
    return found


def _names(config: CentralConfig, site: str, device: str | None) -> str:
    site_cfg = config.site(site)
    if device is None:
        return site_cfg.name
    return f"{site_cfg.desk(device).name}, {site_cfg.name}"


class AnswerWatcher:
    """Follows new answers by ingest id and raises unhappy-answer alerts.

    Starts with the answers received in the last ``late_after_min`` minutes (a
    restarted collector looks again at what it may have missed; the keys make
    that harmless). Several collectors each run one.
    """

    def __init__(self, store: Store, config: CentralConfig) -> None:
        self.store, self.config = store, config
        self.cursor: int | None = None

    def _start(self, now: datetime) -> int:
        since = now - timedelta(minutes=self.config.alerts.late_after_min)
        with self.store.engine.connect() as conn:
            first = conn.execute(sa.select(sa.func.min(events.c.ingest_id)).where(events.c.received_at >= since)
                                 ).scalar()
            if first is None:
                first = (conn.execute(sa.select(sa.func.max(events.c.ingest_id))).scalar() or 0) + 1
        return int(first) - 1

    def step(self, now: datetime | None = None) -> list[Alert]:
        """Look at the answers stored since the last step; the alerts raised."""
        now = now or datetime.now(UTC)
        if self.cursor is None:
            self.cursor = self._start(now)
        e = events.c
        with self.store.engine.connect() as conn:
            ids = (sa.select(e.ingest_id).where(e.ingest_id > self.cursor).order_by(e.ingest_id)
                   .limit(STEP_ANSWERS).subquery())
            last = conn.execute(sa.select(sa.func.max(ids.c.ingest_id))).scalar()
            if last is None:
                return []
            # Each desk's earliest and latest new counted answer (a flood is thousands of rows, a few desks).
            desks = conn.execute(sa.select(e.site, e.device, sa.func.min(e.ts_utc), sa.func.max(e.ts_utc))
                                 .where(e.ingest_id > self.cursor, e.ingest_id <= last, *_counted_sql())
                                 .group_by(e.site, e.device)).all()
        touched: dict[tuple[str, str | None], list[datetime]] = {}
        alerts_cfg = self.config.alerts
        for site, device, first, latest in desks:
            scope = alerts_cfg.scope_of(site)
            for key in ((site, device) if scope in ("desk", "both") else None,
                        (site, None) if scope in ("site", "both") else None):
                if key is not None and alerts_cfg.rule(*key).enabled:
                    touched.setdefault(key, []).extend((utc(first), utc(latest)))
        raised: list[Alert] = []
        for (site, device), times in sorted(touched.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
            raised += self._check(site, device, min(times), max(times), now)
        self.cursor = int(last)
        return raised

    def _check(self, site: str, device: str | None, lo: datetime, hi: datetime, now: datetime) -> list[Alert]:
        rule = self.config.alerts.rule(site, device)
        width = timedelta(minutes=rule.window_min)
        # Only counted answers, and only the two columns the rule reads: in a flood every step reads
        # each touched desk's last window_min again, and per row Python costs more than the database.
        params = {"site": site, "lo": lo - width, "hi": hi + width}
        if device is not None:
            params["device"] = device
        with self.store.engine.connect() as conn:
            answers = [Answer(utc(at), rating <= UNHAPPY_MAX)
                       for at, rating in conn.execute(_WINDOW_READS[device is not None], params)]
        raised = []
        late_after = timedelta(minutes=self.config.alerts.late_after_min)
        tz = self.config.site(site).tz
        for start, end, count, bad in unhappy_windows(answers, rule, ends_from=lo, ends_to=hi + width):
            late = now - end > late_after
            when = f"{start.astimezone(tz):%H:%M}–{end.astimezone(tz):%H:%M}"
            if start.astimezone(tz).date() != now.astimezone(tz).date():
                when = f"{start.astimezone(tz):%a %d %b} {when}"
            message = (f"{_names(self.config, site, device)}: {bad} of {count} answers unhappy "
                       f"({round(100 * bad / count)} %) in {rule.window_min} min, {when}")
            cand = Candidate(key=f"{book.UNHAPPY}:{site}:{device or book.SITE_PART}:{book.key_time(end)}",
                             kind=book.UNHAPPY, site=site, device=device, since=start, until=end, late=late,
                             message=message, answers=count, unhappy=bad, overlap=width)
            alert = book.raise_alert(self.store, cand, now=now, send_on=book.channels(self.config))
            if alert is not None:
                log.warning("alert%s: %s", " (late)" if late else "", message)
                raised.append(alert)
            else:
                log.info("alert %s was raised already (by another collector, or before a restart)", cand.key)
        return raised


def _counted_sql() -> tuple[sa.ColumnElement[bool], ...]:
    """Counted answers as SQL conditions on ``events``: a known time, and no flag of
    :data:`central.store.EXCLUDED_FLAGS` (flags are stored as a JSON array of plain words)."""
    e = events.c
    return (e.time_source != "received",
            *(sa.not_(e.flags.contains(f'"{flag}"', autoescape=True)) for flag in sorted(EXCLUDED_FLAGS)))


def _window_read(per_desk: bool) -> sa.Select[Any]:
    """A site's (or one desk's) counted answers' time and rating between ``lo`` and ``hi``, by time."""
    e = events.c
    stmt = (sa.select(e.ts_utc, e.rating)
            .where(e.site == sa.bindparam("site"), e.ts_utc > sa.bindparam("lo", type_=e.ts_utc.type),
                   e.ts_utc < sa.bindparam("hi", type_=e.ts_utc.type), *_counted_sql())
            .order_by(e.ts_utc))
    return stmt.where(e.device == sa.bindparam("device")) if per_desk else stmt


#: Built once (SQLAlchemy builds and looks up the compiled text anew for each statement object made).
_WINDOW_READS: Final = {False: _window_read(False), True: _window_read(True)}


def check_devices(store: Store, config: CentralConfig, now: datetime | None = None) -> list[Alert]:
    """Raise (or clear) the kiosk-condition alerts from every kiosk's latest status; the alerts raised."""
    now = now or datetime.now(UTC)
    held = book.conditions(store)
    raised_already = book.raised_conditions(store)
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(devices)).all()
    raised: list[Alert] = []
    seen: set[tuple[str, str, str]] = set()
    for row in rows:
        if row.state == RETIRED:
            continue
        rule = config.alerts.rule(row.site, row.device)
        if not rule.enabled:
            continue
        health: dict[str, Any] = json.loads(row.health) if row.health else {}
        last_seen = utc(row.last_seen)
        found: list[tuple[str, datetime, int, str]] = []  # kind, since (if new), minutes needed, message
        name = _names(config, row.site, row.device)
        if row.state == "offline" and rule.offline_min:
            found.append((book.OFFLINE, last_seen, rule.offline_min,
                          f"{name}: offline for more than {rule.offline_min} min"))
        age = row.oldest_pending_age_s
        if rule.backlog_min and age is not None and age >= rule.backlog_min * 60:
            found.append((book.BACKLOG, last_seen - timedelta(seconds=float(age)), 0,
                          f"{name}: {row.backlog or 0} answers not yet delivered, the oldest "
                          f"{int(age // 60)} min old (more than {rule.backlog_min} min)"))
        alarms = health.get("alarms") or []
        if rule.test_mode_min and any(a.get("code") == protocol.TEST_MODE_ALARM for a in alarms):
            found.append((book.TEST_MODE, now, rule.test_mode_min,
                          f"{name}: in test mode for more than {rule.test_mode_min} min; its answers are not "
                          "counted"))
        if rule.refused_survey and row.config_error:
            reason = str((json.loads(row.config_error) or {}).get("reason", ""))[:300]
            found.append((book.REFUSED_SURVEY, now, 0, f"{name}: refused the survey configuration: {reason}"))
        for kind, since_if_new, minutes, message in found:
            ident = (kind, row.site, row.device)
            seen.add(ident)
            since = held.get(ident) or book.note_condition(store, kind, row.site, row.device, since_if_new)
            if now - since < timedelta(minutes=minutes):
                continue
            key = f"{kind}:{row.site}:{row.device}:{book.key_time(since)}"
            if key in raised_already:
                continue  # raised while it holds: nothing to write
            cand = Candidate(key=key, kind=kind,
                             site=row.site, device=row.device, since=since, until=None, late=False,
                             message=message)
            alert = book.raise_alert(store, cand, now=now, send_on=book.channels(config))
            if alert is not None:
                log.warning("alert: %s", message)
                raised.append(alert)
    for ident in held.keys() - seen:
        book.end_condition(store, *ident, now=now)
    return raised

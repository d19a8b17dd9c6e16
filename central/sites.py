"""Sites and desks as the dashboard shows them: central.toml merged with what an admin set on the sites page.

Precedence (docs/configuration.md, "Sites edited in the dashboard"): value by
value, what an admin saved on ``/admin/sites`` wins; central.toml supplies every
value nobody saved there (and the defaults for a site it does not name). "Use
central.toml again" on the page forgets a site's saved values. A restart is never
needed: :meth:`SiteBook.config` hands every reader (pages, scores, exports, the
feed, the collector's rollups) the merged configuration, rebuilt when the store
says something changed (at most :data:`REFRESH_S` late in another process; at once
in the one that saved it).

Every change is written to ``audit_log`` in the same transaction (who, when,
what: the values before and after); :func:`record` is shared with the survey
editor (:mod:`central.surveys`).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time as clock
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Final
from zoneinfo import available_timezones

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from central import config as central_config
from central.config import WEEKDAYS, CentralConfig, DeskConfig, Hours, SiteConfig
from central.store import Store, audit_log, desk_settings, site_settings
from sync.errors import ConfigError
from sync.protocol import SLUG_RE

log = logging.getLogger("deskpulse.central.sites")

#: Seconds a process may show a site as it was before another process saved a change.
REFRESH_S: Final = 1.0
#: The longest site or desk name accepted.
MAX_NAME: Final = 200


class SiteError(ValueError):
    """A value on the sites page that cannot be used: ``field`` names the form field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@lru_cache(maxsize=1)
def zone_names() -> tuple[str, ...]:
    """Every IANA time zone this machine knows, sorted (the form's suggestions)."""
    return tuple(sorted(available_timezones()))


def hours_text(hours: Hours) -> str:
    """One day's opening hours as the form and central.toml write them: ``08:00-18:00`` or ``closed``."""
    if hours is None:
        return "closed"
    opens, closes = hours
    return f"{opens:%H:%M}-" + ("24:00" if closes == time.max else f"{closes:%H:%M}")


def record(conn: Connection, account: str, action: str, subject: str, detail: Mapping[str, Any]) -> None:
    """Write one audit entry in the caller's transaction."""
    conn.execute(audit_log.insert().values(at=datetime.now(UTC), account=account[:64], action=action,
                                           subject=subject[:140], detail=json.dumps(detail, ensure_ascii=False,
                                                                                    sort_keys=True)))


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One change: who, when, what."""

    at: datetime
    account: str
    action: str
    subject: str
    detail: dict[str, Any]


def audit_entries(store: Store, limit: int = 200) -> list[AuditEntry]:
    """The newest audit entries first."""
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(audit_log).order_by(audit_log.c.audit_id.desc()).limit(limit)).all()
    out = []
    for r in rows:
        at = r.at if r.at.tzinfo else r.at.replace(tzinfo=UTC)
        out.append(AuditEntry(at, r.account, r.action, r.subject, json.loads(r.detail)))
    return out


@dataclass(frozen=True, slots=True)
class SiteEdit:
    """A site's values as the sites page saves them (validated)."""

    name: str
    timezone: str
    hours: dict[int, Hours]
    target: float | None


def parse_site_form(slug: str, form: Mapping[str, str]) -> SiteEdit:
    """The sites page's form for ``slug``: ``name``, ``timezone``, ``hours_mon`` … ``hours_sun``, ``target``.

    Raises:
        SiteError: naming the field and what is wrong.
    """
    name = _name(form.get("name", ""), "name", "site")
    zone = form.get("timezone", "").strip()
    if zone not in zone_names():
        last = zone.rsplit("/", 1)[-1].lower()
        near = [z for z in zone_names() if last and z.lower().endswith(last)]
        hint = f" (did you mean {near[0]}?)" if near else " (an IANA name like Europe/Berlin)"
        raise SiteError("timezone", f"time zone: {zone!r} is not a known time zone{hint}")
    table = {day: form.get(f"hours_{day}", "").strip() for day in WEEKDAYS}
    try:
        hours = central_config._hours("opening hours", slug, table)
    except ConfigError as exc:
        day = next((d for d in WEEKDAYS if f".{d} " in str(exc)), "mon")
        raise SiteError(f"hours_{day}", str(exc).replace(f"opening hours: {slug}.hours.", "opening hours on ")
                        ) from None
    raw_target = form.get("target", "").strip()
    target: float | None = None
    if raw_target:
        try:
            target = float(raw_target.replace(",", "."))
        except ValueError:
            raise SiteError("target", f"target: {raw_target!r} is not a number (an index from 0 to 100, "
                                      "or empty for none)") from None
        if not math.isfinite(target) or not 0 <= target <= 100:
            raise SiteError("target", f"target: {raw_target} must be an index from 0 to 100 (or empty for none)")
    return SiteEdit(name=name, timezone=zone, hours=hours, target=target)


def _name(value: str, field: str, what: str) -> str:
    name = " ".join(value.split())
    if not name:
        raise SiteError(field, f"name: give the {what} a name (it is what staff see instead of the slug)")
    if len(name) > MAX_NAME or not name.isprintable():
        raise SiteError(field, f"name: at most {MAX_NAME} printable characters")
    return name


def _upsert(conn: Connection, table: sa.Table, keys: list[str], values: dict[str, Any]) -> None:
    insert = postgresql.insert(table) if conn.dialect.name == "postgresql" else sqlite.insert(table)
    conn.execute(insert.values(values).on_conflict_do_update(
        index_elements=keys, set_={k: v for k, v in values.items() if k not in keys}))


class SiteBook:
    """The sites and desks every reader sees: central.toml with the dashboard's changes on top.

    Args:
        store: the migrated store.
        base: central's configuration as loaded from central.toml.
        refresh_s: how often to ask the store whether another process saved a change.
    """

    def __init__(self, store: Store, base: CentralConfig, *, refresh_s: float = REFRESH_S,
                 monotonic: Callable[[], float] = clock.monotonic) -> None:
        self.store, self.base, self.refresh_s, self._monotonic = store, base, refresh_s, monotonic
        self._lock = threading.Lock()
        self._config: CentralConfig | None = None
        self._mark: int | None = None
        self._checked = -math.inf
        self._edited: dict[str, frozenset[str]] = {}
        self._edited_desks: frozenset[tuple[str, str]] = frozenset()

    # ------------------------------------------------------------------ reading

    def config(self) -> CentralConfig:
        """The merged configuration (the same object until something changes)."""
        now = self._monotonic()
        with self._lock:
            if self._config is not None and now - self._checked < self.refresh_s:
                return self._config
            with self.store.engine.connect() as conn:
                mark = conn.execute(sa.select(sa.func.max(audit_log.c.audit_id))).scalar()
                if self._config is None or mark != self._mark:
                    self._config = self._merge(conn)
                    self._mark = mark
            self._checked = now
            return self._config

    def edited(self, site: str) -> frozenset[str]:
        """Which of the site's values were set in the dashboard (name, timezone, hours, target)."""
        self.config()
        return self._edited.get(site, frozenset())

    def desk_edited(self, site: str, device: str) -> bool:
        """Whether the desk's name was set in the dashboard."""
        self.config()
        return (site, device) in self._edited_desks

    def invalidate(self) -> None:
        """Read the store again at the next :meth:`config` (after a change this process saved)."""
        with self._lock:
            self._checked = -math.inf

    def _merge(self, conn: Connection) -> CentralConfig:
        sites: dict[str, SiteConfig] = dict(self.base.sites)
        edited: dict[str, frozenset[str]] = {}
        for row in conn.execute(sa.select(site_settings)):
            site = self.base.site(row.site)
            changes: dict[str, Any] = {}
            if row.name is not None:
                changes["name"] = row.name
            if row.timezone is not None and row.timezone in zone_names():
                changes["timezone"] = row.timezone
            elif row.timezone is not None:
                log.error("site %s: the time zone saved in the dashboard, %r, is unknown here; central.toml's "
                          "applies until it is saved again", row.site, row.timezone)
            if row.hours is not None:
                try:
                    stored = json.loads(row.hours)
                    changes["hours"] = MappingProxyType(central_config._hours("site_settings", row.site, stored))
                except (ValueError, TypeError, AttributeError, ConfigError) as exc:  # edited by hand in the database
                    log.error("site %s: the opening hours saved in the dashboard cannot be read (%s); "
                              "central.toml's apply until they are saved again", row.site, exc)
            if row.target is not None:
                changes["target"] = float(row.target)
            sites[row.site] = replace(site, **changes)
            edited[row.site] = frozenset(changes)
        desks_edited: set[tuple[str, str]] = set()
        for row in conn.execute(sa.select(desk_settings)):
            site = sites.get(row.site) or self.base.site(row.site)
            if row.name is None:
                continue
            desks_edited.add((row.site, row.device))
            desk = site.desks.get(row.device) or DeskConfig(slug=row.device, name=row.device)
            desks = dict(site.desks)
            desks[row.device] = replace(desk, name=row.name)
            sites[row.site] = replace(site, desks=MappingProxyType(desks))
        self._edited = edited
        self._edited_desks = frozenset(desks_edited)
        return replace(self.base, sites=MappingProxyType(sites))

    # ------------------------------------------------------------------ changing

    def save_site(self, slug: str, edit: SiteEdit, account: str) -> list[str]:
        """Save a site's values; a new time zone re-counts its rollups in the same transaction.

        Returns:
            What changed, in words (empty: nothing did).
        """
        _check_slug(slug, "site")
        self.invalidate()  # compare with the store as it is now, not as this process saw it last
        before = self.config().site(slug)
        after = replace(before, name=edit.name, timezone=edit.timezone,
                        hours=MappingProxyType(edit.hours), target=edit.target)
        changes = _differences(before, after)
        if not changes:
            return []
        # Kept value by value: one equal to central.toml's is not kept (it follows the file).
        file = self.base.site(slug)
        hours = {day: hours_text(edit.hours[i]) for i, day in enumerate(WEEKDAYS)}
        file_hours = {day: hours_text(file.hours.get(i)) for i, day in enumerate(WEEKDAYS)}
        kept = {"name": edit.name if edit.name != file.name else None,
                "timezone": edit.timezone if edit.timezone != file.timezone else None,
                "hours": json.dumps(hours) if hours != file_hours else None,
                "target": edit.target if edit.target != file.target else None}
        with self.store.transaction() as conn:
            if any(v is not None for v in kept.values()):
                _upsert(conn, site_settings, ["site"], {"site": slug, **kept, "updated_at": datetime.now(UTC),
                                                        "updated_by": account})
            else:
                conn.execute(site_settings.delete().where(site_settings.c.site == slug))
            if before.timezone != edit.timezone:
                # Local days and hours move with the zone: count the site's answers anew, in this
                # transaction, so no reader ever sees rollups of one zone under another's name.
                self.store.rebuild_site(conn, slug)
            record(conn, account, "site", slug, {"changed": changes})
        self.invalidate()
        return [f"{k}: {v['before']} → {v['after']}" for k, v in changes.items()]

    def reset_site(self, slug: str, account: str) -> bool:
        """Forget the dashboard's values for a site (central.toml's apply again); returns whether any were set."""
        _check_slug(slug, "site")
        self.invalidate()
        before = self.config().site(slug)
        with self.store.transaction() as conn:
            deleted = conn.execute(site_settings.delete().where(site_settings.c.site == slug)).rowcount
            if not deleted:
                return False
            after = replace(self.base.site(slug), desks=before.desks)
            if before.timezone != after.timezone:
                self.store.rebuild_site(conn, slug)
            record(conn, account, "site-reset", slug, {"changed": _differences(before, after)})
        self.invalidate()
        return True

    def save_desk(self, site: str, device: str, name: str, account: str) -> bool:
        """Name a desk (an empty name: central.toml's again); returns whether anything changed."""
        _check_slug(site, "site")
        _check_slug(device, "desk")
        self.invalidate()
        before = self.config().site(site).desk(device).name
        file_name = self.base.site(site).desk(device).name
        new = file_name if not name.strip() else _name(name, f"desk-{device}", "desk")
        kept = self.desk_edited(site, device)
        if new == before and kept == (new != file_name):
            return False
        with self.store.transaction() as conn:
            if new == file_name:  # central.toml's name (or the slug): nothing to keep
                conn.execute(desk_settings.delete().where(desk_settings.c.site == site,
                                                          desk_settings.c.device == device))
            else:
                _upsert(conn, desk_settings, ["site", "device"], {
                    "site": site, "device": device, "name": new, "updated_at": datetime.now(UTC),
                    "updated_by": account})
            record(conn, account, "desk", f"{site}/{device}", {"changed": {"name": {"before": before, "after": new}}})
        self.invalidate()
        return True


def _check_slug(slug: str, what: str) -> None:
    if not SLUG_RE.fullmatch(slug):
        raise SiteError(what, f"{what}: {slug[:70]!r} is not a slug (a-z, 0-9 and '-', 1 to 64)")


def _differences(before: SiteConfig, after: SiteConfig) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    if before.name != after.name:
        out["name"] = {"before": before.name, "after": after.name}
    if before.timezone != after.timezone:
        out["timezone"] = {"before": before.timezone, "after": after.timezone}
    old = {d: hours_text(before.hours.get(i)) for i, d in enumerate(WEEKDAYS)}
    new = {d: hours_text(after.hours.get(i)) for i, d in enumerate(WEEKDAYS)}
    if old != new:  # only the days that changed
        days = [d for d in WEEKDAYS if old[d] != new[d]]
        out["hours"] = {"before": _hours_words({d: old[d] for d in days}),
                        "after": _hours_words({d: new[d] for d in days})}
    if before.target != after.target:
        out["target"] = {"before": before.target, "after": after.target}
    return out


def _hours_words(days: dict[str, str]) -> str:
    return ", ".join(f"{d} {v}" for d, v in days.items())

"""Comparisons and the ranking: "are we better than usual?" and "which desk needs attention?".

Every number here is the published index (:mod:`central.scores`) over other
local days, read from the same rollups (:func:`central.reads.days`), so
today's index here is today's index on the rest of the dashboard:

- **today** against **yesterday** and **the same weekday last week** (today
  minus 7 days);
- **this week** (Monday to today, ISO weeks) against **last week** (Monday to
  Sunday, the whole week);
- **the last 7 days** (today and the 6 before) against **the 7 days before
  them**: what the ranking uses.

Each site's days are its own local dates (with several sites in view, "today"
is each site's own today, as everywhere on the dashboard). A change is the
difference of the two indexes *as shown* (whole numbers), so the words match
the numbers beside them: 75 against 72 is "3 points better". No change is
given when either side has fewer counted answers than ``[dashboard]
min_answers``. With several sites in one number (every site in view), a
change is like for like: only the sites with answers on both sides count, so
a site closed today (or whose today has not begun) changes nothing; the
change then says so and names both indexes.

**Needs attention** ranks desks worst first by their index over the last 7
days. A desk is ranked only with at least ``[dashboard] rank_min_answers``
counted answers (default 20) in those 7 days; the others are named as "not
ranked yet". Ties go to the desk with more answers (more evidence), then by
name. A site's optional ``target`` (``[sites.<slug>] target``) is set against
today's index.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any, Final

from central import i18n, reads, scores
from central.config import CentralConfig
from central.i18n import _, ngettext
from central.scores import Tally
from central.store import Store

#: The periods compared, by key.
PERIODS: Final = ("today", "yesterday", "last_weekday", "this_week", "last_week", "last7", "prev7")

#: The days the ranking looks at (today and the days before it).
RANK_DAYS: Final = 7

#: How many ranked desks the overview's "needs attention" block lists.
ATTENTION_ROWS: Final = 5

#: What each comparison sets against what, and how the earlier period is said in words.
COMPARISONS: Final = (("today", "yesterday"), ("today", "last_weekday"), ("this_week", "last_week"),
                      ("last7", "prev7"))

WEEKDAY_NAMES: Final = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True, slots=True)
class Periods:
    """One site's local days of each period, from its own today."""

    today: date

    def days(self, period: str) -> tuple[date, date]:
        """The first and last local date (both included) of ``period``."""
        return _ranges(self.today)[period]

    def periods_of(self, day: date) -> tuple[str, ...]:
        """Every period ``day`` falls in."""
        return _periods_of(self.today, day)


@lru_cache(maxsize=64)
def _ranges(t: date) -> dict[str, tuple[date, date]]:
    monday = t - timedelta(days=t.weekday())
    return {
        "today": (t, t),
        "yesterday": (t - timedelta(days=1), t - timedelta(days=1)),
        "last_weekday": (t - timedelta(days=7), t - timedelta(days=7)),
        "this_week": (monday, t),
        "last_week": (monday - timedelta(days=7), monday - timedelta(days=1)),
        "last7": (t - timedelta(days=RANK_DAYS - 1), t),
        "prev7": (t - timedelta(days=2 * RANK_DAYS - 1), t - timedelta(days=RANK_DAYS)),
    }


@lru_cache(maxsize=1024)
def _periods_of(today: date, day: date) -> tuple[str, ...]:
    return tuple(p for p, (first, last) in _ranges(today).items() if first <= day <= last)


def shown(index: float | None) -> int | None:
    """An index as the dashboard shows it: a whole number, halves rounded up (None stays None)."""
    return None if index is None else int(math.floor(index + 0.5))


def change(now: float | None, before: float | None) -> dict[str, Any]:
    """The change from ``before`` to ``now`` in shown points: ``{points, direction}``.

    ``direction`` is "better", "worse", "same", or None when either side has no index.
    """
    a, b = shown(now), shown(before)
    if a is None or b is None:
        return {"points": None, "direction": None}
    points = a - b
    return {"points": points, "direction": "better" if points > 0 else "worse" if points < 0 else "same"}


def change_words(now: float | None, before: float | None, than: str) -> str:
    """The change in words: "3 points better than yesterday", "1 point worse than last week", "the same as …".

    Args:
        now: the later index (None: too few answers).
        before: the earlier index (None: too few answers).
        than: the earlier period in words ("yesterday", "last Tuesday", "last week").
    """
    c = change(now, before)
    if c["direction"] is None:
        if before is None and now is not None:
            return _("too few answers %(than)s to compare") % {"than": than}
        return _("too few answers to compare with %(than)s") % {"than": than}
    if c["direction"] == "same":
        return _("the same as %(than)s") % {"than": than}
    points = abs(c["points"])
    if c["direction"] == "better":
        return ngettext("%(num)s point better than %(than)s", "%(num)s points better than %(than)s",
                        points) % {"num": points, "than": than}
    return ngettext("%(num)s point worse than %(than)s", "%(num)s points worse than %(than)s",
                    points) % {"num": points, "than": than}


def target_words(index: float | None, target: float | None) -> str | None:
    """Today's index against a target in words ("4 points below the target of 80", "target of 80 met (3 above)").

    None without a target.
    """
    if target is None:
        return None
    goal = shown(target)
    if index is None:
        return _("target %(goal)s") % {"goal": goal}
    gap = (shown(index) or 0) - (goal or 0)
    if gap < 0:
        return ngettext("%(num)s point below the target of %(goal)s", "%(num)s points below the target of %(goal)s",
                        -gap) % {"num": -gap, "goal": goal}
    return (_("target of %(goal)s met") % {"goal": goal} if gap == 0 else
            _("target of %(goal)s met (%(gap)s above)") % {"goal": goal, "gap": gap})


def target_short(index: float | None, target: float | None) -> str | None:
    """:func:`target_words` for a table cell: "80: 4 below", "80: met", "80: 3 above"; None without a target."""
    if target is None:
        return None
    goal = shown(target)
    if index is None:
        return f"{goal}"
    gap = (shown(index) or 0) - (goal or 0)
    if gap < 0:
        return _("%(goal)s: %(gap)s below") % {"goal": goal, "gap": -gap}
    if gap == 0:
        return _("%(goal)s: met") % {"goal": goal}
    return _("%(goal)s: %(gap)s above") % {"goal": goal, "gap": gap}


def than_words(period: str, today: date | None) -> str:
    """The earlier period in words: "yesterday", "last Tuesday" (or "the same day last week" with no one today)."""
    if period == "yesterday":
        return _("yesterday")
    if period == "last_weekday":
        if today is None:
            return _("the same day last week")
        if i18n.current() == i18n.DEFAULT:
            return f"last {WEEKDAY_NAMES[today.weekday()]}"
        return _("last %(day)s") % {"day": i18n.weekday(today.weekday(), "wide")}
    if period == "last_week":
        return _("last week")
    if period == "prev7":
        return _("the 7 days before")
    raise ValueError(f"not an earlier period: {period!r}")


def read_window(now: datetime) -> tuple[date, date]:
    """The local days any site's periods can fall on (a day of slack either side for the zones)."""
    today = now.astimezone(UTC).date()
    return today - timedelta(days=2 * RANK_DAYS), today + timedelta(days=1)


def summarise(
    config: CentralConfig,
    *,
    days: Iterable[reads.DayRow],
    known_desks: Iterable[reads.Desk],
    site: str | None,
    device: str | None,
    include_flagged: bool | None,
    now: datetime,
) -> dict[str, Any]:
    """The comparisons of the scope (``site``, ``device``), of every site and desk in ``site``, and the ranking.

    Args:
        config: sites (zones, targets, desks) and the dashboard's settings.
        days: answers per desk and local day over :func:`read_window`, for ``site`` (all desks).
        known_desks: every (site, desk) that has sent an answer or a status.
        site: the filter's site, or None for every site.
        device: the filter's desk, or None: the scope's numbers are this desk's.
        include_flagged: count flagged answers too (None: the configured default).
        now: the moment "today" is taken from.

    Returns:
        ``scope`` (the filter's own numbers), ``sites`` and ``desks`` (every
        one in ``site``), each an entry with ``periods`` (``{index,
        counted}`` per period) and ``changes``; and ``ranking``.
    """
    now = now.astimezone(UTC)
    flagged_too = config.dashboard.include_flagged if include_flagged is None else include_flagged
    minimum = config.dashboard.min_answers
    periods: dict[str, Periods] = {}

    def periods_at(slug: str) -> Periods:
        if slug not in periods:
            periods[slug] = Periods(now.astimezone(config.site(slug).tz).date())
        return periods[slug]

    scope: dict[str, dict[str, Tally]] = {}  # per site, for like-for-like changes across sites
    by_site: dict[str, dict[str, Tally]] = {}
    by_desk: dict[reads.Desk, dict[str, Tally]] = {}

    def tallies(table: dict[Any, dict[str, Tally]], key: Any) -> dict[str, Tally]:
        if key not in table:
            table[key] = {p: Tally() for p in PERIODS}
        return table[key]

    for row in days:
        if site is not None and row.site != site:
            continue
        if row.flagged and not flagged_too:
            continue
        count = sum(row.ratings)
        steps = sum(n * r for r, n in enumerate(row.ratings))
        for period in periods_at(row.site).periods_of(row.day):
            tallies(by_site, row.site)[period].add_steps(row.scale, count, steps)
            tallies(by_desk, (row.site, row.device))[period].add_steps(row.scale, count, steps)
            if device is None or row.device == device:
                tallies(scope, row.site)[period].add_steps(row.scale, count, steps)

    # Every desk in view is compared, with or without answers: configured ones and ones with a status.
    for site_slug, device_slug in known_desks:
        if site is None or site_slug == site:
            tallies(by_desk, (site_slug, device_slug))
    for site_cfg in config.sites.values():
        if site is None or site_cfg.slug == site:
            tallies(by_site, site_cfg.slug)
            for desk_slug in site_cfg.desks:
                tallies(by_desk, (site_cfg.slug, desk_slug))
    for site_slug, _desk in by_desk:
        tallies(by_site, site_slug)

    def entry(parts: dict[str, dict[str, Tally]], today: date | None, target: float | None,
              **names: Any) -> dict[str, Any]:
        """One site's, desk's or the scope's numbers; ``parts``: its tallies per site (one site but for the scope)."""
        counts = {p: Tally() for p in PERIODS}
        for site_counts in parts.values():
            for p in PERIODS:
                counts[p].merge(site_counts[p])
        values = {p: {"index": counts[p].index(minimum), "counted": counts[p].counted} for p in PERIODS}
        changes = {}
        for later, earlier in COMPARISONS:
            # Like for like: only the sites with answers on both sides (a site closed today, or whose
            # today has not begun, would otherwise change the mix, not the service).
            active = [s for s, c in parts.items() if c[later].counted or c[earlier].counted]
            both = [s for s in active if parts[s][later].counted and parts[s][earlier].counted]
            partial = len(active) > 1 and len(both) < len(active)
            a, b = values[later]["index"], values[earlier]["index"]
            if partial:
                a_tally, b_tally = Tally(), Tally()
                for s in both:
                    a_tally.merge(parts[s][later])
                    b_tally.merge(parts[s][earlier])
                a, b = a_tally.index(minimum), b_tally.index(minimum)
            than = than_words(earlier, today)
            changes[earlier] = {**change(a, b), "words": change_words(a, b, than), "than": than, "period": earlier,
                                "today": today.isoformat() if today else None,
                                "partial": partial, "sites": len(both), "of_sites": len(active),
                                "site_names": [config.site(s).name for s in both], "later": a, "earlier": b}
        return {**names, "today_date": today.isoformat() if today else None, "target": target,
                "target_words": target_words(values["today"]["index"], target),
                "target_short": target_short(values["today"]["index"], target),
                "periods": values, "changes": changes}

    site_entries = []
    for slug in sorted(by_site, key=lambda s: (config.site(s).name.lower(), s)):
        cfg = config.site(slug)
        site_entries.append(entry({slug: by_site[slug]}, periods_at(slug).today, cfg.target, site=slug,
                                  device=None, name=cfg.name, site_name=cfg.name))
    desk_entries = []
    for site_slug, device_slug in sorted(by_desk, key=lambda k: (config.site(k[0]).name.lower(), k[0],
                                                                 config.site(k[0]).desk(k[1]).name.lower(), k[1])):
        cfg = config.site(site_slug)
        desk_entries.append(entry({site_slug: by_desk[(site_slug, device_slug)]}, periods_at(site_slug).today,
                                  cfg.target, site=site_slug, device=device_slug, name=cfg.desk(device_slug).name,
                                  site_name=cfg.name))

    # The scope's own "today": one date when every site in it has the same (one zone, or one site).
    in_scope = [e for e in desk_entries if device is None or e["device"] == device]
    scope_sites = sorted({e["site"] for e in in_scope} | ({site} if site else set()))
    scope_days = {periods_at(s).today for s in scope_sites}
    scope_today = next(iter(scope_days)) if len(scope_days) == 1 else None
    targets = {config.site(s).target for s in scope_sites}
    scope_target = next(iter(targets)) if len(scope_sites) == 1 else None
    scope_entry = entry(scope, scope_today, scope_target, site=site, device=device, name=None, site_name=None)
    scope_entry["sites"] = len(scope)

    rank_min = max(config.dashboard.rank_min_answers, minimum)
    ranked = sorted((e for e in desk_entries if e["periods"]["last7"]["counted"] >= rank_min),
                    key=lambda e: (e["periods"]["last7"]["index"], -e["periods"]["last7"]["counted"],
                                   e["site_name"].lower(), e["name"].lower()))
    for place, e in enumerate(ranked, start=1):
        e["rank"] = place
    unranked = [e for e in desk_entries if e["periods"]["last7"]["counted"] < rank_min]
    return {
        "min_answers": minimum,
        "include_flagged": flagged_too,
        "scope": scope_entry,
        "sites": site_entries,
        "desks": desk_entries,
        "ranking": {"days": RANK_DAYS, "min_answers": rank_min, "ranked": ranked,
                    "unranked": [{"site": e["site"], "device": e["device"], "name": e["name"],
                                  "site_name": e["site_name"], "counted": e["periods"]["last7"]["counted"]}
                                 for e in unranked]},
    }


def comparisons(
    store: Store,
    config: CentralConfig,
    *,
    site: str | None = None,
    device: str | None = None,
    include_flagged: bool | None = None,
    now: datetime | None = None,
    seen: int | None = None,
    held: list[int] | None = None,
) -> dict[str, Any]:
    """:func:`summarise` over the store's rollups, computed once per view and new answer (shared like the rest).

    ``held``: see :func:`central.scores.shared_view`.
    """
    if now is None:  # to the minute: every page asking within it shares one computation
        now = datetime.now(UTC).replace(second=0, microsecond=0)
    now = now.astimezone(UTC)
    known_desks = tuple(reads.desks(store, site))

    def compute() -> dict[str, Any]:
        first, last = read_window(now)
        rows, _ = reads.days(store, scores.zone_of(config), site=site, first=first, last=last, known=known_desks,
                             hours=False, reasons_by="none")  # the comparisons count answers per rating only
        # Shared between pages of every language: its words are English; pages say them again in theirs.
        english = i18n.use(i18n.DEFAULT)
        try:
            return summarise(config, days=rows, known_desks=known_desks, site=site, device=device,
                             include_flagged=include_flagged, now=now)
        finally:
            i18n.reset(english)

    return scores.shared_view(store, config, ("compare", site, device, include_flagged, now, known_desks), compute,
                              seen=seen, held=held)


def change_text(c: dict[str, Any]) -> str:
    """A change of :func:`summarise` in the current language (its ``words`` are English)."""
    today = date.fromisoformat(c["today"]) if c.get("today") else None
    return change_words(c["later"], c["earlier"], than_words(c["period"], today))


def target_text(index: float | None, target: float | None) -> str:
    """:func:`target_words` in the current language ("" without a target)."""
    return target_words(index, target) or ""


def target_short_text(index: float | None, target: float | None) -> str:
    """:func:`target_short` in the current language ("" without a target)."""
    return target_short(index, target) or ""

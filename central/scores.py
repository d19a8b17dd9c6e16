"""The dashboard's numbers: index, counts, shares, reasons, trend, heatmap and desk comparison.

Published formula (docs/dashboard.md):

    index = 100 × mean((rating − 1) / (scale − 1))   over the counted answers

so the worst face counts 0, the best 100 and the others evenly between,
whatever the scale (3, 4 or 5 faces). 126, 60, 16 and 17 answers on a 4-point
scale, best to worst, give (126·1 + 60·⅔ + 16·⅓ + 17·0) / 219 × 100 = 78.2 → 78.

- **Counted answers**: every answer except those flagged ``rapid_repeat`` or
  ``test`` (stored and shown, but kept out of scores unless the switch to
  include them is on).
- **Minimum**: no index is given for fewer counted answers than
  ``[dashboard] min_answers`` (default 5); the counts still are.
- **Local time**: every date, weekday and hour is the answer's site's local
  time (``[sites.<slug>] timezone``), from where central placed the answer
  (``placed_at``: the device's synchronised clock, or re-timed; docs/central.md).
- **Date range**: ``start`` and ``end`` are local dates, both included. Left
  out, the range is the 30 days ending today, today being each site's own.
  The limits of a range are :mod:`central.filters`'.
- **Opening hours**: the heatmap shows the hours a site is open (and any
  other hour that has answers, marked closed); the trend marks closed days.
  Answers given outside opening hours still count.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

from central import reads
from central.config import CentralConfig, SiteConfig
from central.filters import DateRange, check_range, date_range
from central.store import Store

INDEX_FORMULA: Final = "index = 100 × mean((rating − 1) / (scale − 1)) over counted answers"

#: How far from UTC a local date can begin or end (UTC−12 to UTC+14).
_ZONE_SLACK: Final = timedelta(hours=14)


@dataclass(slots=True)
class Tally:
    """Counted answers and the sum of their scores (0 for the worst face, 1 for the best)."""

    counted: int = 0
    points: float = 0.0

    def add(self, rating: int, scale: int, count: int = 1) -> None:
        self.counted += count
        self.points += count * (rating - 1) / (scale - 1)

    def index(self, min_answers: int = 1) -> float | None:
        """The index (0–100, two decimals), or None below ``min_answers`` counted answers."""
        if self.counted < max(1, min_answers):
            return None
        return round(100 * self.points / self.counted, 2)


def index_of(counts: Mapping[tuple[int, int], int] | Iterable[tuple[int, int, int]],
             min_answers: int = 1) -> float | None:
    """The index of answers given as ``{(rating, scale): count}`` or ``(rating, scale, count)`` triples.

    >>> index_of({(4, 4): 126, (3, 4): 60, (2, 4): 16, (1, 4): 17})
    78.23
    """
    tally = Tally()
    items = counts.items() if isinstance(counts, Mapping) else (((r, s), n) for r, s, n in counts)
    for (rating, scale), n in items:
        tally.add(rating, scale, n)
    return tally.index(min_answers)


def site_range(site: SiteConfig, start: date | None, end: date | None, now: datetime) -> DateRange:
    """The filter's range at one site: the given dates, else the 30 days ending today there."""
    return date_range(start, end, now.astimezone(site.tz).date())


def utc_window(start: date | None, end: date | None, now: datetime) -> tuple[datetime, datetime]:
    """The widest UTC window [since, until) any site's local range can fall in (each answer is then placed exactly)."""
    widest = date_range(start, end, now.astimezone(UTC).date())
    return (datetime.combine(widest.start - timedelta(days=1), time.min, UTC) - _ZONE_SLACK,
            datetime.combine(widest.end + timedelta(days=2), time.min, UTC) + _ZONE_SLACK)


def main_scale(answers: Mapping[int, int]) -> int | None:
    """The scale most answers used (the larger on a tie), from ``{scale: answers}``; None without any."""
    return max(answers, key=lambda s: (answers[s], s)) if answers else None


def aggregate(
    store: Store,
    config: CentralConfig,
    *,
    site: str | None = None,
    device: str | None = None,
    start: date | None = None,
    end: date | None = None,
    include_flagged: bool | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Every number the dashboard shows for one filter: read (:mod:`central.reads`), then :func:`summarise`.

    Raises:
        FilterError: the range cannot be used (:func:`central.filters.check_range`).
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    check_range(start, end, now)
    since, until = utc_window(start, end, now)
    return summarise(
        config,
        in_range=reads.buckets(store, site=site, device=device, since=since, until=until),
        around_today=reads.buckets(store, site=site, device=device, since=now - timedelta(days=2),
                                   until=now + timedelta(days=1)),
        known_desks=reads.desks(store, site),
        site=site, device=device, start=start, end=end, include_flagged=include_flagged, now=now,
    )


def summarise(
    config: CentralConfig,
    *,
    in_range: Iterable[reads.Bucket],
    around_today: Iterable[reads.Bucket],
    known_desks: Iterable[reads.Desk],
    site: str | None,
    device: str | None,
    start: date | None,
    end: date | None,
    include_flagged: bool | None,
    now: datetime,
) -> dict[str, Any]:
    """Every number the dashboard shows for one filter, from counted answers (see the module docstring).

    Args:
        config: sites (time zones, hours, desks) and the dashboard's settings.
        in_range: answers counted in the filter's UTC window (:func:`utc_window`).
        around_today: answers counted from two days before ``now`` to a day after it.
        known_desks: every (site, desk) that has sent an answer or a status.
        site: the filter's site, or None.
        device: the filter's desk, or None.
        start: the filter's first local date, or None.
        end: the filter's last local date, or None.
        include_flagged: count flagged answers too (None: the configured default).
        now: the moment "today" is taken from.
    """
    now = now.astimezone(UTC)
    flagged_too = config.dashboard.include_flagged if include_flagged is None else include_flagged
    minimum = config.dashboard.min_answers
    ranges: dict[str, DateRange] = {}

    def range_of(slug: str) -> DateRange:
        if slug not in ranges:
            ranges[slug] = site_range(config.site(slug), start, end, now)
        return ranges[slug]

    widest = date_range(start, end, now.date())
    rows = in_range

    total = flagged = 0
    overall = Tally()
    by_scale: dict[int, Counter[int]] = defaultdict(Counter)
    reasons: Counter[str] = Counter()
    days: dict[date, Tally] = defaultdict(Tally)
    cells: dict[tuple[int, int], Tally] = defaultdict(Tally)
    desks: dict[tuple[str, str], dict[str, Any]] = {}
    seen_sites: set[str] = set()

    def desk(site_slug: str, device_slug: str) -> dict[str, Any]:
        key = (site_slug, device_slug)
        if key not in desks:
            desks[key] = {"range": Tally(), "flagged": 0, "total": 0, "today": Tally()}
        return desks[key]

    for b in rows:
        local = b.start.astimezone(config.site(b.site).tz)
        if local.date() not in range_of(b.site):
            continue
        seen_sites.add(b.site)
        entry = desk(b.site, b.device)
        total += b.count
        entry["total"] += b.count
        if b.flagged:
            flagged += b.count
            entry["flagged"] += b.count
            if not flagged_too:
                continue
        overall.add(b.rating, b.scale, b.count)
        entry["range"].add(b.rating, b.scale, b.count)
        by_scale[b.scale][b.rating] += b.count
        for reason in b.reasons:
            reasons[reason] += b.count
        days[local.date()].add(b.rating, b.scale, b.count)
        cells[(local.weekday(), local.hour)].add(b.rating, b.scale, b.count)

    # Today at each answer's own site, whatever the range.
    today = Tally()
    today_total = today_flagged = 0
    today_scales: dict[int, Counter[int]] = defaultdict(Counter)
    for b in around_today:
        tz = config.site(b.site).tz
        if b.start.astimezone(tz).date() != now.astimezone(tz).date():
            continue
        today_total += b.count
        if b.flagged:
            today_flagged += b.count
            if not flagged_too:
                continue
        desk(b.site, b.device)["today"].add(b.rating, b.scale, b.count)
        today.add(b.rating, b.scale, b.count)
        today_scales[b.scale][b.rating] += b.count

    # Desks that have no answers in range are compared too: configured ones and ones with a status.
    for site_slug, device_slug in known_desks:
        if device is None or device_slug == device:
            desk(site_slug, device_slug)
    for site_cfg in config.sites.values():
        if site is None or site_cfg.slug == site:
            for desk_slug in site_cfg.desks:
                if device is None or desk_slug == device:
                    desk(site_cfg.slug, desk_slug)
    sites_in_view = sorted({s for s, _ in desks} | seen_sites | ({site} if site else set()))
    site_cfgs = [config.site(s) for s in sites_in_view] or [SiteConfig(slug="-", name="UTC")]
    for s in sites_in_view:
        range_of(s)
    first = min((r.start for r in ranges.values()), default=widest.start)
    last = max((r.end for r in ranges.values()), default=widest.end)

    scale = main_scale({s: sum(c.values()) for s, c in by_scale.items()})
    today_scale = main_scale({s: sum(c.values()) for s, c in today_scales.items()})
    return {
        "formula": INDEX_FORMULA,
        "min_answers": minimum,
        "include_flagged": flagged_too,
        "timezone": site_cfgs[0].timezone if len(site_cfgs) == 1 else None,
        "start": first.isoformat(),
        "end": last.isoformat(),
        "total": total,
        "counted": overall.counted,
        "flagged": flagged,
        "index": overall.index(minimum),
        "scale": scale,
        "ratings": _ratings(by_scale, scale),
        "ratings_by_scale": {str(s): [c[r] for r in range(1, s + 1)] for s, c in sorted(by_scale.items())},
        "reasons": [{"reason": r, "count": n} for r, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))],
        "days": _days(first, last, days, site_cfgs, minimum),
        "weeks": _weeks(first, last, days, minimum),
        "heatmap": _heatmap(cells, site_cfgs, minimum),
        "today": {
            "total": today_total, "counted": today.counted, "flagged": today_flagged,
            "index": today.index(minimum), "scale": today_scale, "ratings": _ratings(today_scales, today_scale),
        },
        "desks": [
            {
                "site": s, "device": d, "name": config.site(s).desk(d).name, "site_name": config.site(s).name,
                "total": v["total"], "counted": v["range"].counted, "flagged": v["flagged"],
                "index": v["range"].index(minimum),
                "today_counted": v["today"].counted, "today_index": v["today"].index(minimum),
            }
            for (s, d), v in sorted(desks.items())
        ],
    }


def _ratings(by_scale: Mapping[int, Counter[int]], scale: int | None) -> list[int]:
    return [by_scale[scale][r] for r in range(1, scale + 1)] if scale else []


def _days(first: date, last: date, days: Mapping[date, Tally], sites: list[SiteConfig],
          minimum: int) -> list[dict[str, Any]]:
    out = []
    day = first
    while day <= last:
        tally = days.get(day, Tally())
        out.append({"date": day.isoformat(), "counted": tally.counted, "index": tally.index(minimum),
                    "open": any(s.hours.get(day.weekday()) is not None for s in sites)})
        day += timedelta(days=1)
    return out


def _weeks(first: date, last: date, days: Mapping[date, Tally], minimum: int) -> list[dict[str, Any]]:
    weeks: dict[tuple[int, int], Tally] = {}
    starts: dict[tuple[int, int], date] = {}
    day = first
    while day <= last:
        iso = day.isocalendar()
        key = (iso.year, iso.week)
        week = weeks.setdefault(key, Tally())
        starts.setdefault(key, day - timedelta(days=day.weekday()))
        if day in days:
            week.counted += days[day].counted
            week.points += days[day].points
        day += timedelta(days=1)
    return [{"week": f"{y}-W{w:02d}", "start": starts[(y, w)].isoformat(), "counted": t.counted,
             "index": t.index(minimum)} for (y, w), t in sorted(weeks.items())]


def _open_hours(site: SiteConfig, weekday: int) -> set[int]:
    hours = site.hours.get(weekday)
    if hours is None:
        return set()
    opens, closes = hours
    last = 23 if closes == time.max else (closes.hour if closes.minute else closes.hour - 1)
    return set(range(opens.hour, last + 1))


def _heatmap(cells: Mapping[tuple[int, int], Tally], sites: list[SiteConfig], minimum: int) -> dict[str, Any]:
    open_at = {wd: set().union(*(_open_hours(s, wd) for s in sites)) for wd in range(7)}
    hours = sorted(set().union(*open_at.values()) | {h for (_, h), t in cells.items() if t.counted})
    return {
        "hours": hours,
        "cells": [
            [{"hour": h, "counted": cells[(wd, h)].counted if (wd, h) in cells else 0,
              "index": cells[(wd, h)].index(minimum) if (wd, h) in cells else None,
              "open": h in open_at[wd]} for h in hours]
            for wd in range(7)
        ],
    }

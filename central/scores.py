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

import copy
import operator
import threading
import time as clock
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

from central import reads
from central.config import CentralConfig, SiteConfig
from central.filters import DateRange, check_range, date_range
from central.store import Store

#: Each rating's steps above the worst (rating − 1), by position in a row's counts per rating.
_STEPS: Final = range(64)

INDEX_FORMULA: Final = "index = 100 × mean((rating − 1) / (scale − 1)) over counted answers"

#: How far from UTC a local date can begin or end (UTC−12 to UTC+14).
_ZONE_SLACK: Final = timedelta(hours=14)


@dataclass(slots=True)
class Tally:
    """Counted answers and, per scale, the sum of (rating - 1): integers, so any order of adding gives one index."""

    counted: int = 0
    steps: dict[int, int] = field(default_factory=dict)

    def add(self, rating: int, scale: int, count: int = 1) -> None:
        self.add_steps(scale, count, count * (rating - 1))

    def add_steps(self, scale: int, count: int, steps: int) -> None:
        """``count`` answers on ``scale`` whose ratings minus one add up to ``steps``."""
        if count:
            self.counted += count
            self.steps[scale] = self.steps.get(scale, 0) + steps

    def merge(self, other: Tally) -> None:
        for scale, steps in other.steps.items():
            self.steps[scale] = self.steps.get(scale, 0) + steps
        self.counted += other.counted

    @property
    def points(self) -> float:
        """The sum of the counted answers' scores (0 for the worst face, 1 for the best)."""
        return sum(steps / (scale - 1) for scale, steps in sorted(self.steps.items()))

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


def read_window(start: date | None, end: date | None, now: datetime) -> tuple[date, date]:
    """The local days any site's range or "today" can fall on (a day of slack for the zones)."""
    widest = date_range(start, end, now.astimezone(UTC).date())
    today = now.astimezone(UTC).date()
    return min(widest.start, today) - timedelta(days=1), max(widest.end, today) + timedelta(days=1)


def zone_of(config: CentralConfig) -> Callable[[str], str]:
    """Each site's IANA zone as central.toml names it (the default one for a site it does not name)."""
    return lambda slug: config.site(slug).timezone


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
    seen: int | None = None,
    held: list[int] | None = None,
    private: bool = True,
) -> dict[str, Any]:
    """Every number the dashboard shows for one filter: days read (:func:`central.reads.days`), then summarised.

    ``seen``: the newest ingest id the asking page has been sent (its live feed's
    cursor); numbers already computed that include it are good enough for it.
    ``held``, ``private``: see :func:`shared_view`.

    Raises:
        FilterError: the range cannot be used (:func:`central.filters.check_range`).
    """
    if now is None:  # to the minute: every page asking within it shares one computation
        now = datetime.now(UTC).replace(second=0, microsecond=0)
    now = now.astimezone(UTC)
    check_range(start, end, now)
    known_desks = tuple(reads.desks(store, site))

    def compute() -> dict[str, Any]:
        first, last = read_window(start, end, now)
        # Per desk the answers per rating; the hours (the heatmap's) summed per site and day.
        rows, reasons = reads.days(store, zone_of(config), site=site, device=device, first=first, last=last,
                                   known=known_desks, hours=False, reasons_by="site")
        hours = reads.day_hours(store, zone_of(config), site=site, device=device, first=first, last=last,
                                known=known_desks)
        return summarise(config, days=rows, reasons=reasons, known_desks=known_desks, site=site, device=device,
                         start=start, end=end, include_flagged=include_flagged, now=now, hours=hours)

    return shared_view(store, config, ("aggregate", site, device, start, end, include_flagged, now, known_desks),
                       compute, seen=seen, held=held, private=private)


def shared_view(store: Store, config: CentralConfig, view: tuple[Any, ...],
                compute: Callable[[], dict[str, Any]], *, seen: int | None = None,
                held: list[int] | None = None, private: bool = True) -> dict[str, Any]:
    """The numbers of ``view`` over ``store``: computed once, shared by every page and TV asking for the same.

    ``view`` names everything the numbers depend on besides the answers (the
    filter, the minute, the desks known). Numbers computed when the newest stored
    answer had ingest id L hold every answer up to L (answers are committed in
    ingest-id order). They are handed to whoever asks for the view while no newer
    answer is stored, or while the asker has been sent no answer after L
    (``seen``: a page's live-feed cursor): one computation per change and view,
    not one per viewer. Askers arriving while the view is computed wait for that
    computation. A page (``seen`` given) whose numbers must be computed anew waits
    until :data:`VIEW_GAP_S` after the view's last computation began, so every
    page refreshing in that time shares the next one (its live feed shows the
    answer meanwhile); at most :data:`MAX_WAITING` wait at once. ``held``: the
    ingest id the returned numbers hold is appended to it (what
    :mod:`central.pages` keys its shared HTML on). Returns
    the caller's own copy, or with ``private=False`` the shared numbers themselves
    (for a caller that only reads them, such as the JSON API).
    """
    key = (id(store), id(config), *view)
    while True:
        with _SHARED_LOCK:
            turn = _TURNS.setdefault(key, threading.Lock())
        with turn:
            with _SHARED_LOCK:
                entry = _SHARED.get(key)
                if entry is not None:
                    _SHARED.move_to_end(key)
            fresh = entry is not None and entry[0] is store and entry[1] is config
            if fresh and entry is not None and (seen is None or entry[2] < seen):
                fresh = entry[2] == reads.last_ingest_id(store)
            if fresh and entry is not None:
                last_id, shared = entry[2], entry[4]
                break
            wait = 0.0 if entry is None or seen is None else entry[3] + VIEW_GAP_S - clock.monotonic()
            with _SHARED_LOCK:
                if wait > 0 and _WAITING[0] >= MAX_WAITING:
                    wait = 0.0  # enough threads wait already (they are the web server's): compute now
                if wait > 0:
                    _WAITING[0] += 1
            if wait <= 0:
                try:
                    began = clock.monotonic()
                    last_id = reads.last_ingest_id(store)  # before reading: the numbers hold at least this
                    shared = compute()
                except BaseException:
                    with _SHARED_LOCK:
                        if key not in _SHARED:
                            _TURNS.pop(key, None)
                    raise
                with _SHARED_LOCK:
                    # The entry holds the store and the configuration too: while it lives, their ids
                    # (in the key) cannot be taken by new objects.
                    _SHARED[key] = (store, config, last_id, began, shared)
                    while len(_SHARED) > SHARED_VIEWS:
                        gone, _ = _SHARED.popitem(last=False)
                        _TURNS.pop(gone, None)
                break
        try:
            clock.sleep(min(wait, VIEW_GAP_S))  # outside the turn: pages the numbers kept suit are not held up
        finally:
            with _SHARED_LOCK:
                _WAITING[0] -= 1
    if held is not None:
        held.append(last_id)
    if not private:
        return shared
    copied: dict[str, Any] = plain_copy(shared)  # callers may change their copy
    return copied


def plain_copy(value: Any) -> Any:
    """A deep copy of JSON-like numbers (dicts, lists, tuples of plain values): several times faster than
    :func:`copy.deepcopy`, which the shared numbers were copied with (a quarter of a computed overview)."""
    if isinstance(value, dict):
        return {k: plain_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain_copy(v) for v in value]
    if isinstance(value, tuple):
        return tuple(plain_copy(v) for v in value)
    if isinstance(value, str | int | float | bool | date | type(None)):
        return value
    return copy.deepcopy(value)


#: Seconds between two computations of one view for pages refreshing (``seen`` given): the pages'
#: own pacing (dashboard.js refreshes at most every 2 s), so a view is computed at most about
#: once per refresh interval however many pages show it.
VIEW_GAP_S: Final = 2.0
#: At most this many askers wait for a view's gap at once (each holds one of the web server's
#: worker threads, which the live feeds' polls need too); the next ones compute at once.
MAX_WAITING: Final = 8
_WAITING = [0]
#: How many views' numbers are kept for other pages asking the same (newest used last).
SHARED_VIEWS: Final = 128
_SHARED: OrderedDict[tuple[Any, ...], tuple[Store, CentralConfig, int, float, dict[str, Any]]] = OrderedDict()
_SHARED_LOCK = threading.Lock()
#: One lock per view: the pages asking for a view while it is computed wait for its numbers.
_TURNS: dict[tuple[Any, ...], threading.Lock] = {}


def summarise(
    config: CentralConfig,
    *,
    days: Iterable[reads.DayRow],
    reasons: Iterable[reads.DayReason],
    known_desks: Iterable[reads.Desk],
    site: str | None,
    device: str | None,
    start: date | None,
    end: date | None,
    include_flagged: bool | None,
    now: datetime,
    hours: Iterable[reads.DayRow] | None = None,
) -> dict[str, Any]:
    """Every number the dashboard shows for one filter, from answers counted per desk and local day.

    Args:
        config: sites (time zones, hours, desks) and the dashboard's settings.
        days: answers per desk and local day over :func:`read_window` (:func:`central.reads.days`).
        reasons: the reasons given per desk and local day, over the same days.
        known_desks: every (site, desk) that has sent an answer or a status.
        site: the filter's site, or None.
        device: the filter's desk, or None.
        start: the filter's first local date, or None.
        end: the filter's last local date, or None.
        include_flagged: count flagged answers too (None: the configured default).
        now: the moment "today" is taken from.
        hours: the heatmap's answers per local hour, per site and day
            (:func:`central.reads.day_hours`); None: from the hours of ``days``.
    """
    now = now.astimezone(UTC)
    flagged_too = config.dashboard.include_flagged if include_flagged is None else include_flagged
    minimum = config.dashboard.min_answers
    ranges: dict[str, DateRange] = {}
    todays: dict[str, date] = {}

    def range_of(slug: str) -> DateRange:
        if slug not in ranges:
            ranges[slug] = site_range(config.site(slug), start, end, now)
        return ranges[slug]

    def today_at(slug: str) -> date:
        if slug not in todays:
            todays[slug] = now.astimezone(config.site(slug).tz).date()
        return todays[slug]

    widest = date_range(start, end, now.date())
    total = flagged = 0
    overall = Tally()
    by_scale: dict[int, Counter[int]] = defaultdict(Counter)
    reason_counts: Counter[str] = Counter()
    per_day: dict[date, Tally] = defaultdict(Tally)
    cells: dict[tuple[int, int], Tally] = defaultdict(Tally)
    desks: dict[tuple[str, str], dict[str, Any]] = {}
    seen_sites: set[str] = set()
    today = Tally()
    today_total = today_flagged = 0
    today_scales: dict[int, Counter[int]] = defaultdict(Counter)

    def add_hours(row: reads.DayRow) -> None:
        weekday = row.day.weekday()
        for hour in range(24):
            if row.hours[hour]:
                cells[(weekday, hour)].add_steps(row.scale, row.hours[hour], row.steps[hour])

    def desk(site_slug: str, device_slug: str) -> dict[str, Any]:
        key = (site_slug, device_slug)
        if key not in desks:
            desks[key] = {"range": Tally(), "flagged": 0, "total": 0, "today": Tally()}
        return desks[key]

    bounds: dict[str, tuple[date, date, date]] = {}  # per site: its range's first and last day, its today
    for row in days:
        ratings = row.ratings
        count = sum(ratings)
        steps = sum(map(operator.mul, ratings, _STEPS))
        if row.site not in bounds:
            in_range = range_of(row.site)
            bounds[row.site] = (in_range.start, in_range.end, today_at(row.site))
        first_day, last_day, site_today = bounds[row.site]
        if row.day == site_today:  # today at the answer's own site, whatever the range
            today_total += count
            if row.flagged:
                today_flagged += count
            if flagged_too or not row.flagged:
                desk(row.site, row.device)["today"].add_steps(row.scale, count, steps)
                today.add_steps(row.scale, count, steps)
                for r, n in enumerate(ratings[:row.scale], start=1):
                    today_scales[row.scale][r] += n
        if not first_day <= row.day <= last_day:
            continue
        seen_sites.add(row.site)
        entry = desk(row.site, row.device)
        total += count
        entry["total"] += count
        if row.flagged:
            flagged += count
            entry["flagged"] += count
            if not flagged_too:
                continue
        overall.add_steps(row.scale, count, steps)
        entry["range"].add_steps(row.scale, count, steps)
        counter = by_scale[row.scale]
        for r, n in enumerate(ratings[:row.scale], start=1):
            if n:
                counter[r] += n
        per_day[row.day].add_steps(row.scale, count, steps)
        if hours is None:
            add_hours(row)
    for row in hours or ():
        if row.day in range_of(row.site) and (flagged_too or not row.flagged):
            add_hours(row)
    for given in reasons:
        if given.day in range_of(given.site) and (flagged_too or not given.flagged):
            reason_counts[given.reason] += given.count

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
        "reasons": [{"reason": r, "count": n}
                    for r, n in sorted(reason_counts.items(), key=lambda kv: (-kv[1], kv[0]))],
        "days": _days(first, last, per_day, site_cfgs, minimum),
        "weeks": _weeks(first, last, per_day, minimum),
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
            week.merge(days[day])
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

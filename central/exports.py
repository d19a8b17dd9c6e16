"""CSV exports: every raw answer with its flags, and daily aggregates per desk.

Both take the dashboard's filters (``site``, ``device``, ``from``, ``to`` as
local dates, ``flagged``) and stream, so a year of answers never sits in
memory. Times are given in the site's local time and in UTC; text cells that a
spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@`` first) are
prefixed with ``'``.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime
from typing import Any, Final

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from central import deps, reads, scores
from central.config import CentralConfig
from central.deps import WebState
from central.filters import DateRange, Filters
from central.store import Store
from sync import protocol

ANSWER_COLUMNS: Final = (
    "ingest_id", "id", "site", "site_name", "device", "desk_name", "local_time", "local_date", "timezone",
    "placed_at_utc", "time_source", "rating", "scale", "score", "counted", "flags", "reasons", "lang", "source",
    "survey", "received_at_utc",
)
AGGREGATE_COLUMNS: Final = (
    "date", "site", "site_name", "device", "desk_name", "timezone", "answers", "counted", "flagged", "index",
    "scale", "rating_1", "rating_2", "rating_3", "rating_4", "rating_5",
)


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _csv_lines(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([_cell(v) for v in row])
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def answer_rows(store: Store, config: CentralConfig, *, site: str | None = None, device: str | None = None,
                start: date | None = None, end: date | None = None, include_flagged: bool | None = None,
                now: datetime | None = None) -> Iterator[list[Any]]:
    """One row per stored answer in range (local dates at its site), in ingest order."""
    now = now or datetime.now(UTC)
    flagged_too = config.dashboard.include_flagged if include_flagged is None else include_flagged
    since, until = scores.utc_window(start, end, now)
    ranges: dict[str, DateRange] = {}
    for event in reads.iter_events(store, site=site, device=device, since=since, until=until):
        site_cfg = config.site(event["site"])
        if event["site"] not in ranges:
            ranges[event["site"]] = scores.site_range(site_cfg, start, end, now)
        local = protocol.parse_timestamp(event["placed_at"]).astimezone(site_cfg.tz)
        if local.date() not in ranges[event["site"]]:
            continue
        flagged = reads.is_flagged(event["flags"])
        score = scores.index_of({(event["rating"], event["scale"]): 1})  # this one answer's score
        yield [
            event["ingest_id"], event["id"], event["site"], site_cfg.name, event["device"],
            site_cfg.desk(event["device"]).name, local.isoformat(timespec="seconds"), local.date().isoformat(),
            site_cfg.timezone, event["placed_at"], event["time_source"], event["rating"], event["scale"], score,
            "no" if flagged and not flagged_too else "yes", ";".join(event["flags"]), ";".join(event["reasons"]),
            event["lang"], event["source"], event["survey"], event["received_at"],
        ]


def aggregate_rows(store: Store, config: CentralConfig, *, site: str | None = None, device: str | None = None,
                   start: date | None = None, end: date | None = None, include_flagged: bool | None = None,
                   now: datetime | None = None) -> list[list[Any]]:
    """One row per (local date, site, desk) with answers in range: counts, index and ratings."""
    now = now or datetime.now(UTC)
    flagged_too = config.dashboard.include_flagged if include_flagged is None else include_flagged
    ranges: dict[str, DateRange] = {}
    groups: dict[tuple[date, str, str], dict[str, Any]] = defaultdict(
        lambda: {"total": 0, "flagged": 0, "tally": scores.Tally(), "ratings": defaultdict(lambda: [0] * 6)})
    first, last = scores.read_window(start, end, now)
    day_rows, _ = reads.days(store, scores.zone_of(config), site=site, device=device, first=first, last=last,
                             hours=False)  # answers per rating only
    for row in day_rows:
        if row.site not in ranges:
            ranges[row.site] = scores.site_range(config.site(row.site), start, end, now)
        if row.day not in ranges[row.site]:
            continue
        group = groups[(row.day, row.site, row.device)]
        count = sum(row.ratings)
        group["total"] += count
        if row.flagged:
            group["flagged"] += count
            if not flagged_too:
                continue
        group["tally"].add_steps(row.scale, count, sum(n * r for r, n in enumerate(row.ratings)))
        for rating, n in enumerate(row.ratings[:row.scale], start=1):
            group["ratings"][row.scale][rating] += n
    rows = []
    for (day, site_slug, device_slug), g in sorted(groups.items()):
        site_cfg = config.site(site_slug)
        by_scale: dict[int, list[int]] = g["ratings"]
        scale = scores.main_scale({s: sum(counts) for s, counts in by_scale.items()})
        counts = by_scale[scale][1:scale + 1] if scale else []
        rows.append([
            day.isoformat(), site_slug, site_cfg.name, device_slug, site_cfg.desk(device_slug).name,
            site_cfg.timezone, g["total"], g["tally"].counted, g["flagged"],
            g["tally"].index(config.dashboard.min_answers), scale or "", *counts, *[""] * (5 - len(counts)),
        ])
    return rows


router = APIRouter()


def _filename(kind: str, f: Filters) -> str:
    parts = ["deskpulse", kind, f.site or "all-sites", f.device or "",
             f"{f.start or ''}_{f.end or 'today'}" if f.start or f.end else "last-30-days"]
    return "-".join(p for p in parts if p) + ".csv"


def _respond(lines: Iterator[str], name: str) -> StreamingResponse:
    return StreamingResponse(lines, media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{name}"',
                                      "Cache-Control": "no-store"})


@router.get("/export/answers.csv", response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}}, "description": "one row per answer"}})
def export_answers(f: Filters = Depends(deps.dashboard_filters),
                   web: WebState = Depends(deps.web_state)) -> StreamingResponse:
    """Every answer in range with its flags (flagged ones included, marked in `counted`), as CSV."""
    rows = answer_rows(web.store, web.config, site=f.site, device=f.device, start=f.start, end=f.end,
                       include_flagged=f.flagged)
    return _respond(_csv_lines(ANSWER_COLUMNS, rows), _filename("answers", f))


@router.get("/export/aggregates.csv", response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}}, "description": "one row per day and desk"}})
def export_aggregates(f: Filters = Depends(deps.dashboard_filters),
                      web: WebState = Depends(deps.web_state)) -> StreamingResponse:
    """Per local day and desk: answers, counted, flagged, index and the count of each rating, as CSV."""
    rows = aggregate_rows(web.store, web.config, site=f.site, device=f.device, start=f.start, end=f.end,
                          include_flagged=f.flagged)
    return _respond(_csv_lines(AGGREGATE_COLUMNS, rows), _filename("aggregates", f))

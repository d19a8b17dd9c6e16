"""The staff dashboard's pages: the overview at ``/`` and the wall-TV view at ``/tv/{token}``.

Server-rendered (Jinja2 templates, charts as inline SVG and HTML tables), so
every number is in the HTML a browser gets and the page works without
JavaScript. One small hand-written script (``static/dashboard.js``) adds the
live feed (server-sent events from ``/api/stream``) and re-fetches the
numbers (``/partials/…``) when an answer arrives. All numbers come from
:func:`central.scores.aggregate`; this module only chooses what to ask for
and how to show it. Dates and times are the site's own (its time zone).

The filters live in the URL (``site``, ``device``, ``from``, ``to``,
``flagged``), so a view is a bookmark and the form is a plain GET form. They
are checked by :mod:`central.filters`, as the JSON API and the exports check
them; a value refused there is named in a notice and left out here.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import anyio.to_thread
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, StreamingResponse
from fastapi.templating import Jinja2Templates

from central import __version__, compare, deps, filters, i18n, reads, scores, stream
from central.config import CentralConfig, DisplayToken
from central.deps import WebState
from central.feed import Cursor, Feed
from central.filters import Filters
from central.i18n import N_, _, ngettext
from central.store import Store
from display import palette, texts
from display.palette import face_colour, mood
from sync import protocol

TEMPLATES: Final = Jinja2Templates(directory=str(Path(__file__).resolve().parent / "templates"))
i18n.install(TEMPLATES.env)

#: The kiosk's face colours and English words, from the kiosk's own definitions.
FACE_COLOURS: Final = palette.FACE_COLOURS
RATING_WORDS: Final[dict[int, tuple[str, ...]]] = {scale: texts.labels("en", scale) for scale in FACE_COLOURS}
REASON_WORDS: Final[dict[str, str]] = {key: texts.reason("en", key) for key in texts.REASONS}

WEEKDAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

#: How many answers the overview's feed and the TV's list render.
FEED_ROWS: Final = 30
TV_ROWS: Final = 6
#: The days the phone's trend chart shows (the newest; the table below it has every day).
PHONE_DAYS: Final = 14
#: How many ranked desks "needs attention" lists.
ATTENTION_ROWS: Final = compare.ATTENTION_ROWS


# --------------------------------------------------------------------------- words and colours

def rating_words(rating: int, scale: int) -> str:
    """The kiosk's word for a rating in the page's language ("Good", "Gut"), or "rating/scale" for an unknown scale."""
    words = texts.labels(i18n.current(), scale) if scale in RATING_WORDS else None
    return words[rating - 1] if words and 1 <= rating <= len(words) else f"{rating}/{scale}"


def reason_words(key: str) -> str:
    """A reason key in the page's language, the kiosk's own words ("wait_time" -> "Waiting time", "Wartezeit")."""
    if key in REASON_WORDS:
        return texts.reason(i18n.current(), key)
    return key.replace("_", " ").capitalize()


def rating_words_all() -> dict[str, tuple[str, ...]]:
    """Every scale's rating words in the page's language (for the live feed's script)."""
    return {str(scale): texts.labels(i18n.current(), scale) for scale in RATING_WORDS}


def reason_words_all() -> dict[str, str]:
    """Every reason's words in the page's language (for the live feed's script)."""
    return {key: texts.reason(i18n.current(), key) for key in REASON_WORDS}


def state_words(state: str | None) -> str:
    """A kiosk's state in the page's language ("no status" when it has not reported one)."""
    return i18n.kiosk_state(state)


def _flag_words(flag: str) -> str:
    return _(FLAG_WORDS[flag]) if flag in FLAG_WORDS else flag.replace("_", " ")


#: An answer's flags in words (the feed's chips).
FLAG_WORDS: Final = {"test": N_("test"), "rapid_repeat": N_("rapid repeat")}


def index_band(index: float | None) -> int:
    """The index (0..100) as one of five bands, 1 (worst) to 5; 0 when there is none."""
    if index is None:
        return 0
    return min(5, 1 + int(index // 20))


def index_face(index: float) -> tuple[str, float]:
    """A face colour and mood for an index, on the 5-point scale's colours."""
    rating = 1 + round(max(0.0, min(100.0, index)) / 25)
    return face_colour(rating, 5), mood(rating, 5)


def fmt_index(index: float | None) -> str:
    """An index as shown: a whole number (78), or an en dash when there is none."""
    return "–" if index is None else str(int(math.floor(index + 0.5)))


# --------------------------------------------------------------------------- reading

def _aggregate(store: Store, config: CentralConfig, **kw: Any) -> dict[str, Any]:
    return scores.aggregate(store, config, **kw)


def _include_flagged(config: CentralConfig, f: Filters) -> bool:
    return bool(config.dashboard.include_flagged) if f.flagged is None else f.flagged


def fleet(store: Store, config: CentralConfig, *, site: str | None, device: str | None,
          now: datetime) -> dict[str, Any]:
    """Every device's health (:func:`central.reads.device_health`, as ``GET /api/devices``) with a summary.

    Each row adds ``missing`` (answers in its gaps), its names and when it was last seen, in words.
    """
    rows = []
    for row in reads.device_health(store, site, device):
        site_config = config.site(row["site"])
        desk = site_config.desks.get(row["device"])
        seen = protocol.parse_timestamp(row["last_seen"]) if row["last_seen"] else None
        missing = sum(gap["last"] - gap["first"] + 1 for gap in row["gaps"])
        restarted = protocol.parse_timestamp(row["restarted_at"]) if row["restarted_at"] else None
        rows.append({**row, "missing": missing, "name": desk.name if desk else row["device"],
                     "site_name": site_config.name,
                     "seen_local": _local(seen, site_config.tz) if seen else None,
                     "seen_ago": _ago(now - seen) if seen else None,
                     "restarted_local": _local(restarted, site_config.tz) if restarted else None,
                     "restarted_ago": _ago(now - restarted) if restarted else None,
                     "other_alarms": [a for a in row["alarms"] if a["code"] != protocol.TEST_MODE_ALARM]})
    online = sum(1 for r in rows if r["state"] == "online")
    in_service = [r for r in rows if r["state"] != "retired"]
    return {
        "rows": rows,
        "online": online,
        "in_service": len(in_service),
        "offline": sum(1 for r in rows if r["state"] == "offline"),
        "retired": len(rows) - len(in_service),
        "backlog": sum(r["backlog"] or 0 for r in rows),
        "missing": sum(r["missing"] for r in rows),
        "problems": sum(1 for r in in_service if r["state"] != "online" or r["missing"] or r["last_error"]
                        or r["config_error"] or r["alarms"]),
        "testing": sum(1 for r in in_service if r["test_mode"]),
    }


def recent_feed(store: Store, config: CentralConfig, *, site: str | None, device: str | None,
                limit: int, now: datetime) -> tuple[list[dict[str, Any]], str]:
    """The newest answers the live feed may show (per-desk privacy applied, newest first) and the
    stream cursor to resume after them."""
    events, cursor = Feed(store, config, site=site, device=device).recent(limit, now=now)
    return events, str(cursor)


def feed_row(event: dict[str, Any], config: CentralConfig, today: date | None = None, *,
             zones_differ: bool = False) -> dict[str, Any]:
    """What a feed row shows for one stored answer (times in its site's zone).

    ``HH:MM`` today and the date before it on other days; with sites of different zones in the
    feed (``zones_differ``), always the date and the zone's offset from UTC, so rows read in order.
    """
    site = config.site(event["site"])
    desk = site.desks.get(event["device"])
    moment = protocol.parse_timestamp(event.get("placed_at") or event["ts"])
    local = moment.astimezone(site.tz)
    same_day = today is not None and local.date() == today and not zones_differ
    return {
        "id": event["ingest_id"],
        "site": event["site"], "site_name": site.name,
        "device": event["device"], "desk_name": desk.name if desk else event["device"],
        "rating": event["rating"], "scale": event["scale"],
        "words": rating_words(event["rating"], event["scale"]),
        "reasons": [reason_words(r) for r in event.get("reasons", [])],
        "flags": [_flag_words(f) for f in event.get("flags", [])],
        "iso": local.isoformat(timespec="seconds"),
        "time": local.strftime("%H:%M") if same_day else _local_words(local),
        "hm": local.strftime("%H:%M"), "day": i18n.day(local.date()),
        "zone": tz_offset_words(site.tz, moment) if zones_differ else None,
    }


def _local_words(local: datetime) -> str:
    """A local moment as "Sun 22 Nov, 14:05" in the page's language."""
    if i18n.current() == i18n.DEFAULT:
        return local.strftime("%a %d %b, %H:%M")
    return f"{i18n.day(local.date(), 'EEE d MMM')}, {local:%H:%M}"


def _local(moment: datetime, tz: ZoneInfo) -> str:
    return _local_words(moment.astimezone(tz))


def _ago(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 90:
        return _("just now") if seconds < 30 else _("1 min ago")
    if seconds < 90 * 60:
        return _("%(n)s min ago") % {"n": seconds // 60}
    if seconds < 36 * 3600:
        return _("%(n)s h ago") % {"n": seconds // 3600}
    return ngettext("%(num)s day ago", "%(num)s days ago", seconds // 86400) % {"num": seconds // 86400}


# --------------------------------------------------------------------------- charts (inline SVG)

def trend_chart(days: list[dict[str, Any]], *, width: int = 900, height: int = 240,
                max_labels: int = 8, left: int = 58) -> dict[str, Any]:
    """The daily index as an SVG line (gaps where a day has too few answers), answers as bars.

    At most ``max_labels`` dates label the axis, counted back from the newest day (always labelled);
    ``left`` is the room for the axis' words.
    """
    right, top, bottom = 10, 12, 26
    plot_w, plot_h = width - left - right, height - top - bottom
    n = max(1, len(days))
    step = plot_w / n
    most = max([d["counted"] for d in days] + [1])
    bar_h = 34  # the answer-count strip under the index lines
    index_h = plot_h - bar_h - 22
    points: list[list[tuple[float, float]]] = [[]]
    bars, closed, labels, dots = [], [], [], []
    for i, d in enumerate(days):
        x = left + step * i + step / 2
        if not d.get("open", True):
            closed.append({"x": left + step * i, "w": step})
        if d["counted"]:
            h = max(1.5, bar_h * d["counted"] / most)
            bars.append({"x": x - min(step * 0.35, 8), "w": min(step * 0.7, 16), "y": top + plot_h - h, "h": h})
        if d["index"] is None:
            if points[-1]:
                points.append([])
            continue
        y = top + index_h * (1 - d["index"] / 100)
        points[-1].append((x, y))
        dots.append({"x": x, "y": y})
    every = max(1, math.ceil(n / max_labels))
    for i, d in enumerate(days):
        if (n - 1 - i) % every == 0:
            day = date.fromisoformat(d["date"])
            x = left + step * i + step / 2
            newest = i == n - 1  # ends at its day's right edge, inside the chart
            labels.append({"x": min(x + step / 2, width - 2) if newest else x, "anchor": "end" if newest else "middle",
                           "text": i18n.day(day, "d MMM"), "newest": newest})
    lines = [" ".join(f"{x:.1f},{y:.1f}" for x, y in seg) for seg in points if len(seg) > 1]
    singles = [seg[0] for seg in points if len(seg) == 1]
    grid = [{"y": top + index_h * (1 - v / 100), "label": str(v)} for v in (0, 25, 50, 75, 100)]
    return {"width": width, "height": height, "left": left, "right": width - right, "lines": lines,
            "singles": singles, "dots": dots if n <= 45 else [], "bars": bars, "closed": closed,
            "labels": labels, "grid": grid, "top": top, "plot_h": plot_h, "bar_top": top + plot_h - bar_h,
            "base": top + plot_h,
            "most": most}


def trend_summary(days: list[dict[str, Any]]) -> str:
    """The trend in one sentence (the chart's text alternative)."""
    scored = [d for d in days if d["index"] is not None]
    if not scored:
        return _("No day in this range has enough answers for an index.")
    low = min(scored, key=lambda d: d["index"])
    high = max(scored, key=lambda d: d["index"])
    last = scored[-1]
    return _("Daily index over %(days)s days, %(scored)s with enough answers: lowest %(low)s on %(low_day)s, "
             "highest %(high)s on %(high_day)s, latest %(last)s on %(last_day)s.") % {
        "days": len(days), "scored": len(scored), "low": fmt_index(low["index"]), "low_day": low["date"],
        "high": fmt_index(high["index"]), "high_day": high["date"], "last": fmt_index(last["index"]),
        "last_day": last["date"]}


# --------------------------------------------------------------------------- page contexts

def overview_context(store: Store, config: CentralConfig, f: Filters, *, now: datetime | None = None,
                     seen: int | None = None, held: list[int] | None = None,
                     kiosks: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything the overview (and its refreshed parts) shows for the filters ``f``.

    ``seen``: the newest answer the page's live feed has had (see :func:`central.scores.aggregate`);
    ``held``: gets the ingest ids its numbers hold (:func:`central.scores.shared_view`);
    ``kiosks``: :func:`fleet` for the filters, when the caller has it already.
    """
    now = now or datetime.now(UTC)
    minute = now.replace(second=0, microsecond=0)  # the numbers' key: pages within a minute share them
    include = _include_flagged(config, f)
    agg = _aggregate(store, config, site=f.site, device=f.device, start=f.start, end=f.end,
                     include_flagged=include, now=minute, seen=seen, held=held)
    every_desk = agg if f.device is None else _aggregate(store, config, site=f.site, start=f.start, end=f.end,
                                                         include_flagged=include, now=minute, seen=seen, held=held)
    today = agg["today"]  # each site's own local today
    ratings = _rating_shares(agg)
    other_scales = agg["counted"] - sum(agg.get("ratings") or [])  # answers on a less common scale
    counted_reasons = sum(r["count"] for r in agg["reasons"])
    reasons = [{**r, "words": reason_words(r["reason"]),
                "share": r["count"] / counted_reasons if counted_reasons else 0,
                "of_max": r["count"] / agg["reasons"][0]["count"] if agg["reasons"] else 0}
               for r in agg["reasons"][:8]]
    heat = agg["heatmap"]
    heat_rows = [{"day": _weekday(i), "cells": cells} for i, cells in enumerate(heat["cells"])]
    desks = sorted(every_desk["desks"], key=lambda d: (d["site_name"], d["name"]))
    for d in desks:
        d["selected"] = d["device"] == f.device and (f.site is None or d["site"] == f.site)
    sites = _site_choices(config, every_desk["desks"], f)
    tz_names = {s["slug"]: s["timezone"] for s in sites}
    cmp = compare.comparisons(store, config, site=f.site, device=f.device, include_flagged=include, now=minute,
                              seen=seen, held=held)
    feed_zones = [tz_names.get(f.site, config.site(f.site).timezone)] if f.site else tz_names.values()
    zones_differ = len({tz_offset_words(ZoneInfo(z), now) for z in feed_zones}) > 1
    site_name = config.site(f.site).name if f.site else None
    desk_name = None
    if f.device:
        desk_name = next((d["name"] for d in every_desk["desks"] if d["device"] == f.device), f.device)
    return {
        "f": f, "agg": agg, "today": today, "ratings": ratings, "other_scales": other_scales, "reasons": reasons,
        "reasons_total": counted_reasons,
        # The axis says "answers" in the page's language: room for its longest word.
        "trend": trend_chart(agg["days"], left=max(58, round(10 + 7.5 * len(_("answers"))))),
        "trend_text": trend_summary(agg["days"]),
        "trend_phone": trend_chart(agg["days"][-PHONE_DAYS:], width=360, height=230, max_labels=4,
                                   left=max(66, round(12 + 8.5 * len(_("answers"))))),
        "phone_days": min(PHONE_DAYS, len(agg["days"])),
        "weeks": agg["weeks"], "heat_hours": heat["hours"], "heat_rows": heat_rows,
        "heat_by_hour": _heat_by_hour(heat, agg["timezone"], now),
        "cmp": cmp, "compare_rows": _compare_rows(cmp, f), "attention": cmp["ranking"]["ranked"][:ATTENTION_ROWS],
        "zones_differ": zones_differ,
        "desks": desks, "sites": sites, "tz_names": tz_names,
        "fleet": kiosks if kiosks is not None else fleet(store, config, site=f.site, device=f.device, now=now),
        "include_flagged": include, "default_flagged": bool(config.dashboard.include_flagged),
        "min_answers": agg["min_answers"], "scope": _scope_words(site_name, desk_name),
        "now": now,
        "js_data": {
            "tz": tz_names, "sites": {s["slug"]: s["name"] for s in sites},
            "desks": {f"{s['slug']}/{d['slug']}": d["name"] for s in sites for d in s["desks"]},
            **js_words(),
            "maxRows": FEED_ROWS, "oneSite": f.site is not None, "zonesDiffer": zones_differ,
        },
    }


def _compare_rows(cmp: dict[str, Any], f: Filters) -> list[dict[str, Any]]:
    """The rows of "Compared with before": every site (all sites in view), or a site and its desks, or a desk."""
    sites, desks = cmp["sites"], cmp["desks"]
    if f.device is not None:
        picked = [d for d in desks if d["device"] == f.device]
        return [{**s, "kind": "site"} for s in sites if s["site"] in {d["site"] for d in picked}] + \
            [{**d, "kind": "desk"} for d in picked]
    if f.site is None and len(sites) > 1:
        return [{**s, "kind": "site"} for s in sites]
    return [{**s, "kind": "site"} for s in sites] + [{**d, "kind": "desk"} for d in desks]


def _heat_by_hour(heat: dict[str, Any], timezone: str | None, now: datetime) -> dict[str, Any]:
    """The heatmap turned for a phone: an hour per row, a weekday per column (it fits 390 px, no sideways scroll).

    With one time zone in view, today's weekday and the current hour are marked.
    """
    local = now.astimezone(ZoneInfo(timezone)) if timezone else None
    rows = [{"hour": h, "now": local is not None and local.hour == h,
             "cells": [{**heat["cells"][wd][i], "day": _weekday(wd)} for wd in range(7)]}
            for i, h in enumerate(heat["hours"])]
    return {"rows": rows, "today": local.weekday() if local else None}


def tz_offset_words(tz: ZoneInfo, moment: datetime) -> str:
    """A zone's offset from UTC at ``moment``: "UTC", "UTC+9", "UTC−5", "UTC+5:30" (what the feed shows)."""
    offset = moment.astimezone(tz).utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    if minutes == 0:
        return "UTC"
    sign = "+" if minutes > 0 else "−"
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours}" + (f":{rest:02d}" if rest else "")


def _rating_shares(agg: dict[str, Any]) -> list[dict[str, Any]]:
    scale, counts = agg.get("scale"), agg.get("ratings") or []
    if not scale or not counts:
        return []
    total = sum(counts) or 1
    rows = []
    for i, count in enumerate(counts):
        rating = i + 1
        rows.append({"rating": rating, "scale": scale, "words": rating_words(rating, scale), "count": count,
                     "share": count / total, "pct": round(100 * count / total)})
    return list(reversed(rows))  # best first, as people read a result


def _site_choices(config: CentralConfig, desks: list[dict[str, Any]], f: Filters) -> list[dict[str, Any]]:
    """Sites and their desks for the filter form: configured ones and any with answers."""
    found: dict[str, dict[str, str]] = {}
    for slug, site in config.sites.items():
        found.setdefault(slug, {})
        for d_slug, desk in site.desks.items():
            found[slug][d_slug] = desk.name
    for d in desks:
        found.setdefault(d["site"], {})[d["device"]] = d["name"]
    if f.site:
        found.setdefault(f.site, {})
        if f.device:
            found[f.site].setdefault(f.device, f.device)
    out: list[dict[str, Any]] = []
    for slug, desk_names in found.items():
        site = config.site(slug)
        desks = [{"slug": k, "name": v} for k, v in desk_names.items()]
        out.append({"slug": slug, "name": site.name, "timezone": site.timezone,
                    "desks": sorted(desks, key=lambda d: d["name"].lower())})
    return sorted(out, key=lambda s: str(s["name"]).lower())


def _scope_words(site_name: str | None, desk_name: str | None) -> str:
    if desk_name and site_name:
        return f"{desk_name}, {site_name}"
    return desk_name or site_name or _("All sites")


def tv_context(store: Store, config: CentralConfig, display: DisplayToken, *,
               now: datetime | None = None, seen: int | None = None, held: list[int] | None = None,
               feed: bool = True) -> dict[str, Any]:
    """What the wall TV shows for one display token: today at its site or desk.

    ``held``: as :func:`overview_context`'s; ``feed=False``: without the newest answers (its
    refreshed parts do not show them: the page's live feed does).
    """
    now = now or datetime.now(UTC)
    site = config.site(display.site)
    local = now.astimezone(site.tz)
    include = bool(config.dashboard.include_flagged)
    agg = _aggregate(store, config, site=display.site, device=display.device, start=local.date(),
                     end=local.date(), include_flagged=include, now=now.replace(second=0, microsecond=0),
                     seen=seen, held=held)
    desk = site.desks.get(display.device) if display.device else None
    events, cursor = recent_feed(store, config, site=display.site, device=display.device, limit=TV_ROWS,
                                 now=now) if feed else ([], "")
    index = agg["index"]
    face = index_face(index) if index is not None else None
    modes = {getattr(d, "feed", "live") for d in site.desks.values()} if display.device is None else \
        {getattr(desk, "feed", "live") if desk else "live"}
    return {
        "display": display, "site": site, "desk_name": desk.name if desk else display.device,
        "agg": agg, "index": index, "big_face": face, "ratings": _rating_shares(agg),
        "rows": [feed_row(e, config, local.date()) for e in events], "cursor": cursor,
        "feed_hidden": modes == {"aggregated"},
        "clock": local.strftime("%H:%M"), "date_words": _date_words(local.date()),
        "min_answers": agg["min_answers"], "timezone": site.timezone,
        "js_data": {
            "tz": {site.slug: site.timezone}, "sites": {site.slug: site.name},
            "desks": {f"{site.slug}/{d.slug}": d.name for d in site.desks.values()
                      if display.device in (None, d.slug)},
            **js_words(),
            "maxRows": TV_ROWS, "oneDesk": display.device is not None, "timezone": site.timezone,
            "refreshS": 60,
        },
    }


# --------------------------------------------------------------------------- routes

def _globals() -> dict[str, Any]:
    return {"version": __version__, "fmt_index": fmt_index, "face_colour": face_colour, "mood": mood,
            "state_words": state_words, "change_text": compare.change_text, "target_text": compare.target_text,
            "target_short_text": compare.target_short_text,
            "shown_index": compare.shown,
            "rating_words": rating_words, "index_band": index_band, "index_face": index_face,
            "FACE_COLOURS": FACE_COLOURS, "RATING_WORDS": RATING_WORDS}


def _dayrange(start: str, end: str) -> str:
    """``2026-10-24``, ``2026-11-22`` -> "24 Oct – 22 Nov 2026" (one date when they are equal)."""
    return i18n.day_range(start, end)


def _dayname(value: str) -> str:
    """``2026-11-22`` -> "Sun 22 Nov"."""
    return i18n.day(value)


def _week_start(value: str) -> str:
    """``2026-11-26`` -> ``2026-11-23``, the Monday of its ISO week."""
    d = date.fromisoformat(value)
    return (d - timedelta(days=d.weekday())).isoformat()


TEMPLATES.env.globals.update(_globals())
TEMPLATES.env.filters.update(dayrange=_dayrange, dayname=_dayname, week_start=_week_start,
                             weekday_name=lambda value: _weekday(date.fromisoformat(value).weekday()))


def _weekday(index: int) -> str:
    """Monday (0) to Sunday (6), short, in the page's language ("Mon", "Mo.")."""
    return WEEKDAYS[index] if i18n.current() == i18n.DEFAULT else i18n.weekday(index)


def _date_words(day: date) -> str:
    """The TV's date: "Sunday 22 November", "Sonntag, 22. November"."""
    if i18n.current() == i18n.DEFAULT:
        return day.strftime("%A %d %B").replace(" 0", " ")
    return i18n.day(day, "EEEE d MMMM")


def js_words() -> dict[str, Any]:
    """What the live feed's script says, in the page's language (and the language for its dates)."""
    return {"lang": i18n.current(), "words": rating_words_all(), "reasons": reason_words_all(),
            "flags": {flag: _(words) for flag, words in FLAG_WORDS.items()},
            "t": {"connecting": _("connecting…"), "live": _("live"), "reconnecting": _("reconnecting…")}}


#: The dashboard's HTML routes (none of them in the OpenAPI description); central.web.create_app mounts ``static/``.
router = APIRouter(include_in_schema=False)


def _overview_page(request: Request, web: WebState, partial: bool) -> HTMLResponse:
    store, config = web.store, web.config
    now = datetime.now(UTC)
    f, refused = filters.parse({name: request.query_params.get(name) for name in filters.NAMES}, now)
    if partial:
        return _overview_parts_page(store, config, f, now, _seen(request))
    ctx = overview_context(store, config, f, now=now)
    ctx["problems"] = [f"{exc}; “{exc.name}” was ignored" for exc in refused]
    # The guard (central/auth.py) sets the signed-in account; none here means no accounts exist.
    ctx["open_dashboard"] = getattr(request.state, "account", None) is None
    if not partial:
        events, cursor = recent_feed(store, config, site=f.site, device=f.device, limit=FEED_ROWS, now=now)
        today = now.date()
        ctx["feed"] = [feed_row(e, config, today=_site_today(config, e["site"], now) or today,
                                zones_differ=ctx["zones_differ"]) for e in events]
        ctx["cursor"] = cursor
        ctx["stream_url"] = "/api/stream?" + urlencode(
            {k: v for k, v in {"site": f.site, "device": f.device, "after": cursor}.items() if v})
    return TEMPLATES.TemplateResponse(request, "overview.html", ctx, headers={"Cache-Control": "no-store"})


def _overview_parts_page(store: Store, config: CentralConfig, f: Filters, now: datetime,
                         seen: int | None) -> HTMLResponse:
    """The overview's refreshed parts: rendered once per view, numbers, language and kiosk health, and
    the same bytes handed to every page asking for them (:func:`shared_parts`)."""
    kiosks = fleet(store, config, site=f.site, device=f.device, now=now)
    include = _include_flagged(config, f)
    view = ("overview", f.site, f.device, f.start, f.end, include, i18n.current(),
            now.replace(second=0, microsecond=0), _fingerprint(kiosks))

    def render(held: list[int]) -> bytes:
        ctx = overview_context(store, config, f, now=now, seen=seen, held=held, kiosks=kiosks)
        return TEMPLATES.get_template("_overview_parts.html").render(ctx).encode()

    body = shared_parts(store, config, view, render, seen=seen)
    return HTMLResponse(body, headers={"Cache-Control": "no-store"})


def _fingerprint(value: Any) -> str:
    """A digest of plain data (what the kiosk-health part shows): two equal values, one digest."""
    return hashlib.blake2b(repr(value).encode(), digest_size=16).hexdigest()


def shared_parts(store: Store, config: CentralConfig, view: tuple[Any, ...], render: Callable[[list[int]], bytes],
                 *, seen: int | None = None) -> bytes:
    """A page's refreshed parts as HTML, rendered once and shared by every page asking for the same.

    ``view`` names everything the HTML depends on besides the answers: the
    filters, the page's language, the minute, the kiosk health shown. Nothing of
    the asker's own goes in (no account, no form token: the parts have none).
    ``render(held)`` renders them, appending to ``held`` the ingest ids its numbers
    hold (:func:`central.scores.shared_view`); the HTML holds the smallest. It is
    handed out under the numbers' own rule: to a page whose live feed has had no
    answer after it (``seen``), or while no newer answer is stored. Pages asking
    while it is rendered wait for that rendering.
    """
    key = (id(store), id(config), *view)

    def suits(entry: tuple[Store, CentralConfig, int, bytes] | None) -> bool:
        if entry is None or entry[0] is not store or entry[1] is not config:
            return False
        return (seen is not None and entry[2] >= seen) or entry[2] == reads.last_ingest_id(store)

    with _PARTS_LOCK:
        entry = _PARTS.get(key)
        turn = _PARTS_TURNS.setdefault(key, threading.Lock())
    if suits(entry):
        assert entry is not None
        return entry[3]
    with turn:
        with _PARTS_LOCK:
            entry = _PARTS.get(key)
        if suits(entry):
            assert entry is not None
            return entry[3]
        held: list[int] = []
        body = render(held)
        renders[view[0]] = renders.get(view[0], 0) + 1
        with _PARTS_LOCK:
            if held:
                # the entry holds the store and the configuration: their ids (in the key) stay theirs
                _PARTS[key] = (store, config, min(held), body)
                _PARTS.move_to_end(key)
            while len(_PARTS) > SHARED_PARTS:
                gone, _ = _PARTS.popitem(last=False)
                _PARTS_TURNS.pop(gone, None)
    return body


#: How many rendered parts are kept (views × languages × minutes, up to ~100 kB each; newest used last).
SHARED_PARTS: Final = 64
_PARTS: OrderedDict[tuple[Any, ...], tuple[Store, CentralConfig, int, bytes]] = OrderedDict()
_PARTS_LOCK = threading.Lock()
_PARTS_TURNS: dict[tuple[Any, ...], threading.Lock] = {}
#: Renderings of shared parts so far, per kind of page ("overview", "tv"): what the tests count.
renders: dict[str, int] = {}


@router.get("/", response_class=HTMLResponse)
async def overview(request: Request, web: WebState = Depends(deps.web_state)) -> HTMLResponse:
    """The overview for the filters in the URL."""
    return await anyio.to_thread.run_sync(_overview_page, request, web, False)


@router.get("/partials/overview", response_class=HTMLResponse)
async def overview_parts(request: Request, web: WebState = Depends(deps.web_state)) -> HTMLResponse:
    """The overview's numbers alone, for the page's script to swap in."""
    return await anyio.to_thread.run_sync(_overview_page, request, web, True)


def _seen(request: Request) -> int | None:
    """``?seen=``: the newest ingest id in the page's feed cursor (dashboard.js sends it); None if absent or not one."""
    cursor = Cursor.parse(request.query_params.get("seen") or "")
    return None if cursor is None else max([cursor.live, *(part for _, part in cursor.delayed)])


def _display_for(request: Request, config: CentralConfig, token: str) -> DisplayToken:
    # The guard (central/auth.py) found the token, in the file or the store.
    display: DisplayToken | None = getattr(request.state, "display", None) or config.dashboard.display_token(token)
    if display is None:
        raise HTTPException(status_code=404, detail="Not Found")
    return display


def _tv_page(request: Request, web: WebState, token: str, partial: bool) -> HTMLResponse:
    display = _display_for(request, web.config, token)
    if partial:
        return _tv_parts_page(web.store, web.config, display, _seen(request))
    ctx = tv_context(web.store, web.config, display)
    ctx["token"] = token
    ctx["stream_url"] = f"/tv/{token}/stream?" + urlencode({"after": ctx["cursor"]})
    return TEMPLATES.TemplateResponse(request, "tv.html", ctx, headers=_TV_HEADERS)


def _tv_parts_page(store: Store, config: CentralConfig, display: DisplayToken, seen: int | None) -> HTMLResponse:
    """The TV's refreshed parts, shared like the overview's (the token itself is not in them)."""
    now = datetime.now(UTC)
    view = ("tv", display.site, display.device, i18n.current(), now.replace(second=0, microsecond=0))

    def render(held: list[int]) -> bytes:
        ctx = tv_context(store, config, display, now=now, seen=seen, held=held, feed=False)
        return TEMPLATES.get_template("_tv_parts.html").render(ctx).encode()

    return HTMLResponse(shared_parts(store, config, view, render, seen=seen), headers=_TV_HEADERS)


@router.get("/tv/{token}", response_class=HTMLResponse)
async def tv(request: Request, token: str, web: WebState = Depends(deps.web_state)) -> HTMLResponse:
    """The wall-TV view of a display token."""
    return await anyio.to_thread.run_sync(_tv_page, request, web, token, False)


@router.get("/tv/{token}/partial", response_class=HTMLResponse)
async def tv_parts(request: Request, token: str, web: WebState = Depends(deps.web_state)) -> HTMLResponse:
    """The wall-TV's numbers alone, for its script to swap in."""
    return await anyio.to_thread.run_sync(_tv_page, request, web, token, True)


@router.get("/tv/{token}/stream")
async def tv_stream(request: Request, token: str, web: WebState = Depends(deps.web_state)) -> StreamingResponse:
    """The TV's live feed: /api/stream for its site or desk only, reached with its token."""
    display = _display_for(request, web.config, token)
    resume = stream.resume_cursor(request.headers.get("last-event-id"), request.query_params.get("after"))
    feed = Feed(web.store, web.config, site=display.site, device=display.device)
    return await stream.feed_response(request, feed, resume, web)


_TV_HEADERS: Final = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex", "Referrer-Policy": "no-referrer"}


def _site_today(config: CentralConfig, site: str, now: datetime) -> date:
    return now.astimezone(config.site(site).tz).date()


__all__ = ["FACE_COLOURS", "REASON_WORDS", "RATING_WORDS", "overview_context", "rating_words", "router",
           "tv_context"]

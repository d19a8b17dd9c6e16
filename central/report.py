"""The weekly report of one site: the page to print (``/report/weekly``), the e-mail's HTML and text, the CLI.

What it says, for one ISO week (Monday to Sunday, the site's local dates):
the index and its change against the week before (in words, like the
dashboard's comparisons: :mod:`central.compare`), progress against the site's
``target``, the index per day, every desk worst first (the worst one named:
the lowest index among desks with at least ``[dashboard] rank_min_answers``
counted answers in the week, the ranking's rule), the reasons customers gave
most, the worst hours of the day (from ``min_answers`` answers an hour), and
the kiosks' health as central knows it when the report is made.

Every number comes from the rollups (:func:`central.reads.days`), as the
dashboard's do. The page and the e-mail are one template: styles inline, no
script, no image, no external asset, so the e-mail shows the same in a mail
client; the page adds a print stylesheet and links to other weeks.
Sending it is :mod:`central.mail`'s job (not here).

    deskpulse-central weekly-report --site lhr-t5 --week 2026-W47 --out week47.html
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import anyio.to_thread
import jinja2
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from central import __version__, compare, deps, i18n, reads, scores
from central.config import DEFAULT_PATH, CentralConfig, SiteConfig, load
from central.deps import WebState
from central.filters import EARLIEST, LATEST
from central.i18n import _
from central.scores import Tally
from central.store import Store
from display import texts
from sync import protocol
from sync.errors import DeskPulseError

#: ``2026-W47``: an ISO week as the report's URL and command line take it.
WEEK_RE: Final = re.compile(r"^([0-9]{4})-W([0-9]{2})$")

#: How many reasons and hours of the day the report lists.
TOP_REASONS: Final = 5
WORST_HOURS: Final = 3

WEEKDAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

_ENV: Final = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(Path(__file__).resolve().parent / "templates")),
    autoescape=jinja2.select_autoescape(("html",)), trim_blocks=False, lstrip_blocks=False)
i18n.install(_ENV)


class ReportError(DeskPulseError, ValueError):
    """A report that cannot be made: an unknown site, or a week that is not one (the message says which)."""


@dataclass(frozen=True, slots=True)
class Email:
    """The weekly report as an e-mail: a subject, the HTML body and a plain-text one (multipart/alternative)."""

    subject: str
    html: str
    text: str


# --------------------------------------------------------------------------- weeks

def week_name(monday: date) -> str:
    """``2026-11-16`` -> ``2026-W47``."""
    iso = monday.isocalendar()
    return f"{iso.year}-W{iso.week:02d}"


def parse_week(text: str) -> date:
    """The Monday of an ISO week written ``YYYY-Www`` (``2026-W47``).

    Raises:
        ReportError: not that shape, no such week (W53 exists in some years only), or out of range.
    """
    m = WEEK_RE.fullmatch(text.strip())
    if not m:
        raise ReportError(f"week {text!r} is not an ISO week like 2026-W47 (year, -W, two digits)")
    try:
        monday = date.fromisocalendar(int(m.group(1)), int(m.group(2)), 1)
    except ValueError:
        raise ReportError(f"week {text!r} does not exist (weeks run from W01 to W52, W53 in some years)") from None
    if not EARLIEST <= monday <= LATEST:
        raise ReportError(f"week {text!r} is out of range ({EARLIEST.year} to {LATEST.year})")
    return monday


def last_full_week(site: SiteConfig, now: datetime) -> date:
    """The Monday of the last complete week at ``site`` (the week before the one its today falls in)."""
    today = now.astimezone(site.tz).date()
    return today - timedelta(days=today.weekday() + 7)


# --------------------------------------------------------------------------- the numbers

def known_sites(store: Store, config: CentralConfig) -> list[str]:
    """Every site a report can be made for: configured ones and ones that sent anything, by name."""
    slugs = set(config.sites) | {s for s, _ in reads.desks(store)}
    return sorted(slugs, key=lambda s: (config.site(s).name.lower(), s))


def weekly(store: Store, config: CentralConfig, site: str, week: date | None = None, *,
           now: datetime | None = None) -> dict[str, Any]:
    """Everything the weekly report of ``site`` says about the week starting on Monday ``week``.

    Args:
        store: the store to read.
        config: sites (zone, target, desks) and the dashboard's settings (minimums, flagged answers).
        site: the site's slug.
        week: the week's Monday (local date); None: the last complete week at the site.
        now: when the report is made (the kiosks' health is as of then).

    Raises:
        ReportError: ``site`` is not known, ``week`` is no Monday or has not begun at the site.
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    if site not in known_sites(store, config):
        known = ", ".join(known_sites(store, config)) or "none yet"
        raise ReportError(f"no site {site!r}: not in the configuration and no kiosk of it has sent anything "
                          f"(known: {known})")
    cfg = config.site(site)
    local_now = now.astimezone(cfg.tz)
    monday = last_full_week(cfg, now) if week is None else week
    if monday.weekday() != 0:
        raise ReportError(f"{monday} is not a Monday (a week starts on Monday)")
    if monday > local_now.date():
        raise ReportError(f"week {week_name(monday)} has not begun at {cfg.name} (today is {local_now.date()} there)")
    sunday = monday + timedelta(days=6)
    before = monday - timedelta(days=7)
    minimum = config.dashboard.min_answers
    rank_min = max(config.dashboard.rank_min_answers, minimum)
    flagged_too = config.dashboard.include_flagged

    rows, given = reads.days(store, scores.zone_of(config), site=site, first=before, last=sunday)
    week_tally, prev_tally = Tally(), Tally()
    total = flagged = 0
    per_day = {monday + timedelta(days=i): Tally() for i in range(7)}
    per_hour = [Tally() for _ in range(24)]
    desks: dict[str, list[Tally]] = {d: [Tally(), Tally()] for d in cfg.desks}
    for row in rows:
        this_week = row.day >= monday
        count = sum(row.ratings)
        if this_week:
            total += count
            flagged += count if row.flagged else 0
        if row.flagged and not flagged_too:
            desks.setdefault(row.device, [Tally(), Tally()])
            continue
        steps = sum(n * r for r, n in enumerate(row.ratings))
        desks.setdefault(row.device, [Tally(), Tally()])[0 if this_week else 1].add_steps(row.scale, count, steps)
        if not this_week:
            prev_tally.add_steps(row.scale, count, steps)
            continue
        week_tally.add_steps(row.scale, count, steps)
        per_day[row.day].add_steps(row.scale, count, steps)
        for hour in range(24):
            if row.hours[hour]:
                per_hour[hour].add_steps(row.scale, row.hours[hour], row.steps[hour])
    for desk_slug in {d for s, d in reads.desks(store, site)}:
        desks.setdefault(desk_slug, [Tally(), Tally()])

    index, prev_index = week_tally.index(minimum), prev_tally.index(minimum)
    desk_rows: list[dict[str, Any]] = []
    for slug, (now_t, prev_t) in desks.items():
        a, b = now_t.index(minimum), prev_t.index(minimum)
        desk_rows.append({"device": slug, "name": cfg.desk(slug).name, "index": a, "counted": now_t.counted,
                          "prev_index": b, "prev_counted": prev_t.counted, "ranked": now_t.counted >= rank_min,
                          "change": {**compare.change(a, b),
                                     "words": compare.change_words(a, b, _("the week before"))}})
    desk_rows.sort(key=lambda d: (not d["ranked"], d["index"] if d["index"] is not None else 101.0,
                                  -d["counted"], d["name"].lower()))
    ranked = [d for d in desk_rows if d["ranked"]]

    reason_counts: dict[str, list[int]] = {}
    for g in given:
        if g.flagged and not flagged_too:
            continue
        reason_counts.setdefault(g.reason, [0, 0])[0 if g.day >= monday else 1] += g.count
    reasons_total = sum(c[0] for c in reason_counts.values())
    reasons = [{"reason": key, "words": texts.reason(i18n.current(), key) if key in texts.REASONS else
                key.replace("_", " ").capitalize(), "count": c[0], "prev_count": c[1],
                "share": c[0] / reasons_total if reasons_total else 0.0}
               for key, c in sorted(reason_counts.items(), key=lambda kv: (-kv[1][0], kv[0])) if c[0]]

    hours = sorted((h for h in range(24) if per_hour[h].counted >= minimum),
                   key=lambda h: (per_hour[h].index(minimum) or 0.0, -per_hour[h].counted, h))
    worst_hours = [{"hour": h, "label": f"{h:02d}:00–{(h + 1) % 24:02d}:00", "index": per_hour[h].index(minimum),
                    "counted": per_hour[h].counted} for h in hours[:WORST_HOURS]]

    return {
        "site": site, "site_name": cfg.name, "timezone": cfg.timezone,
        "week": week_name(monday), "start": monday.isoformat(), "end": sunday.isoformat(),
        "prev_week": week_name(before), "next_week": week_name(monday + timedelta(days=7))
        if monday + timedelta(days=7) <= local_now.date() else None,
        "in_progress": sunday >= local_now.date(),
        "made_at": f"{_moment(local_now, year=True)} ({cfg.timezone})",
        "min_answers": minimum, "rank_min": rank_min, "include_flagged": flagged_too,
        "index": index, "counted": week_tally.counted, "total": total, "flagged": flagged,
        "prev_index": prev_index, "prev_counted": prev_tally.counted,
        "change": {**compare.change(index, prev_index),
                   "words": compare.change_words(index, prev_index, _("the week before"))},
        "target": cfg.target, "target_words": compare.target_words(index, cfg.target),
        "days": [{"date": d.isoformat(), "weekday": _weekday(d.weekday()),
                  "label": f"{WEEKDAYS[d.weekday()]} {d.day} {d:%b}", "day_month": _day_month(d), "counted": t.counted,
                  "index": t.index(minimum), "open": cfg.hours.get(d.weekday()) is not None,
                  "future": d > local_now.date()} for d, t in per_day.items()],
        "desks": desk_rows, "worst_desk": ranked[0] if ranked else None,
        "reasons": reasons[:TOP_REASONS], "reasons_total": reasons_total,
        "worst_hours": worst_hours,
        "kiosks": _kiosks(store, config, site, now),
    }


def _kiosks(store: Store, config: CentralConfig, site: str, now: datetime) -> dict[str, Any]:
    """The site's kiosks as central knows them now (their retained status and the gaps in their answers)."""
    cfg = config.site(site)
    rows = []
    for r in reads.device_health(store, site):
        seen = protocol.parse_timestamp(r["last_seen"]) if r["last_seen"] else None
        missing = sum(g["last"] - g["first"] + 1 for g in r["gaps"])
        problems = [a["message"] for a in r["alarms"] if a["code"] != protocol.TEST_MODE_ALARM]
        if r["last_error"]:
            problems.append(r["last_error"])
        if r["config_error"]:
            problems.append(_("refused a survey"))
        if r["clock_synced"] is False:
            problems.append(_("clock not set"))
        rows.append({"name": cfg.desk(r["device"]).name, "device": r["device"], "state": r["state"] or "no status",
                     "state_words": i18n.kiosk_state(r["state"]),
                     "test_mode": r["test_mode"], "backlog": r["backlog"], "missing": missing, "problems": problems,
                     "seen": _moment(seen.astimezone(cfg.tz)) if seen else None})
    in_service = [r for r in rows if r["state"] != "retired"]
    return {"rows": rows, "online": sum(1 for r in rows if r["state"] == "online"), "in_service": len(in_service),
            "testing": sum(1 for r in in_service if r["test_mode"]),
            "missing": sum(r["missing"] for r in rows), "backlog": sum(r["backlog"] or 0 for r in rows),
            "well": all(r["state"] == "online" and not r["test_mode"] and not r["missing"] and not r["problems"]
                        for r in in_service)}


# --------------------------------------------------------------------------- rendering

def _weekday(index: int) -> str:
    return WEEKDAYS[index] if i18n.current() == i18n.DEFAULT else i18n.weekday(index)


def _day_month(day: date) -> str:
    return f"{day.day} {day:%b}" if i18n.current() == i18n.DEFAULT else i18n.day(day, "d MMM")


def _moment(local: datetime, *, year: bool = False) -> str:
    """"Sun 22 Nov, 14:05" (with the year: "Sun 22 Nov 2026, 14:05") in the current language."""
    if i18n.current() == i18n.DEFAULT:
        return f"{local:%a} {local.day} {local:%b}" + (f" {local:%Y}" if year else "") + f", {local:%H:%M}"
    return f"{i18n.day(local.date(), 'EEE d MMM y' if year else 'EEE d MMM')}, {local:%H:%M}"


def _shown(index: float | None) -> str:
    return "–" if index is None else str(compare.shown(index))


def _band(index: float | None) -> int:
    return 0 if index is None else min(5, 1 + int(index // 20))


_ENV.globals.update(fmt=_shown, band=_band, version=__version__)


def render_html(report: dict[str, Any], *, page: bool = False, sites: list[dict[str, str]] | None = None,
                problem: str | None = None, request_path: str | None = None) -> str:
    """The report as one HTML document: inline styles, no script, no external asset.

    Args:
        report: what :func:`weekly` returns (None only with ``page``: the chooser alone).
        page: the printable page (a print stylesheet, links to other weeks and sites)
            rather than the e-mail's body.
        sites: the page's site chooser (``slug``, ``name``).
        problem: a sentence for the page's notice (a refused site or week).
        request_path: the page's own path and query (its language picker returns there); None: no picker.

    In the current language (:mod:`central.i18n`): the page's reader's; the e-mail's is English.
    """
    return _ENV.get_template("report_weekly.html").render(r=report, page=page, sites=sites or [],
                                                           problem=problem, request_path=request_path)


def subject(report: dict[str, Any]) -> str:
    """The e-mail's subject: "DeskPulse weekly report: Heathrow T5, 2026-W47 · index 72, 3 points better …"."""
    idx = _shown(report["index"])
    return (f"DeskPulse weekly report: {report['site_name']}, {report['week']} · index {idx}, "
            f"{report['change']['words']}")


def render_text(report: dict[str, Any]) -> str:
    """The report as plain text (the e-mail's alternative part)."""
    r = report
    lines = [f"{r['site_name']} · week {r['week']} ({r['start']} to {r['end']}, {r['timezone']})", ""]
    lines.append(f"Index {_shown(r['index'])}/100 from {r['counted']} counted answers ({r['change']['words']}; "
                 f"{_shown(r['prev_index'])} the week before).")
    if r["target_words"]:
        lines.append(f"Target: {r['target_words']}.")
    lines.append("")
    lines.append("Days: " + ", ".join(f"{d['weekday']} {_shown(d['index'])} ({d['counted']})" for d in r["days"]))
    if r["worst_desk"]:
        w = r["worst_desk"]
        lines.append(f"Worst desk: {w['name']}, {_shown(w['index'])} from {w['counted']} answers "
                     f"({w['change']['words']}).")
    else:
        lines.append(f"Worst desk: none has {r['rank_min']} counted answers this week.")
    if r["reasons"]:
        lines.append("Top reasons: " + ", ".join(f"{x['words']} {x['count']}" for x in r["reasons"]))
    if r["worst_hours"]:
        lines.append("Worst hours: " + ", ".join(f"{h['label']} {_shown(h['index'])} ({h['counted']})"
                                                 for h in r["worst_hours"]))
    k = r["kiosks"]
    lines.append(f"Kiosks now: {k['online']} of {k['in_service']} online"
                 + (f", {k['testing']} in test mode (answers not counted)" if k["testing"] else "")
                 + (f", {k['missing']} answers missing" if k["missing"] else "") + ".")
    lines += ["", f"Made {r['made_at']} by DeskPulse central {__version__}."]
    return "\n".join(lines) + "\n"


def email(store: Store, config: CentralConfig, site: str, week: date | None = None, *,
          now: datetime | None = None) -> Email:
    """The weekly report of ``site`` as an e-mail (what :mod:`central.mail` sends).

    Raises:
        ReportError: as :func:`weekly`.
    """
    report = weekly(store, config, site, week, now=now)
    return Email(subject=subject(report), html=render_html(report), text=render_text(report))


# --------------------------------------------------------------------------- the page

#: The weekly report's page (``/report/weekly?site=…&week=…``); mounted by central.web.create_app.
router = APIRouter(include_in_schema=False)


def _report_page(request: Request, web: WebState) -> HTMLResponse:
    store, config = web.store, web.config
    now = datetime.now(UTC)
    sites = [{"slug": s, "name": config.site(s).name} for s in known_sites(store, config)]
    site = (request.query_params.get("site") or "").strip() or (sites[0]["slug"] if len(sites) == 1 else "")
    week_text = (request.query_params.get("week") or "").strip()
    headers = {"Cache-Control": "no-store"}
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if not site:
        return HTMLResponse(render_html({}, page=True, sites=sites, request_path=here), headers=headers)
    try:
        week = parse_week(week_text) if week_text else None
        report = weekly(store, config, site, week, now=now)
    except ReportError as exc:
        return HTMLResponse(render_html({}, page=True, sites=sites, problem=str(exc), request_path=here),
                            status_code=404
                            if "no site" in str(exc) else 422, headers=headers)
    return HTMLResponse(render_html(report, page=True, sites=sites, request_path=here), headers=headers)


@router.get("/report/weekly", response_class=HTMLResponse)
async def weekly_page(request: Request, web: WebState = Depends(deps.web_state)) -> HTMLResponse:
    """A site's weekly report as a page to print or save (``site``; ``week`` = ``YYYY-Www``, default the last)."""
    return await anyio.to_thread.run_sync(_report_page, request, web)


# --------------------------------------------------------------------------- the command

EPILOG: Final = """\
The report is the e-mail's HTML: one file, styles inline, no script, no external
asset, so it opens the same in a browser and in a mail client. The same report is
served as a page to print at /report/weekly?site=SITE&week=YYYY-Www.

examples:
  deskpulse-central weekly-report --site lhr-t5 --out report.html
  deskpulse-central weekly-report --site lhr-t5 --mail-to manager@example.com   # through [mail]
  deskpulse-central weekly-report --site lhr-t5 --week 2026-W47 --out week47.html
  deskpulse-central weekly-report --site lhr-t5 --text --out -      # plain text on stdout

Sent with --mail-to, it goes through the SMTP server of central.toml's [mail] table
as one message with the HTML and a plain-text part. Run it weekly from a systemd
timer or cron (docs/operations.md, "Weekly reports").

Exit status: 0 written (or sent), 1 the database could not be read, the file
written or the e-mail sent, 2 a bad configuration, site or week.
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="deskpulse-central weekly-report",
        description="Write one site's weekly report (index and change against the week before, worst desk, "
                    "top reasons, worst hours, kiosk health) as an HTML file, or send it by e-mail.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--site", required=True, metavar="SLUG", help="the site (its slug, as in [sites.<slug>])")
    p.add_argument("--week", metavar="YYYY-Www", default=None,
                   help="the ISO week, e.g. 2026-W47 (default: the last complete week at the site)")
    p.add_argument("--out", metavar="FILE", help="where to write it ('-': standard output)")
    p.add_argument("--mail-to", action="append", default=[], metavar="ADDRESS",
                   help="send it by e-mail to this address through [mail]'s SMTP server (repeat for more)")
    p.add_argument("--text", action="store_true", help="write the plain-text version instead of HTML")
    p.add_argument("-c", "--config", type=Path, default=None, metavar="FILE",
                   help=f"central TOML file (default: {DEFAULT_PATH} if it exists)")
    p.add_argument("--db", metavar="URL", help="database URL, overriding the file's")
    return p


def main(argv: list[str]) -> int:
    """``deskpulse-central weekly-report …``; returns the exit status."""
    from sqlalchemy.exc import SQLAlchemyError

    p = parser()
    args = p.parse_args(argv)
    if args.out is None and not args.mail_to:
        p.error("say where the report goes: --out FILE, --mail-to ADDRESS, or both")
    try:
        if args.config is not None:
            config = load(args.config)
        else:
            config = load(DEFAULT_PATH) if DEFAULT_PATH.exists() else CentralConfig()
        config = config.with_overrides(db=args.db)
        week = parse_week(args.week) if args.week else None
    except DeskPulseError as exc:
        print(f"deskpulse-central: {exc}", file=sys.stderr)
        return 2
    from sqlalchemy.engine import make_url

    url = make_url(config.database_url)
    if url.drivername.startswith("sqlite") and url.database and not Path(url.database).is_file():
        print(f"deskpulse-central: no database at {url.database} (is --config or --db the one central uses?)",
              file=sys.stderr)
        return 1
    try:
        with Store(config.database_url) as store:
            if store.revision() is None:
                print(f"deskpulse-central: database {config.safe_database_url} has no tables yet "
                      "(run 'deskpulse-central migrate')", file=sys.stderr)
                return 1
            report = weekly(store, config, args.site, week)
    except ReportError as exc:
        print(f"deskpulse-central: {exc}", file=sys.stderr)
        return 2
    except (SQLAlchemyError, OSError) as exc:
        print(f"deskpulse-central: database {config.safe_database_url}: {exc}", file=sys.stderr)
        return 1
    if args.mail_to:
        from central import mail

        try:
            refused = mail.send(config.mail, args.mail_to, subject(report), render_html(report), render_text(report))
        except mail.MailError as exc:
            print(f"deskpulse-central: the report was not sent: {exc}", file=sys.stderr)
            return 1
        taken = [a for a in args.mail_to if a not in refused]
        print(f"weekly report of {report['site_name']}, {report['week']}: sent to {', '.join(taken)}"
              + (f"; refused by the server: {', '.join(refused)}" if refused else ""))
        if args.out is None:
            return 1 if refused else 0
    body = render_text(report) if args.text else render_html(report)
    try:
        if args.out == "-":
            sys.stdout.write(body)
        else:
            Path(args.out).write_text(body, "utf-8")
            print(f"{args.out}: weekly report of {report['site_name']}, {report['week']} "
                  f"({report['start']} to {report['end']})")
    except OSError as exc:
        print(f"deskpulse-central: cannot write {args.out}: {exc}", file=sys.stderr)
        return 1
    return 0

"""Screenshots of the admin's sites, survey and changes pages: ``python -m dev.admin_screenshots``.

Seeds the demo store of :mod:`dev.dashboard_screenshots`, starts a private
Mosquitto, adds an admin account, renames a site and a desk and publishes a
survey the way the pages do (through :mod:`central.sites` and
:mod:`central.surveys`, as account ``manager``), lets two kiosks report it in
force, then signs in with Debian's Chromium and photographs the pages.

    python -m dev.admin_screenshots --out docs/img
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from central.accounts import Accounts
from central.auth import hash_password
from central.config import from_dict
from central.sites import SiteBook, parse_site_form
from central.store import Store
from central.surveys import publish
from dev.broker import Mosquitto
from dev.dashboard_screenshots import DEMO_CONFIG, seed, serving
from sync import protocol

PASSWORD = "demo admin password"
SURVEY = {
    "scale": 5, "languages": ["en", "de", "fr"], "default_lang": "en", "followup_ratings": [1, 2],
    "question": {"en": "How was the baggage service today?", "de": "Wie war der Gepäckservice heute?",
                 "fr": "Comment était le service bagages aujourd'hui ?"},
    "followup_question": {"en": "What should we improve?"},
    "reasons": [{"key": "wait_time", "label": {"en": "Waiting time", "de": "Wartezeit", "fr": "Attente"}},
                {"key": "lost-bag", "label": {"en": "My bag was lost", "de": "Gepäck verloren", "fr": "Bagage perdu"}},
                {"key": "staff", "label": {"en": "Staff", "de": "Personal", "fr": "Personnel"}}],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dev.admin_screenshots", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/img"), help="folder for the PNGs (docs/img)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="deskpulse-admin-shots-") as tmp:
        broker = Mosquitto(Path(tmp) / "mosquitto").start()
        try:
            url = f"sqlite:///{Path(tmp) / 'demo.sqlite3'}"
            config = from_dict({**DEMO_CONFIG, "database": {"url": url}, "broker": {"url": broker.url}},
                               source="<demo>")
            with Store(url) as store:
                store.migrate()
                store.zones = lambda slug: config.site(slug).timezone
                print(f"seeded {seed(store, config)} answers", file=sys.stderr)
                Accounts(store).add("manager", hash_password(PASSWORD), "admin")
                book = SiteBook(store, config)
                form = {"name": "Fifth Avenue flagship", "timezone": "America/New_York", "target": "75",
                        **{f"hours_{d}": "09:00-19:00" for d in ("mon", "tue", "wed", "thu", "fri")},
                        "hours_sat": "10:00-18:00", "hours_sun": "closed"}
                book.save_site("nyc-5th", parse_site_form("nyc-5th", form), "manager")
                book.save_desk("lhr-t5", "bag-2", "Baggage desk 2 (oversize)", "manager")
                for desk in ("bag-1", "bag-2", "info"):  # the seeded answers' survey 3 in force
                    _status(store, desk, 3)
                done = publish(store, config.broker, "lhr-t5", "", SURVEY, "manager")
                for desk in ("bag-1", "bag-2"):  # two kiosks took it; the third has not yet
                    _status(store, desk, done.version)
                with serving(store, config) as base:
                    for path in shoot(base, args.out):
                        print(path)
        finally:
            broker.kill()
    return 0


def _status(store: Store, desk: str, survey: int) -> None:
    store.record_status({"schema": 1, "site": "lhr-t5", "device": desk, "state": "online",
                         "ts": protocol.utc_timestamp(), "version": "0.6.0",
                         "health": {"backlog": 0, "clock_synced": True, "survey": survey}})


def shoot(base: str, out: Path) -> list[Path]:
    from dev.browser import chromium

    out.mkdir(parents=True, exist_ok=True)
    saved = []
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        page.goto(base + "/login")
        page.fill("#name", "manager")
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(base + "/")
        for name, path in (("admin-sites", "/admin/sites"), ("admin-survey", "/admin/surveys/lhr-t5"),
                           ("admin-audit", "/admin/audit")):
            page.goto(base + path)
            target = out / f"{name}-1366.png"
            page.screenshot(path=str(target), full_page=True)
            saved.append(target)
        page.goto(base + "/admin/sites")
        page.fill("#tz-tyo-bay", "Tokio")
        page.click("#site-tyo-bay button[type=submit]")
        page.wait_for_selector("#site-tyo-bay .error")
        page.locator("#site-tyo-bay").screenshot(path=str(out / "admin-sites-error-1366.png"))
        saved.append(out / "admin-sites-error-1366.png")
        page.close()
    return saved


if __name__ == "__main__":
    raise SystemExit(main())

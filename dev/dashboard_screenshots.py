"""Screenshots of the staff dashboard over a realistic demo store: ``python -m dev.dashboard_screenshots``.

Seeds a fresh SQLite store with five weeks of answers from three sites in three
time zones (London, New York, Tokyo), seven desks with their own habits, follow-up
reasons, flagged answers (repeat presses, an installer's test taps), kiosk statuses
(one offline with a backlog) and a gap; serves central's web app on a free port
and photographs the overview and a wall TV in Debian's Chromium.

    python -m dev.dashboard_screenshots --out docs/img
    python -m dev.dashboard_screenshots --serve       # keep it running to look around
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from central.config import CentralConfig, from_dict
from central.store import Store
from sync import protocol

DEMO_TV_TOKEN = "demo-tv-heathrow-t5-0123456789abcdef"

DEMO_CONFIG: dict[str, Any] = {
    "sites": {
        "lhr-t5": {
            "name": "Heathrow T5 baggage", "timezone": "Europe/London",
            "hours": {"default": "06:00-22:00"}, "target": 75,
            "desks": {
                "bag-1": {"name": "Baggage desk 1"},
                "bag-2": {"name": "Baggage desk 2"},
                "info": {"name": "Information", "feed": "delayed", "delay_min": 15},
            },
        },
        "nyc-5th": {
            "name": "Fifth Avenue store", "timezone": "America/New_York",
            "hours": {"default": "09:00-19:00", "sat": "10:00-18:00", "sun": "closed"},
            "desks": {
                "front": {"name": "Front desk"},
                "pharmacy": {"name": "Pharmacy counter", "feed": "aggregated"},
            },
        },
        "tyo-bay": {
            "name": "Tokyo Bay hotel", "timezone": "Asia/Tokyo",
            "hours": {"default": "07:00-23:00"}, "target": 85,
            "desks": {
                "reception": {"name": "Reception"},
                "concierge": {"name": "Concierge"},
            },
        },
    },
    "dashboard": {
        "min_answers": 5,
        "tv": {"t5-wall": {"token": DEMO_TV_TOKEN, "site": "lhr-t5"}},
    },
}

#: Per desk: answers per open hour (mean), how good it is (0..1), scale, reasons it hears.
_HABITS: dict[tuple[str, str], tuple[float, float, int, tuple[str, ...]]] = {
    ("lhr-t5", "bag-1"): (3.2, 0.55, 5, ("wait_time", "information", "outcome", "friendliness")),
    ("lhr-t5", "bag-2"): (2.6, 0.74, 5, ("wait_time", "outcome", "expertise")),
    ("lhr-t5", "info"): (1.8, 0.82, 5, ("information", "wait_time")),
    ("nyc-5th", "front"): (2.4, 0.78, 5, ("wait_time", "friendliness", "expertise")),
    ("nyc-5th", "pharmacy"): (1.6, 0.7, 5, ("wait_time", "opening_hours", "information")),
    ("tyo-bay", "reception"): (1.4, 0.86, 4, ("wait_time", "friendliness")),
    ("tyo-bay", "concierge"): (0.9, 0.9, 4, ("expertise", "information")),
}


def demo_config(database_url: str) -> CentralConfig:
    """The demo's central configuration (three sites, seven desks, one wall TV)."""
    return from_dict({**DEMO_CONFIG, "database": {"url": database_url}}, source="<demo>")


def seed(store: Store, config: CentralConfig, *, now: datetime | None = None, days: int = 35,
         rng: random.Random | None = None) -> int:
    """Fill ``store`` with ``days`` days of demo answers ending at ``now``; returns how many."""
    rng = rng or random.Random(7)
    now = (now or datetime.now(UTC)).astimezone(UTC)
    batch: list[dict[str, Any]] = []
    for (site_slug, desk), (rate, quality, scale, reasons) in _HABITS.items():
        site = config.site(site_slug)
        epoch, seq = str(uuid.uuid4()), 0
        local_now = now.astimezone(site.tz)
        for back in range(days, -1, -1):
            day = (local_now - timedelta(days=back)).date()
            hours = site.hours.get(day.weekday())
            if hours is None:
                continue
            trend = 0.06 * (1 - back / days)  # a slow improvement over the weeks
            weekend = day.weekday() >= 5
            for hour in range(hours[0].hour, 24 if hours[1].hour == 0 else hours[1].hour):
                busy = 1.0 + 0.9 * (hour in (8, 9, 12, 13, 17, 18)) + 0.4 * weekend
                mean = rate * busy
                for _ in range(_poisson(rng, mean)):
                    minute, second = rng.randrange(60), rng.randrange(60)
                    local = datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=site.tz)
                    at = local.astimezone(UTC)
                    if at > now:
                        continue
                    q = quality + trend - 0.3 * (busy - 1.0) + rng.gauss(0, 0.05)
                    rating = _rating(rng, q, scale)
                    seq += 1
                    flags: list[str] = []
                    if rng.random() < 0.03:
                        flags.append("rapid_repeat")
                    if site_slug == "lhr-t5" and desk == "bag-2" and back == 9 and hour == 10:
                        flags.append("test")  # an installer's taps after a screen swap
                    picked = [rng.choice(reasons)] if rating <= max(1, scale // 2) and rng.random() < 0.8 else []
                    if seq in (412, 413) and desk == "bag-1":
                        continue  # two answers central never received: a gap in the fleet view
                    batch.append({
                        "schema": 1, "id": protocol.uuid7(), "site": site_slug, "device": desk, "epoch": epoch,
                        "seq": seq, "ts": protocol.utc_timestamp(at), "clock_synced": True,
                        "boot_id": str(uuid.uuid4()), "mono_ms": 1000 + seq, "rating": rating, "scale": scale,
                        "reasons": picked, "lang": rng.choice(("en", "en", "en", "de", "fr", "es")),
                        "source": "touch", "survey": 3, "flags": flags,
                    })
    # Stored in time order across desks, as a live fleet would send them (the feed follows ingest order).
    batch.sort(key=lambda e: e["ts"])
    for first in range(0, len(batch), 500):
        store.insert_events(batch[first:first + 500])
    stored = len(batch)
    for (site_slug, desk) in _HABITS:
        offline = (site_slug, desk) == ("nyc-5th", "pharmacy")
        testing = (site_slug, desk) == ("tyo-bay", "concierge")  # left in test mode after a screen swap
        store.record_status({
            "schema": 1, "site": site_slug, "device": desk, "state": "offline" if offline else "online",
            "ts": protocol.utc_timestamp(now), "version": "0.6.0",
            "health": {"backlog": 12 if offline else 0, "oldest_pending_age_s": 1800.0 if offline else None,
                       "clock_synced": True, "last_error": "broker unreachable" if offline else None,
                       "alarms": [{"code": protocol.TEST_MODE_ALARM,
                                   "message": "test mode: answers are flagged test"}] if testing else []},
        })
    return stored


def _poisson(rng: random.Random, mean: float) -> int:
    # Knuth's method: fine for the small means here.
    limit, k, p = pow(2.718281828459045, -mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _rating(rng: random.Random, quality: float, scale: int) -> int:
    """A rating around ``quality`` (0 worst .. 1 best) with a realistic spread."""
    x = min(1.0, max(0.0, rng.betavariate(max(0.3, 6 * quality), max(0.3, 6 * (1 - quality)))))
    return 1 + min(scale - 1, int(x * scale))


@contextmanager
def serving(store: Store, config: CentralConfig) -> Iterator[str]:
    """Central's web app over ``store`` on a free loopback port; yields its base URL."""
    import uvicorn

    from dev.broker import free_port

    app = _app(store, config)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           log_config=None, timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, name="screenshots-web", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the web server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        app.state.web.shutdown.set()
        server.should_exit = True
        thread.join(10)


def _app(store: Store, config: CentralConfig) -> Any:
    from central.web import create_app

    return create_app(store, config, keepalive_s=5.0)


def shoot(base_url: str, out: Path) -> list[Path]:
    """Photograph the overview at 1366×768, 1920×1080 and on a 390×844 phone (its first screen and the
    whole page), the wall TV at 1920×1080 and the weekly report of the London site."""
    from dev.browser import chromium

    out.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []
    with chromium() as browser:
        for width, height in ((1366, 768), (1920, 1080), (390, 844)):
            page = browser.new_page(viewport={"width": width, "height": height},
                                    device_scale_factor=2 if width < 600 else 1)
            page.goto(base_url + "/")
            page.wait_for_selector("#live.on", timeout=15_000)
            if width < 600:
                path = out / f"dashboard-phone-{width}x{height}-first-screen.png"
                page.screenshot(path=str(path))
                saved.append(path)
            path = out / f"dashboard-{width}x{height}.png"
            page.screenshot(path=str(path), full_page=True, scale="css")  # the phone's long page at 1x
            saved.append(path)
            page.close()
        page = browser.new_page(viewport={"width": 1000, "height": 1200})
        page.goto(f"{base_url}/report/weekly?site=lhr-t5")
        path = out / "report-weekly.png"
        page.screenshot(path=str(path), full_page=True)
        saved.append(path)
        page.close()
        page = browser.new_page(viewport={"width": 1920, "height": 1080})
        page.goto(f"{base_url}/tv/{DEMO_TV_TOKEN}")
        page.wait_for_selector("#live.on", timeout=15_000)
        path = out / "dashboard-tv-1920x1080.png"
        page.screenshot(path=str(path))
        saved.append(path)
        page.close()
    return saved


def shoot_alert(base_url: str, store: Store, config: CentralConfig, out: Path) -> list[Path]:
    """Raise an alert (four unhappy answers at the busiest desk, now) and photograph the overview with it."""
    from central import reads
    from central.alertrules import AnswerWatcher
    from dev.browser import chromium

    now = datetime.now(UTC)
    epoch = str(uuid.uuid4())
    watcher = AnswerWatcher(store, config)
    watcher.cursor = reads.last_ingest_id(store)  # the seeded weeks were all received just now: not those
    store.insert_events([{
        "schema": 1, "id": protocol.uuid7(), "site": "lhr-t5", "device": "bag-1", "epoch": epoch, "seq": n + 1,
        "ts": protocol.utc_timestamp(now - timedelta(minutes=8 - 2 * n)), "clock_synced": True,
        "boot_id": epoch, "mono_ms": 1000 * (n + 1), "rating": rating, "scale": 5,
        "reasons": ["wait_time"] if rating <= 2 else [], "lang": "en", "source": "touch", "survey": 0, "flags": [],
    } for n, rating in enumerate((1, 2, 4, 1))])
    watcher.step(now)
    path = out / "dashboard-alert-1366x768.png"
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        page.goto(base_url + "/")
        page.wait_for_selector("#alerts .alert-item", timeout=15_000)
        page.screenshot(path=str(path))
        page.close()
    return [path]


def shoot_languages(base_url: str, out: Path) -> list[Path]:
    """The overview in German and Ukrainian at 1366×768 (whole page) and the Greek phone's first screen:
    long words and Cyrillic and Greek glyphs (the system's fonts) in the layout."""
    from dev.browser import chromium

    out.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []
    with chromium() as browser:
        for lang, (width, height), full in (("de", (1366, 768), True), ("uk", (1366, 768), True),
                                            ("el", (390, 844), False)):
            page = browser.new_page(viewport={"width": width, "height": height},
                                    device_scale_factor=2 if width < 600 else 1)
            page.goto(f"{base_url}/?lang={lang}")
            page.wait_for_selector("#live.on", timeout=15_000)
            path = out / f"dashboard-{lang}-{width}x{height}.png"
            page.screenshot(path=str(path), full_page=full)
            saved.append(path)
            page.close()
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dev.dashboard_screenshots", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/img"), help="folder for the PNGs (docs/img)")
    parser.add_argument("--serve", action="store_true", help="print the URL and keep serving until Ctrl-C")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="deskpulse-shots-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'demo.sqlite3'}"
        config = demo_config(url)
        with Store(url) as store:
            store.migrate()
            store.zones = lambda slug: config.site(slug).timezone  # the rollups in each site's local days
            count = seed(store, config)
            print(f"seeded {count} answers", file=sys.stderr)
            with serving(store, config) as base:
                if args.serve:
                    print(f"{base}/   TV: {base}/tv/{DEMO_TV_TOKEN}", flush=True)
                    try:
                        while True:
                            time.sleep(1)
                    except KeyboardInterrupt:
                        return 0
                for path in shoot(base, args.out):
                    print(path)
                for path in shoot_languages(base, args.out):
                    print(path)
                for path in shoot_alert(base, store, config, args.out):
                    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

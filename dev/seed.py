"""A big store to try the dashboard at scale: ``python -m dev.seed --answers 1000000 --desks 80 --days 365``.

Spreads the answers over ``--desks`` desks at eight sites in eight time zones,
inside each site's opening hours, busier at lunch and in the evening, with
follow-up reasons, a few flagged answers and a status per kiosk; writes the
central configuration that names the sites (``--config-out``) so that
``deskpulse-central --config`` shows them with their names and zones.

    python -m dev.seed --db sqlite:///big.sqlite3 --config-out big.toml
    deskpulse-central --config big.toml --db sqlite:///big.sqlite3
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from central.config import CentralConfig, from_dict
from central.store import Store
from sync import protocol

#: (slug, name, time zone, opening hours) of the seeded sites.
SITES = (
    ("lhr-t5", "Heathrow T5 baggage", "Europe/London", "06:00-22:00"),
    ("fra-t1", "Frankfurt T1 service", "Europe/Berlin", "06:00-22:00"),
    ("nyc-5th", "Fifth Avenue store", "America/New_York", "09:00-19:00"),
    ("sfo-int", "SFO international", "America/Los_Angeles", "07:00-23:00"),
    ("tyo-bay", "Tokyo Bay hotel", "Asia/Tokyo", "07:00-23:00"),
    ("del-t3", "Delhi T3 help desk", "Asia/Kolkata", "06:00-22:00"),
    ("syd-cbd", "Sydney pharmacy", "Australia/Sydney", "08:00-20:00"),
    ("gru-t2", "Guarulhos T2", "America/Sao_Paulo", "06:00-22:00"),
)
REASONS = ("wait_time", "friendliness", "expertise", "outcome", "information", "opening_hours")


def seed_config(desks: int) -> dict[str, Any]:
    """The central configuration naming the seeded sites and desks (desks spread over the sites)."""
    sites: dict[str, Any] = {}
    for i in range(desks):
        slug, name, tz, hours = SITES[i % len(SITES)]
        site = sites.setdefault(slug, {"name": name, "timezone": tz, "hours": {"default": hours}, "desks": {}})
        number = len(site["desks"]) + 1
        site["desks"][f"desk-{number:02d}"] = {"name": f"Desk {number}"}
    return {"sites": sites}


def answers(config: CentralConfig, total: int, days: int, now: datetime, rng: random.Random) -> list[dict[str, Any]]:
    """``total`` answers over the ``days`` days before ``now``, in time order, spread over every desk."""
    desks = [(site.slug, desk) for site in config.sites.values() for desk in site.desks]
    per_desk = total // len(desks)
    out: list[dict[str, Any]] = []
    for k, (site_slug, desk) in enumerate(desks):
        site = config.site(site_slug)
        epoch, quality = str(uuid.uuid4()), 0.45 + 0.45 * rng.random()
        scale = 4 if k % 7 == 6 else 5
        n = per_desk + (1 if k < total - per_desk * len(desks) else 0)
        moments = []
        for _ in range(n):
            day = (now - timedelta(days=rng.random() * days)).astimezone(site.tz).date()
            opens, closes = site.hours.get(day.weekday()) or (None, None)
            first = 6 if opens is None else opens.hour
            last = 21 if closes is None else max(first, (closes.hour or 24) - 1)
            hour = rng.choice((12, 13, 17, 18)) if rng.random() < 0.3 else rng.randint(first, last)
            local = datetime(day.year, day.month, day.day, min(hour, last), rng.randrange(60), rng.randrange(60),
                             tzinfo=site.tz)
            moments.append(min(local.astimezone(UTC), now))
        moments.sort()
        for seq, at in enumerate(moments, start=1):
            x = rng.betavariate(max(0.3, 6 * quality), max(0.3, 6 * (1 - quality)))
            rating = 1 + min(scale - 1, int(x * scale))
            flags = ["rapid_repeat"] if rng.random() < 0.02 else []
            out.append({
                "schema": 1, "id": protocol.uuid7(), "site": site_slug, "device": desk, "epoch": epoch, "seq": seq,
                "ts": protocol.utc_timestamp(at), "clock_synced": True, "boot_id": epoch, "mono_ms": seq * 1000,
                "rating": rating, "scale": scale,
                "reasons": [rng.choice(REASONS)] if rating <= scale // 2 and rng.random() < 0.7 else [],
                "lang": "en", "source": "touch", "survey": 1, "flags": flags,
            })
    out.sort(key=lambda e: e["ts"])
    return out


def seed(store: Store, config: CentralConfig, *, total: int, days: int, now: datetime | None = None,
         batch: int = 5000, rng: random.Random | None = None, progress: bool = False) -> int:
    """Store ``total`` answers and one status per desk; returns how many answers were stored."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    events = answers(config, total, days, now, rng or random.Random(11))
    started = time.monotonic()
    for first in range(0, len(events), batch):
        store.insert_events(events[first:first + batch])
        if progress and (first // batch) % 20 == 0:
            done = first + batch
            rate = done / max(1e-9, time.monotonic() - started)
            print(f"  {min(done, len(events)):>9,} of {len(events):,} stored ({rate:,.0f}/s)", file=sys.stderr)
    for site in config.sites.values():
        for desk in site.desks:
            store.record_status({"schema": 1, "site": site.slug, "device": desk, "state": "online",
                                 "ts": protocol.utc_timestamp(now), "version": "0.1.0",
                                 "health": {"backlog": 0, "clock_synced": True, "last_error": None}})
    return len(events)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m dev.seed``."""
    parser = argparse.ArgumentParser(prog="python -m dev.seed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True, help="sqlite:///FILE or postgresql://USER@HOST/DB (migrated first)")
    parser.add_argument("--answers", type=int, default=1_000_000, help="how many answers (default 1,000,000)")
    parser.add_argument("--desks", type=int, default=80, help="how many desks, over eight sites (default 80)")
    parser.add_argument("--days", type=int, default=365, help="over how many days before now (default 365)")
    parser.add_argument("--config-out", type=Path, help="write the sites as a central.toml here")
    args = parser.parse_args(argv)
    if args.answers < 1 or args.desks < 1 or args.days < 1:
        parser.error("--answers, --desks and --days must be at least 1")
    raw = seed_config(args.desks)
    config = from_dict({**raw, "database": {"url": args.db}}, source="<seed>")
    if args.config_out:
        args.config_out.write_text(_toml(raw, args.db))
    started = time.monotonic()
    with Store(args.db) as store:
        store.migrate()
        store.zones = lambda slug: config.site(slug).timezone  # the rollups in each site's local days
        n = seed(store, config, total=args.answers, days=args.days, progress=True)
    print(f"seeded {n:,} answers for {args.desks} desks over {args.days} days in "
          f"{time.monotonic() - started:.1f} s", file=sys.stderr)
    return 0


def _toml(raw: dict[str, Any], db: str) -> str:
    lines = ["[database]", f'url = "{db}"', ""]
    for slug, site in raw["sites"].items():
        lines += [f"[sites.{slug}]", f'name = "{site["name"]}"', f'timezone = "{site["timezone"]}"',
                  f'hours = {{ default = "{site["hours"]["default"]}" }}']
        for desk, value in site["desks"].items():
            lines.append(f'desks.{desk} = {{ name = "{value["name"]}" }}')
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

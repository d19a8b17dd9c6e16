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
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from central.config import CentralConfig, SiteConfig, from_dict
from central.store import Store
from central.store import events as events_table
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


@dataclass(slots=True)
class _Kiosk:
    site: SiteConfig
    desk: str
    epoch: str
    quality: float  # how happy its customers are, 0.45..0.9
    scale: int
    n: int  # answers in all
    seq: int = 0


#: Answers generated and stored per time slice (a slice's answers are held in memory at once).
SLICE_ANSWERS = 500_000


def answers(config: CentralConfig, total: int, days: int, now: datetime, rng: random.Random) -> list[dict[str, Any]]:
    """``total`` answers over the ``days`` days before ``now``, in time order, spread over every desk."""
    return [event for chunk in answer_slices(config, total, days, now, rng) for event in chunk]


def answer_slices(config: CentralConfig, total: int, days: int, now: datetime,
                  rng: random.Random) -> Iterator[list[dict[str, Any]]]:
    """The answers of :func:`answers` in consecutive time slices of about :data:`SLICE_ANSWERS` each.

    Each slice is in time order and later than the one before; each desk's ``seq``
    counts on across slices, so ten million answers never sit in memory at once.
    """
    desks = [(site.slug, desk) for site in config.sites.values() for desk in site.desks]
    per_desk = total // len(desks)
    slices = max(1, -(-total // SLICE_ANSWERS))
    kiosks = []
    for k, (site_slug, desk) in enumerate(desks):
        n = per_desk + (1 if k < total - per_desk * len(desks) else 0)
        kiosks.append(_Kiosk(config.site(site_slug), desk, str(uuid.uuid4()), 0.45 + 0.45 * rng.random(),
                             4 if k % 7 == 6 else 5, n))
    span = timedelta(days=days)
    for part in range(slices):
        begins, ends = now - span + span * part / slices, now - span + span * (part + 1) / slices
        out: list[dict[str, Any]] = []
        for kiosk in kiosks:
            site, scale = kiosk.site, kiosk.scale
            n = kiosk.n * (part + 1) // slices - kiosk.n * part // slices
            moments = []
            for _ in range(n):
                for _try in range(20):  # a moment inside this slice (its first and last days are cut)
                    day = (begins + (ends - begins) * rng.random()).astimezone(site.tz).date()
                    opens, closes = site.hours.get(day.weekday()) or (None, None)
                    first = 6 if opens is None else opens.hour
                    last = 21 if closes is None else max(first, (closes.hour or 24) - 1)
                    hour = rng.choice((12, 13, 17, 18)) if rng.random() < 0.3 else rng.randint(first, last)
                    at = datetime(day.year, day.month, day.day, min(hour, last), rng.randrange(60),
                                  rng.randrange(60), tzinfo=site.tz).astimezone(UTC)
                    if begins <= at < ends:
                        break
                moments.append(min(max(at, begins), ends, now))
            moments.sort()
            for at in moments:
                kiosk.seq += 1
                seq = kiosk.seq
                x = rng.betavariate(max(0.3, 6 * kiosk.quality), max(0.3, 6 * (1 - kiosk.quality)))
                rating = 1 + min(scale - 1, int(x * scale))
                flags = ["rapid_repeat"] if rng.random() < 0.02 else []
                out.append({
                    "schema": 1, "id": protocol.uuid7(), "site": site.slug, "device": kiosk.desk,
                    "epoch": kiosk.epoch, "seq": seq, "ts": protocol.utc_timestamp(at), "clock_synced": True,
                    "boot_id": kiosk.epoch, "mono_ms": seq * 1000, "rating": rating, "scale": scale,
                    "reasons": [rng.choice(REASONS)] if rating <= scale // 2 and rng.random() < 0.7 else [],
                    "lang": "en", "source": "touch", "survey": 1, "flags": flags,
                })
        out.sort(key=lambda e: e["ts"])
        yield out


def seed(store: Store, config: CentralConfig, *, total: int, days: int, now: datetime | None = None,
         batch: int = 5000, rng: random.Random | None = None, progress: bool = False) -> int:
    """Store ``total`` answers and one status per desk; returns how many answers were stored."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    started = time.monotonic()
    done = shown = 0
    for events in answer_slices(config, total, days, now, rng or random.Random(11)):
        for first in range(0, len(events), batch):
            store.insert_events(events[first:first + batch])
            done += len(events[first:first + batch])
            if progress and done - shown >= 100_000:
                shown = done
                rate = done / max(1e-9, time.monotonic() - started)
                print(f"  {done:>10,} of {total:,} stored ({rate:,.0f}/s)", file=sys.stderr)
    # Received when they were given, as a year of collection would have them: otherwise every seeded
    # answer looks just received, and central's alert check at start (it looks again at what was
    # received in the last alerts.late_after_min) goes through the whole seed, logging thousands of
    # late alerts.
    with store.engine.begin() as conn:
        conn.execute(events_table.update().values(received_at=events_table.c.ts_utc))
    for site in config.sites.values():
        for desk in site.desks:
            store.record_status({"schema": 1, "site": site.slug, "device": desk, "state": "online",
                                 "ts": protocol.utc_timestamp(now), "version": "0.1.0",
                                 "health": {"backlog": 0, "clock_synced": True, "last_error": None}})
    return done


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

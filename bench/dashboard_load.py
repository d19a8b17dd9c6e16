"""Benchmark: central's CPU with 20 open dashboard pages under 20 answers/s, and how soon pages show an answer.

Seeds a fresh store (``dev.seed``: ``--answers`` over 80 desks at eight sites,
a year), starts ``deskpulse-central`` on it in its own process (as deployed,
with a private Mosquitto on loopback), and publishes valid feedback through
the broker at ``--rate`` answers/s, round robin over the seeded desks, so every
answer takes the real way: MQTT, the collector, the store, the live feed.

Two kinds of phase, interleaved, ``--seconds`` each, ``--runs`` of each:

* **no pages**: only the answers arrive (central's collector and idle web server);
* **pages**: ``--pages`` simulated pages are open as well. Each does what
  ``central/static/dashboard.js`` does in a browser: it loads its page, follows
  the page's own ``data-stream`` (server-sent events) and, after each answer,
  fetches the page's ``data-parts`` (the fresh numbers): 0.3 s after a quiet
  spell, at most every 2 s, one fetch at a time. A third of them show the whole
  chain (``/``), a third one site (``/?site=…``), a third are wall TVs.

Central's CPU is read from ``/proc/<pid>/stat`` (user + system time of all its
threads) over each phase: the web side's share is the pages phase minus the
no-pages phase. An answer is *shown* on a page when a fetch of that page's numbers
that started after the page received the answer's event has finished; the
latency is from the answer's publish to then (the goal: within 2 s).

Goals (issue 19, this 2-core machine, 1M answers): with 20 open pages and 20
answers/s, the web side under half a core, every page shows each answer within 2 s.
Not part of the test suite: ``python -m bench.dashboard_load``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.dashboard import TV_TOKEN, _toml, _wait_up
from bench.ingest import DEFAULT_PG_URL, Scratch
from dev.broker import Mosquitto, free_port
from sync import protocol

#: The site the seeded wall TV shows (bench.dashboard's TV token).
TV_SITE = "lhr-t5"
#: How dashboard.js paces its refreshes (MIN_GAP_MS and the first delay).
MIN_GAP_S = 2.0
FIRST_DELAY_S = 0.3


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Page:
    """One open page: its stream, its refreshes, and when each answer was shown on it."""

    base: str
    path: str
    site: str | None  # the only site it shows (None: every site)
    stop: threading.Event
    received: dict[str, float] = field(default_factory=dict)  # answer id -> when its event came
    shown: dict[str, float] = field(default_factory=dict)  # answer id -> when a refresh after it finished
    fetches: int = 0
    cursor: str = ""  # the stream's last id: sent as ?seen=, as dashboard.js does
    errors: list[str] = field(default_factory=list)
    _wake: threading.Condition = field(default_factory=threading.Condition)

    def start(self) -> list[threading.Thread]:
        with urllib.request.urlopen(self.base + self.path, timeout=60) as reply:
            html = reply.read().decode()
        stream = re.search(r'data-stream="([^"]+)"', html)
        parts = re.search(r'data-parts="([^"]+)"', html)
        if stream is None or parts is None:
            raise RuntimeError(f"{self.path}: no data-stream or data-parts in the page")
        self.parts_url = urljoin(self.base + self.path, parts.group(1).replace("&amp;", "&"))
        self.stream_url = urljoin(self.base + self.path, stream.group(1).replace("&amp;", "&"))
        threads = [threading.Thread(target=self._follow, daemon=True),
                   threading.Thread(target=self._refresh, daemon=True)]
        for t in threads:
            t.start()
        return threads

    def _follow(self) -> None:
        try:
            with urllib.request.urlopen(self.stream_url, timeout=60) as reply:
                kind = ""
                while not self.stop.is_set():
                    line = reply.readline()
                    if not line:
                        return
                    text = line.decode().rstrip("\n")
                    if text.startswith("event:"):
                        kind = text[6:].strip()
                    elif text.startswith("id:"):
                        self.cursor = text[3:].strip()
                    elif text.startswith("data:") and kind == "feedback":
                        event = json.loads(text[5:])
                        with self._wake:
                            self.received.setdefault(event["id"], time.monotonic())
                            self._wake.notify()
                    elif not text:
                        kind = ""
        except OSError as exc:
            if not self.stop.is_set():
                self.errors.append(f"stream: {exc}")

    def _refresh(self) -> None:
        last = -MIN_GAP_S
        while not self.stop.is_set():
            with self._wake:
                while not self.stop.is_set() and len(self.received) == len(self.shown):
                    self._wake.wait(0.5)
            if self.stop.is_set():
                return
            time.sleep(max(FIRST_DELAY_S, last + MIN_GAP_S - time.monotonic()))
            last = started = time.monotonic()
            with self._wake:
                pending = [i for i, at in self.received.items() if i not in self.shown and at <= started]
            try:
                seen = f"&seen={self.cursor}" if self.cursor else ""
                with urllib.request.urlopen(self.parts_url + ("&" if "?" in self.parts_url else "?")
                                            + seen.lstrip("&"), timeout=60) as reply:
                    reply.read()
                self.fetches += 1
            except OSError as exc:
                self.errors.append(f"refresh: {exc}")
                continue
            done = time.monotonic()
            with self._wake:
                for i in pending:
                    self.shown[i] = done


class Publisher:
    """Publishes valid feedback at a steady rate, round robin over the seeded desks."""

    def __init__(self, broker: Mosquitto, desks: list[tuple[str, str]]) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-load-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.kiosks: list[dict[str, Any]] = [{"site": s, "device": d, "epoch": str(uuid.uuid4()), "seq": 0}
                                             for s, d in desks]
        self.sent: dict[str, tuple[float, str]] = {}  # answer id -> (when published, its site)
        self.turn = 0

    def run(self, rate: float, seconds: float) -> None:
        started = time.monotonic()
        n = 0
        while (now := time.monotonic()) < started + seconds:
            due = started + n / rate
            if now < due:
                time.sleep(due - now)
            k = self.kiosks[self.turn % len(self.kiosks)]
            self.turn += 1
            k["seq"] += 1
            event = {"schema": 1, "id": protocol.uuid7(), "site": k["site"], "device": k["device"],
                     "epoch": k["epoch"], "seq": k["seq"], "ts": protocol.utc_timestamp(), "clock_synced": True,
                     "boot_id": k["epoch"], "mono_ms": k["seq"], "scale": 5,
                     # each kiosk's answers go round the five faces from the happiest (5, 4, 3, 2, 1, 5, ...):
                     # at most 40 % unhappy at any count, so the alert rule (50 % of 4) does not fire
                     "rating": 5 - (self.turn // len(self.kiosks)) % 5,
                     "reasons": [], "lang": "en", "source": "touch", "survey": 0, "flags": []}
            self.sent[event["id"]] = (time.monotonic(), k["site"])
            self.client.publish(protocol.feedback_topic(k["site"], k["device"]),
                                protocol.encode("feedback", event), qos=1)
            n += 1

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@dataclass
class Phase:
    kind: str
    cores: float
    arrivals: list[float]  # publish -> the answer's row in the page's live feed
    latencies: list[float]  # publish -> the page's numbers include it
    fetches: int
    answers: int


def phase(kind: str, base: str, pid: int, publisher: Publisher, pages: int, rate: float, seconds: float,
          sites: list[str]) -> Phase:
    """One phase: ``pages`` open pages (or none) while answers arrive at ``rate`` for ``seconds``."""
    stop = threading.Event()
    scopes = [(("/", None), (f"/?site={sites[i % len(sites)]}", sites[i % len(sites)]),
               (f"/tv/{TV_TOKEN}", TV_SITE))[i % 3] for i in range(pages)]
    open_pages = [Page(base, path, site, stop) for path, site in scopes]
    threads = [t for page in open_pages for t in page.start()]
    time.sleep(1.0)  # every stream connected and idle before the clock starts
    publisher.sent.clear()
    cpu0, wall0 = cpu_seconds(pid), time.monotonic()
    publisher.run(rate, seconds)
    cores = (cpu_seconds(pid) - cpu0) / (time.monotonic() - wall0)
    time.sleep(MIN_GAP_S + 3.0)  # the last answers reach every page (not counted in the CPU)
    stop.set()
    for t in threads:
        t.join(5)
    arrivals, latencies = [], []
    for page in open_pages:
        if page.errors:
            raise RuntimeError(f"page {page.path}: {page.errors[:3]}")
        for answer, (sent, site) in publisher.sent.items():
            if page.site is not None and site != page.site:
                continue  # not on this page
            arrivals.append(page.received[answer] - sent if answer in page.received else float("inf"))
            latencies.append(page.shown[answer] - sent if answer in page.shown else float("inf"))
    return Phase(kind, cores, arrivals, latencies, sum(p.fetches for p in open_pages), len(publisher.sent))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dashboard_load", description=__doc__.split("\n\n")[0],
                                     epilog="Method: see the module docstring (bench/dashboard_load.py) and "
                                     "docs/central.md, 'Rollups'.")
    parser.add_argument("--answers", type=int, default=1_000_000, help="answers seeded first (default 1,000,000)")
    parser.add_argument("--pages", type=int, default=20, help="open pages in the pages phase (default 20)")
    parser.add_argument("--rate", type=float, default=20.0, help="answers per second (default 20)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each phase (default 30)")
    parser.add_argument("--runs", type=int, default=3, help="phases of each kind, interleaved (default 3)")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, metavar="URL",
                        help=f"a PostgreSQL server to create a scratch database on (default {DEFAULT_PG_URL})")
    parser.add_argument("--db", metavar="URL", help="use this store, seeded before by `python -m dev.seed` with its "
                        "default 80 desks (kept afterwards; the answers published here stay in it), instead of "
                        "seeding a scratch one")
    parser.add_argument("--dir", type=Path, default=Path(__file__).resolve().parent / ".work",
                        help="work folder on a real file system (default bench/.work)")
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="also write the medians (CPU cores, latencies, seeding time) to FILE as JSON")
    args = parser.parse_args(argv)
    if not (1 <= args.pages <= 100 and 0 < args.rate <= 200 and 1 <= args.seconds <= 600 and 1 <= args.runs <= 10):
        parser.error("bounded load only: --pages 1..100, --rate up to 200, --seconds 1..600, --runs 1..10")
    from central.config import from_dict
    from central.store import Store
    from dev.seed import seed, seed_config

    args.dir.mkdir(parents=True, exist_ok=True)
    db = None if args.db else Scratch(args.backend, args.dir, args.pg_url, f"load_{args.backend}")
    db_url = args.db or (db.url if db else "")
    try:
        raw = seed_config(80)
        raw["dashboard"] = {"tv": {"wall": {"token": TV_TOKEN, "site": "lhr-t5"}}}
        config = from_dict({**raw, "database": {"url": db_url}}, source="<bench>")
        seeding: float | None = None
        if db is not None:
            started = time.monotonic()
            with Store(db_url) as store:
                store.migrate()
                store.zones = lambda slug: config.site(slug).timezone
                seed(store, config, total=args.answers, days=365, progress=True)
            seeding = time.monotonic() - started
            print(f"{args.backend}: seeded {args.answers:,} answers in {seeding:.0f} s", file=sys.stderr)
        broker = Mosquitto(args.dir / f"mosquitto-load-{args.backend}").start()
        port = free_port()
        toml = args.dir / f"load-{args.backend}.toml"
        toml.write_text(_toml(raw, db_url, broker.url, port))
        proc = subprocess.Popen([sys.executable, "-m", "central.cli", "--config", str(toml),
                                 "--log-level", "warning"], stdout=subprocess.DEVNULL)
        publisher = Publisher(broker, [(s.slug, d) for s in config.sites.values() for d in s.desks])
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_up(base, proc)
            phases = []
            for run in range(args.runs):
                for kind in (("none", "pages") if run % 2 == 0 else ("pages", "none")):
                    print(f"run {run + 1}/{args.runs}: {kind}…", file=sys.stderr, flush=True)
                    phases.append(phase(kind, base, proc.pid, publisher, args.pages if kind == "pages" else 0,
                                        args.rate, args.seconds, sorted(config.sites)))
        finally:
            publisher.close()
            proc.terminate()
            proc.wait(30)
            broker.kill()
    finally:
        if db is not None:
            db.drop()
    idle = statistics.median(p.cores for p in phases if p.kind == "none")
    busy = statistics.median(p.cores for p in phases if p.kind == "pages")
    fetches = sum(p.fetches for p in phases if p.kind == "pages")

    def figures(values: list[float]) -> dict[str, Any]:
        values = sorted(values)
        finite = [x for x in values if x != float("inf")]
        return {"median_s": values[len(values) // 2], "p99_s": values[min(len(values) - 1, int(0.99 * len(values)))],
                "max_s": values[-1], "max_arrived_s": finite[-1] if finite else None,
                "over_2s": sum(x > 2.0 for x in values), "never": len(values) - len(finite), "answers": len(values)}

    def spread(values: list[float]) -> str:
        f = figures(values)
        return (f"median {f['median_s']:.2f} s, p99 {f['p99_s']:.2f} s, max {f['max_s']:.2f} s; "
                f"over 2 s: {f['over_2s']} of {f['answers']}, never: {f['never']}")

    store_said = f"{args.db} (given)" if args.db else f"{args.backend}, {args.answers:,} answers seeded"
    print(f"\n{store_said}; {args.rate:g} answers/s through MQTT; "
          f"{args.runs} phases of {args.seconds:g} s each kind (median)")
    print(f"  central's CPU, answers only:            {idle:.3f} cores")
    print(f"  central's CPU, answers + {args.pages} pages:        {busy:.3f} cores")
    web = busy - idle
    print(f"  the web side (difference):              {web:.3f} cores   goal < 0.5: "
          f"{'met' if web < 0.5 else 'NOT met'}")
    print(f"  page refreshes: {fetches} ({fetches / (args.runs * args.seconds):.1f}/s over all pages)")
    arrivals = [x for p in phases if p.kind == "pages" for x in p.arrivals]
    numbers = [x for p in phases if p.kind == "pages" for x in p.latencies]
    feed_ok = max(arrivals) <= 2.0
    print(f"  publish -> the answer in a page's feed: {spread(arrivals)}   goal <= 2 s: "
          f"{'met' if feed_ok else 'NOT met'}")
    print(f"  publish -> a page's numbers include it: {spread(numbers)}")
    print("  (pages fetch their numbers at most every 2 s, as dashboard.js does: the numbers can lag an\n"
          "   answer by that pacing plus the fetch, by design)")
    if args.json:
        args.json.write_text(json.dumps({
            "bench": "dashboard_load", "backend": args.backend, "store": args.db or "seeded",
            "answers": None if args.db else args.answers, "seeding_s": seeding, "pages": args.pages,
            "rate": args.rate, "seconds": args.seconds, "runs": args.runs,
            "cores_answers_only": idle, "cores_with_pages": busy, "web_cores": web, "web_goal_met": web < 0.5,
            "refreshes_per_s": fetches / (args.runs * args.seconds),
            "feed": figures(arrivals), "feed_goal_met": feed_ok, "numbers": figures(numbers),
            "phases": [{"kind": p.kind, "cores": p.cores, "fetches": p.fetches, "answers": p.answers} for p in phases],
            "load_average_after": list(os.getloadavg()),
        }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

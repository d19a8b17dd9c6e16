"""Benchmark: events/s central's collector(s) *store*, against raw QoS 1 delivery.

Every run publishes the same pre-encoded, valid feedback payloads (``--devices``
kiosks spread over ``--sites`` sites, each on its own correct topic
``deskpulse/v1/<site>/<device>/feedback``, seq counting from 1 per device,
clock synchronised) with one raw paho publisher at QoS 1 (``--window``
messages in flight) to a private Mosquitto (``dev.broker``, no
persistence, loopback only). Two kinds of run are interleaved, and each rate
is the median of ``--runs``:

* **raw**: an idle paho subscriber in its own process, on the collector's own
  shared subscription ``$share/deskpulse-central/deskpulse/v1/+/+/feedback``
  at QoS 1, only counts (paho acks each message at once). Time: the first
  publish to the subscriber's last message.
* **collector**: ``deskpulse-central`` in its own process, exactly as
  deployed (``python -m central.cli`` with its web server, default batching
  unless ``--batch-size``/``--batch-ms`` say otherwise), on a fresh SQLite file
  on a real file system (``--dir``) or a fresh scratch PostgreSQL database
  (created on ``--pg-url`` and dropped afterwards). The collector is started,
  migrated and subscribed before the clock starts (the bench waits for its
  retained ``_central/status`` to say ``online``, published right after the
  subscription). Time: the first publish to the moment the bench, polling
  the largest ``ingest_id`` every 10 ms on its own connection (one index
  lookup; ``count(*)`` confirms once that reaches the count), sees every
  event committed. The collector still acknowledges each message only after
  its commit and sends one receipt per device per batch; nobody subscribes to
  the receipts (the broker acks and drops them), so this measures the store
  path, and ``bench/sync_drain.py`` measures the whole way back to the kiosk.

The figure is *stored* events/s against raw delivered messages/s, and their
ratio (goals: >= 0.8 on SQLite, >= 0.7 on PostgreSQL). The defaults (20,000 events, 3 runs, both back ends) take
about a minute on a 2-core machine. Not part of the test suite: run
``python -m bench.ingest``.

``--json FILE`` also writes ``{"bench": "ingest", "settings": {...}, "load_average":
[1, 5, 15 min], "rows": [...]}``, one row per back end (and per back end without
the rollups with ``--rollups both``): ``name``, ``backend``, ``collectors``,
``rollups``, ``goal``, then either ``skipped`` ("no server") or the medians
``events_per_s``, ``raw_per_s``, ``ratio``, ``met`` and every run's figures
``runs_events_per_s``, ``runs_raw_per_s``; a row without the rollups adds
``with_over_without``, ``rollup_goal`` (0.9) and ``rollup_met``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.sync_drain import SUBSCRIBER  # the idle paho subscriber both benches compare with
from central import reads
from dev.broker import Mosquitto, free_port
from sync import protocol

GROUP = "deskpulse-central"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def make_payloads(count: int, sites: int, devices: int) -> list[tuple[str, bytes]]:
    """``count`` valid feedback events as (topic, payload), round robin over the devices."""
    kiosks: list[dict[str, Any]] = []
    for d in range(devices):
        site, device = f"bench-site-{d % sites}", f"desk-{d}"
        kiosks.append({"topic": protocol.feedback_topic(site, device), "site": site, "device": device,
                       "epoch": str(uuid.uuid4()), "boot_id": str(uuid.uuid4()), "seq": 0})
    out = []
    for i in range(count):
        k = kiosks[i % devices]
        k["seq"] += 1
        event = {"schema": 1, "id": protocol.uuid7(), "site": k["site"], "device": k["device"],
                 "epoch": k["epoch"], "seq": k["seq"], "ts": protocol.utc_timestamp(), "clock_synced": True,
                 "boot_id": k["boot_id"], "mono_ms": 1000 + k["seq"] * 10,
                 # each kiosk's answers go round the five faces from the happiest (5, 4, 3, 2, 1, 5, ...):
                 # at most 40 % unhappy at any count, so the alert rule (50 % of 4) never fires
                 "rating": 5 - (i // devices) % 5, "scale": 5,
                 "reasons": ["wait"] if (i // devices) % 5 == 4 else [], "lang": "en", "source": "touch", "survey": 0,
                 "flags": []}
        out.append((k["topic"], protocol.encode("feedback", event)))
    return out


@dataclass
class CentralWatch:
    """What ``_central/status`` said last, and how many ``online`` announcements came since ``online`` was reset."""

    state: str = ""
    online: int = 0


def publisher(broker: Mosquitto, window: int) -> tuple[mqtt.Client, list[int], CentralWatch]:
    """A raw paho QoS 1 publisher; also follows ``_central/status``."""
    acked = [0]
    central_state = CentralWatch()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex[:8]}",
                         protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(window)
    client.max_queued_messages_set(0)
    client.on_publish = lambda c, u, mid, reason, p: acked.__setitem__(0, acked[0] + 1)

    def on_message(c: mqtt.Client, u: object, m: mqtt.MQTTMessage) -> None:
        try:
            central_state.state = json.loads(m.payload)["state"] if m.payload else ""
            central_state.online += central_state.state == "online"
        except (ValueError, KeyError, TypeError):
            central_state.state = ""

    client.on_message = on_message
    client.connect(broker.host, broker.port)
    client.subscribe(protocol.CENTRAL_STATUS_TOPIC, qos=1)
    client.loop(0.1)
    return client, acked, central_state


def publish_all(client: mqtt.Client, acked: list[int], payloads: list[tuple[str, bytes]],
                finished: Callable[[], bool]) -> float:
    """Seconds from the first publish until every PUBACK is in and ``finished()`` says so."""
    acked[0] = 0
    start = time.perf_counter()
    for topic, payload in payloads:
        client.publish(topic, payload, qos=1)
    next_poll = 0.0
    while True:
        if acked[0] < len(payloads):
            client.loop(0.005)
        else:
            time.sleep(0.002)
        now = time.perf_counter()
        if now >= next_poll:
            next_poll = now + 0.01
            if acked[0] >= len(payloads) and finished():
                return time.perf_counter() - start


def raw_run(broker: Mosquitto, client: mqtt.Client, acked: list[int], payloads: list[tuple[str, bytes]]) -> float:
    """Seconds for the idle subscriber (own process, the collector's shared subscription) to get every message."""
    proc = subprocess.Popen([sys.executable, "-c", SUBSCRIBER, broker.host, str(broker.port), str(len(payloads)),
                             protocol.shared(protocol.FEEDBACK_FILTER, GROUP)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        got = []

        def finished() -> bool:
            assert proc.stdout is not None
            got.append(proc.stdout.readline().strip())  # blocks until the last message is in
            return got[-1] == "done"

        return publish_all(client, acked, payloads, finished)
    finally:
        proc.kill()
        proc.wait()


def pg_problem(url: str) -> str | None:
    """Why no PostgreSQL server can be used at ``url`` (None: it answers and lets us in)."""
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.Error as exc:
        return " ".join(str(exc).split())
    return None


class Scratch:
    """A fresh database for one collector run: a SQLite file, or a PostgreSQL database dropped afterwards."""

    def __init__(self, backend: str, folder: Path, pg_url: str, tag: str) -> None:
        self.backend = backend
        self.pg_url = pg_url
        self.name = f"deskpulse_bench_{tag}"
        if backend == "sqlite":
            self.file = folder / f"{self.name}.sqlite3"
            self._remove()  # a fresh file, whatever an interrupted run left
            self.url = f"sqlite:///{self.file}"
        else:
            self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')  # what an interrupted run left
            self._admin(f'CREATE DATABASE "{self.name}"')
            base, _, _ = pg_url.rpartition("/")
            self.url = f"{base}/{self.name}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.pg_url, autocommit=True) as conn:
            conn.execute(sql.encode())

    def _remove(self) -> None:
        for suffix in ("", "-wal", "-shm", "-migrate.lock"):
            Path(f"{self.file}{suffix}").unlink(missing_ok=True)

    def drop(self) -> None:
        if self.backend == "postgresql":
            self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        else:
            self._remove()


def collector_run(broker: Mosquitto, client: mqtt.Client, acked: list[int], central_state: CentralWatch,
                  payloads: list[tuple[str, bytes]], db: Scratch, folder: Path, batch: dict[str, int],
                  collectors: int = 1, rollups: bool = True) -> float:
    """Seconds from the first publish until the ``collectors`` processes have committed every event.

    ``rollups=False``: the collectors store the answers without adding them to the
    dashboard's rollups (central's hidden ``--without-rollups``), to measure what they cost.
    """
    from central.store import Store

    # Forget the last run's retained status, so that "online" below is these collectors'.
    client.publish(protocol.CENTRAL_STATUS_TOPIC, b"", qos=1, retain=True)
    deadline = time.monotonic() + 5
    while central_state.state and time.monotonic() < deadline:
        client.loop(0.05)
    central_state.online = 0
    ingest = "".join(f"{k} = {v}\n" for k, v in batch.items())
    procs = []
    for i in range(collectors):
        config = folder / f"{db.name}-{i}.toml"
        config.write_text(f'[broker]\nurl = "{broker.url}"\nclient_id = "bench-central-{i}"\n'
                          f'[database]\nurl = "{db.url}"\n[web]\nbind = "127.0.0.1:{free_port()}"\n'
                          + (f"[ingest]\n{ingest}" if ingest else ""))
        procs.append(subprocess.Popen([sys.executable, "-m", "central.cli", "--config", str(config),
                                       "--log-level", "warning", *([] if rollups else ["--without-rollups"])],
                                      stdout=subprocess.DEVNULL, stderr=None if rollups else subprocess.DEVNULL))
    store = Store(db.url)
    try:
        deadline = time.monotonic() + 60
        while central_state.online < collectors:  # each announces "online" right after it subscribed
            if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                raise RuntimeError("deskpulse-central did not start collecting")
            client.loop(0.05)
        want = len(payloads)

        def finished() -> bool:
            # max(ingest_id) is one index lookup where count(*) reads every row,
            # which every 10 ms would take CPU from the collector being measured.
            # Ids can skip values (PostgreSQL's sequence), never repeat: confirm
            # with count(*) only once the largest id says all could be in.
            return reads.last_ingest_id(store) >= want and reads.count_events(store) >= want

        elapsed = publish_all(client, acked, payloads, finished)
        if reads.count_events(store) != want:
            raise RuntimeError(f"stored {reads.count_events(store)} events, expected {want}")
        return float(elapsed)
    finally:
        store.close()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ingest",
        description="Stored events/s of one deskpulse-central process (its own process, as deployed; "
        "--collectors for more) on "
        "SQLite and on PostgreSQL, against raw QoS 1 delivery of the same pre-encoded feedback payloads to an "
        "idle paho subscriber, from a raw paho publisher through a private Mosquitto on loopback. Runs are "
        "interleaved; each figure is the median of --runs. Goals: ratio >= 0.8 on SQLite, >= 0.7 on "
        "PostgreSQL; a back end whose server cannot be reached is reported as skipped.",
        epilog="Method: see the module docstring (bench/ingest.py) and docs/central.md, 'Ingest throughput'.")
    parser.add_argument("--count", type=int, default=20_000, help="events per run (default 20000; at most 60000: "
                        "the private broker queues 100000 for the subscriber, and a run of 100000 stalled)")
    parser.add_argument("--runs", type=int, default=3, help="interleaved runs (default 3; the median counts)")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both",
                        help="the collector's store (default both)")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, metavar="URL",
                        help=f"a PostgreSQL server to create scratch databases on (default {DEFAULT_PG_URL})")
    parser.add_argument("--devices", type=int, default=100, help="kiosks publishing (default 100)")
    parser.add_argument("--sites", type=int, default=10, help="sites they are spread over (default 10)")
    parser.add_argument("--window", type=int, default=100, help="publisher's QoS 1 messages in flight (default 100)")
    parser.add_argument("--batch-size", type=int, default=None, help="collector's ingest.batch_size (default: "
                        "central's own default)")
    parser.add_argument("--batch-ms", type=int, default=None, help="collector's ingest.batch_ms (default: central's)")
    parser.add_argument("--collectors", type=int, default=1, help="deskpulse-central processes on the shared "
                        "subscription, all writing to the same database (default 1)")
    parser.add_argument("--rollups", choices=["on", "both"], default="on",
                        help="both: also run each back end's collector without the dashboard's rollups, "
                        "interleaved, and print what they cost (default: on, as deployed)")
    parser.add_argument("--dir", type=Path, default=Path(__file__).resolve().parent / ".work",
                        help="work folder on a real file system for SQLite (default bench/.work)")
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="also write every run's figures and the medians to FILE as JSON (for `make bench`)")
    args = parser.parse_args(argv)
    if not 1 <= args.count <= 60_000:
        parser.error("--count must be between 1 and 60000")
    if not 1 <= args.collectors <= 8:
        parser.error("--collectors must be between 1 and 8")
    wanted = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    skipped: dict[str, str] = {}
    if "postgresql" in wanted:
        problem = pg_problem(args.pg_url)
        if problem is not None:
            # A fresh clone without PostgreSQL still runs the rest (make bench); the row says why it is empty.
            skipped["postgresql"] = "no server"
            print(f"PostgreSQL skipped: cannot reach {args.pg_url} ({problem}); pass --pg-url", file=sys.stderr)
    backends = [b for b in wanted if b not in skipped]
    batch = {k: v for k, v in (("batch_size", args.batch_size), ("batch_ms", args.batch_ms)) if v is not None}
    settings = {"count": args.count, "runs": args.runs, "devices": args.devices, "sites": args.sites,
                "window": args.window, "batch": batch or "central defaults", "collectors": args.collectors}
    if not backends:
        report = summary(settings, wanted, skipped, {}, args.rollups == "both")
        print_summary(report)
        write_json(args.json, report)
        return 0
    args.dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=args.dir))
    broker = Mosquitto(work / "mosquitto", persistence=False).start()
    payloads = make_payloads(args.count, args.sites, args.devices)
    kinds = [*backends, *(f"{b} without rollups" for b in backends if args.rollups == "both")]
    results: dict[str, list[float]] = {"raw": [], **{k: [] for k in kinds}}
    client, acked, central_state = publisher(broker, args.window)
    try:
        for run in range(args.runs):
            print(f"run {run + 1}/{args.runs}…", file=sys.stderr, flush=True)
            order = ["raw", *kinds] if run % 2 == 0 else [*kinds[::-1], "raw"]
            for kind in order:
                if kind == "raw":
                    results["raw"].append(raw_run(broker, client, acked, payloads))
                else:
                    backend, _, without = kind.partition(" ")
                    db = Scratch(backend, work, args.pg_url, f"{uuid.uuid4().hex[:8]}_{run}")
                    try:
                        results[kind].append(collector_run(broker, client, acked, central_state, payloads, db,
                                                           work, batch, args.collectors, rollups=not without))
                    finally:
                        db.drop()
                print(f"  {kind:28s} {args.count / results[kind][-1]:8.0f} /s", file=sys.stderr, flush=True)
    finally:
        client.disconnect()
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)

    report = summary(settings, wanted, skipped, results, args.rollups == "both")
    print_summary(report)
    write_json(args.json, report)
    return 0


#: The goals (issue 18, issue 19): stored/raw per back end, and with/without the rollups.
GOALS: Final = {"sqlite": 0.8, "postgresql": 0.7}
ROLLUP_GOAL: Final = 0.9


def summary(settings: dict[str, Any], backends: list[str], skipped: dict[str, str],
            results: dict[str, list[float]], without: bool) -> dict[str, Any]:
    """Every run's figure and the medians as one JSON-ready dict: one row per back end (and without rollups)."""
    count = settings["count"]

    def per_s(key: str) -> list[float]:
        return [round(count / seconds, 1) for seconds in results.get(key, [])]

    def median(key: str) -> float:
        return float(count / statistics.median(results[key]))

    rows: list[dict[str, Any]] = []
    for backend in backends:
        for rollups in ((True, False) if without else (True,)):
            n = settings["collectors"]
            name = f"ingest {backend}, {n} collector{'s' if n > 1 else ''}{'' if rollups else ', without rollups'}"
            row: dict[str, Any] = {"name": name, "backend": backend, "collectors": n, "rollups": rollups,
                                   "goal": GOALS[backend]}
            key = backend if rollups else f"{backend} without rollups"
            if backend in skipped:
                rows.append({**row, "skipped": skipped[backend]})
                continue
            stored, raw = median(key), median("raw")
            row.update({"events_per_s": round(stored, 1), "raw_per_s": round(raw, 1),
                        "ratio": round(stored / raw, 3), "met": stored / raw >= GOALS[backend],
                        "runs_events_per_s": per_s(key), "runs_raw_per_s": per_s("raw")})
            if not rollups:
                with_them = median(backend) / stored
                row.update({"with_over_without": round(with_them, 3), "rollup_goal": ROLLUP_GOAL,
                            "rollup_met": with_them >= ROLLUP_GOAL})
            rows.append(row)
    return {"bench": "ingest", "settings": settings, "load_average": [round(x, 2) for x in os.getloadavg()],
            "rows": rows}


def print_summary(report: dict[str, Any]) -> None:
    s = report["settings"]
    print(f"events per run: {s['count']} from {s['devices']} devices on {s['sites']} sites, publisher window "
          f"{s['window']}, runs: {s['runs']} (median), batching: {s['batch']}, collectors: {s['collectors']}")
    raws = [row["raw_per_s"] for row in report["rows"] if "raw_per_s" in row]
    if raws:
        print(f"raw QoS 1 publisher -> idle subscriber: {raws[0]:8.0f} msg/s")
    for row in report["rows"]:
        if "skipped" in row:
            print(f"collector, stored in {row['backend']:10s}:        skipped: {row['skipped']}" if row["rollups"]
                  else f"  same without the rollups:              skipped: {row['skipped']}")
        elif row["rollups"]:
            print(f"collector, stored in {row['backend']:10s}:        {row['events_per_s']:8.0f} events/s   "
                  f"ratio {row['ratio']:.2f}  (goal >= {row['goal']})")
        else:
            print(f"  same without the rollups:              {row['events_per_s']:8.0f} events/s   ratio "
                  f"{row['ratio']:.2f}; with / without {row['with_over_without']:.2f}  (goal >= {ROLLUP_GOAL})")


def write_json(path: Path | None, report: dict[str, Any]) -> None:
    if path is not None:
        path.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())

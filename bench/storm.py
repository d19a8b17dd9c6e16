"""Benchmark: the reconnect storm. A fleet loses its broker, piles up answers, and comes back at once.

For each mode (the sender's jitter on, then off) on fresh parts:

1. a private Mosquitto (``dev.broker``, loopback, persistence on) and a real
   collector (``deskpulse-central`` on a SQLite file, as deployed);
2. ``--kiosks`` virtual kiosks (``device.sim``: the real flow, outbox and
   sender, each with its own MQTT client and outbox file, ``--processes``
   worker processes) connect and see central online;
3. the broker is SIGKILLed; while it is down each kiosk's customers leave
   ``--backlog`` answers in its outbox (the real flow, in simulated time);
4. after ``--down`` seconds (and not before every backlog is on disk) the
   broker is started again on the same port;
5. the clock runs until every answer is confirmed by central's receipt.

Measured: seconds from the restart until every kiosk is connected and until
every answer is confirmed; connection attempts per second (counted in the
senders: TCP connect + CONNECT, refused ones included) and new connections
per second the broker logged ("New connection from"), at the peak after the
restart; and nothing missing or doubled, checked against every kiosk's outbox
file and central's ``events`` table. Jitter off is a hidden switch of the
sender (``SenderSettings.jitter``), never a kiosk setting.

``--json FILE`` writes every figure and per-second timelines (connection
attempts, broker connections, confirmed answers, from 2 s before the kill) for
plotting. The whole bench is bounded by ``--timeout`` per mode. Not part of
the test suite: run ``python -m bench.storm``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from dev.broker import Mosquitto, free_port
from device import sim
from device.config import SurveyConfig
from sync.broker import BrokerSettings
from sync.sender import SenderSettings

NEW_CONNECTION = re.compile(rb"^(\d+): New connection from ")
CENTRAL_CONNECTED = re.compile(rb"^(\d+): New client connected from \S+ as storm-central ")


def uptime_load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def broker_connections(log: Path, since: int) -> Counter[int]:
    """New TCP connections in Mosquitto's log, keyed by tenth of a unix second like the simulator's counts.

    Mosquitto stamps whole seconds: each second's count sits in its first tenth.
    """
    out: Counter[int] = Counter()
    with open(log, "rb") as f:
        for line in f:
            m = NEW_CONNECTION.match(line)
            if m and int(m.group(1)) >= since:
                out[int(m.group(1)) * 10] += 1
    return out


def central_connected(log: Path, since: float) -> int | None:
    """The unix second the broker logged the collector's first CONNECT at or after ``since``."""
    with open(log, "rb") as f:
        for line in f:
            m = CENTRAL_CONNECTED.match(line)
            if m and int(m.group(1)) >= int(since):
                return int(m.group(1))
    return None


class StoredWatch:
    """How many events central has committed, read from its SQLite file (``max(ingest_id)``, one index lookup)."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.tenths: Counter[int] = Counter()
        self.last = 0
        self.next = 0.0

    def poll(self) -> None:
        now = time.monotonic()
        if now < self.next or not self.db.exists():
            return
        self.next = now + 0.5
        try:
            conn = sqlite3.connect(f"{self.db.resolve().as_uri()}?mode=ro", uri=True, timeout=0.2)
            try:
                stored = int(conn.execute("SELECT coalesce(max(ingest_id), 0) FROM events").fetchone()[0])
            finally:
                conn.close()
        except sqlite3.Error:
            return  # busy or not made yet: the next poll counts it
        if stored > self.last:
            self.tenths[int(time.time() * 10)] += stored - self.last
            self.last = stored


def start_central(broker: Mosquitto, folder: Path, tries: int = 4) -> subprocess.Popen[bytes]:
    """``deskpulse-central`` on a SQLite file, its web server answering ``/healthz``.

    The web port is a free one when picked, but a thousand clients' ephemeral ports
    may take it before central binds it: then another is tried.
    """
    db = folder / "central.sqlite3"
    config = folder / "central.toml"
    for attempt in range(tries):
        port = free_port()
        config.write_text(f'[broker]\nurl = "{broker.url}"\nclient_id = "storm-central"\n'
                          f'[database]\nurl = "sqlite:///{db}"\n[web]\nbind = "127.0.0.1:{port}"\n')
        log = open(folder / "central.log", "ab")
        try:
            proc = subprocess.Popen([sys.executable, "-m", "central.cli", "--config", str(config), "--log-level",
                                     "warning"], stdout=log, stderr=log)
        finally:
            log.close()
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    return proc
            except OSError:
                time.sleep(0.2)
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        text = (folder / "central.log").read_text(errors="replace")
        if "could not listen" not in text[-1000:] or attempt == tries - 1:
            raise RuntimeError(f"deskpulse-central did not start: {text[-2000:]}")
    raise AssertionError("unreachable")


def run_mode(*, jitter: bool, kiosks: int, backlog: int, processes: int, down_s: float, timeout: float,
             folder: Path, outbox_base: Path, progress: bool) -> dict[str, Any]:
    """One storm on fresh parts; returns its figures."""
    folder.mkdir(parents=True)
    data_dir = Path(tempfile.mkdtemp(prefix="storm-kiosks-", dir=outbox_base))
    broker = Mosquitto(folder / "mosquitto").start()
    central = start_central(broker, folder)
    fleet: sim.Fleet | None = None
    deadline = time.monotonic() + timeout
    total = kiosks * backlog
    try:
        specs = sim.make_specs(
            kiosks=kiosks, processes=processes, site="storm", prefix="k-", data_dir=data_dir,
            broker=BrokerSettings(host=broker.host, port=broker.port),
            sender=replace(SenderSettings(), jitter=jitter), flow=sim.flow_settings(SurveyConfig()),
            rate=0.0, answers=None, backlog=0)
        fleet = sim.Fleet(specs).start()
        bar = sim.Progress(sys.stdout, total, enabled=progress)

        def left() -> float:
            return max(1.0, deadline - time.monotonic())

        fleet.wait("the kiosks to open their outboxes", lambda t: fleet is not None and fleet.phases("ready"), left())
        started = time.monotonic()
        fleet.send("connect")
        def up(t: sim.Totals) -> bool:
            if central.poll() is not None:
                raise RuntimeError(f"central exited: {(folder / 'central.log').read_text()[-2000:]}")
            return t.connected == kiosks and t.central_online == kiosks

        fleet.wait("every kiosk connected and central online", up, left(), bar)
        connected_s = time.monotonic() - started
        if central.poll() is not None:
            raise RuntimeError(f"central exited: {(folder / 'central.log').read_text()[-2000:]}")

        kill_wall = time.time()
        kill_mono = time.monotonic()
        broker.kill()
        fleet.send("backlog", backlog)
        fleet.wait("every kiosk to see the broker gone", lambda t: t.connected == 0, left(), bar)
        fleet.wait("the backlog on disk", lambda t: t.made >= total, left(), bar)
        backlog_s = time.monotonic() - kill_mono
        while time.monotonic() < kill_mono + down_s:
            fleet.poll()
            bar.show(fleet.totals())
        restart_wall = time.time()
        restart_mono = time.monotonic()
        broker.start()
        attempts_before = fleet.totals().attempts
        all_connected_s: float | None = None
        totals = fleet.totals()
        stored = StoredWatch(folder / "central.sqlite3")
        stored.poll()
        while totals.confirmed < total:
            totals = fleet.poll()
            stored.poll()
            bar.show(totals)
            if all_connected_s is None and totals.connected == kiosks:
                all_connected_s = time.monotonic() - restart_mono
            if time.monotonic() > deadline:
                break
        confirmed_s = time.monotonic() - restart_mono
        timed_out = totals.confirmed < total
        if all_connected_s is None and totals.connected == kiosks:
            all_connected_s = confirmed_s
        bar.show(totals, force=True)
        bar.done()
        end_wall = time.time()
        fleet.stop()
        fleet_totals = fleet.totals()
        result = sim.check(fleet.outboxes(), fleet.made_by_device(), "storm",
                           f"sqlite:///{folder / 'central.sqlite3'}")
        start = int(kill_wall) - 2
        attempts = sim.timeline(fleet.attempts_by_ds, start, end_wall)
        confirmed = sim.timeline(fleet.confirmed_by_ds, start, end_wall)
        logged = broker_connections(broker.log_path, start)
        central_back = central_connected(broker.log_path, restart_wall)
        accepted = sim.timeline(logged, start, end_wall)
        rss = [r.rss_kb for r in fleet.final.values()]
        cpu = [r.cpu_s for r in fleet.final.values()]
        return {
            "mode": "jitter" if jitter else "no jitter",
            "kiosks": kiosks, "backlog": backlog, "answers": total, "processes": len(specs),
            "connect_all_at_start_s": round(connected_s, 2),
            "backlog_made_s": round(backlog_s, 2),
            "down_s": round(restart_mono - kill_mono, 2),
            "all_connected_after_restart_s": None if all_connected_s is None else round(all_connected_s, 2),
            # whole seconds (Mosquitto's log): the collector's own reconnect backoff after the restart
            "central_connected_after_restart_s": None if central_back is None else central_back - int(restart_wall),
            "all_confirmed_after_restart_s": round(confirmed_s, 2),
            "timed_out": timed_out,
            "attempts_after_restart": fleet_totals.attempts - attempts_before,
            "attempts_total": fleet_totals.attempts,
            # the most in any one-second window (sliding by 0.1 s), so a burst across a second's edge counts whole
            "peak_attempts_per_s_after_restart": sim.peak_per_s(fleet.attempts_by_ds, restart_wall, end_wall),
            "peak_attempts_per_s_while_down": sim.peak_per_s(fleet.attempts_by_ds, kill_wall, restart_wall),
            "peak_broker_connections_per_s": max(accepted[int(restart_wall) - start:], default=0),
            "sender_restarts": fleet_totals.restarts,
            "confirmed": result.confirmed, "stored": result.stored, "missing": result.missing,
            "duplicated": result.duplicated, "lost_at_outbox": result.lost_at_outbox,
            "extra_in_central": result.extra_in_central,
            "ok": result.ok and not timed_out and result.confirmed == total,
            "worker_rss_mb": [round(k / 1024, 1) for k in rss], "worker_cpu_s": [round(c, 1) for c in cpu],
            "timeline": {
                "start_unix": start, "kill_s": round(kill_wall - start, 2), "restart_s": round(restart_wall - start, 2),
                "connection_attempts_per_s": attempts, "broker_new_connections_per_s": accepted,
                "confirmed_per_s": confirmed,
                # central's commits, polled every 0.5 s from the restart on (an event counts when it is polled)
                "stored_per_s": sim.timeline(stored.tenths, start, end_wall),
            },
        }
    finally:
        if fleet is not None:
            fleet.stop(timeout=30)
        central.terminate()
        try:
            central.wait(15)
        except subprocess.TimeoutExpired:
            central.kill()
        broker.kill()
        shutil.rmtree(data_dir, ignore_errors=True)


#: The figures of one mode in the JSON (a failed mode has them all, as None, and an "error").
RUN_KEYS = ("mode", "kiosks", "backlog", "answers", "processes", "connect_all_at_start_s", "backlog_made_s", "down_s",
            "all_connected_after_restart_s", "central_connected_after_restart_s", "all_confirmed_after_restart_s",
            "timed_out", "attempts_after_restart", "attempts_total", "peak_attempts_per_s_after_restart",
            "peak_attempts_per_s_while_down", "peak_broker_connections_per_s", "sender_restarts", "confirmed",
            "stored", "missing", "duplicated", "lost_at_outbox", "extra_in_central", "ok", "worker_rss_mb",
            "worker_cpu_s", "timeline")


def table(runs: list[dict[str, Any]]) -> str:
    rows = [
        ("all confirmed after restart (s)", "all_confirmed_after_restart_s"),
        ("all kiosks connected after restart (s)", "all_connected_after_restart_s"),
        ("collector connected after restart (s, whole)", "central_connected_after_restart_s"),
        ("peak connection attempts/s after restart", "peak_attempts_per_s_after_restart"),
        ("peak new connections/s (broker log, whole s)", "peak_broker_connections_per_s"),
        ("peak connection attempts/s while down", "peak_attempts_per_s_while_down"),
        ("connection attempts after restart", "attempts_after_restart"),
        ("broker down (s)", "down_s"),
        ("answers confirmed", "confirmed"),
        ("missing / doubled", None),
        ("worker RSS MB", "worker_rss_mb"),
        ("worker CPU s", "worker_cpu_s"),
        ("result", None),
    ]
    head = ["", *(r["mode"] for r in runs)]
    body = []
    for label, key in rows:
        cells = []
        for r in runs:
            if label.startswith("missing") and "error" not in r:
                cells.append(f"{r['missing']} / {r['duplicated']}")
            elif label == "result":
                cells.append("OK" if r["ok"] else ("TIMED OUT" if r["timed_out"] else "FAILED"))
            elif "error" in r:
                cells.append("-")
            else:
                value = r[key] if key else ""
                cells.append("-" if value is None else str(value))
        body.append([label, *cells])
    widths = [max(len(str(row[i])) for row in [head, *body]) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths,
                                                                                                       strict=True)))
             for row in [head, *body]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.storm", description=__doc__.split("\n\n")[0],
                                     epilog="Figures depend on the machine and its load; the load average is "
                                            "printed beside them.")
    parser.add_argument("--kiosks", type=int, default=1000, help="virtual kiosks (default 1000)")
    parser.add_argument("--backlog", type=int, default=50, help="answers each kiosk makes while the broker is "
                                                                "down (default 50)")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1,
                        help="simulator worker processes (default: one per core)")
    parser.add_argument("--down", type=float, default=10.0,
                        help="seconds from the kill to the restart, at least until every backlog is made "
                             "(default 10)")
    parser.add_argument("--modes", default="jitter,no-jitter", help="comma-separated: jitter, no-jitter")
    parser.add_argument("--timeout", type=float, default=240.0, help="hard limit per mode in seconds (default 240)")
    parser.add_argument("--dir", type=Path, help="work folder for brokers and centrals (default: a temporary one)")
    parser.add_argument("--outbox-dir", type=Path,
                        help="where the kiosks' outboxes go (default /dev/shm: a thousand kiosks share no disk)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write every figure and the timelines as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or any(m not in ("jitter", "no-jitter") for m in modes):
        parser.error("--modes takes jitter and/or no-jitter")
    per_process = -(-args.kiosks // max(1, min(args.processes, args.kiosks)))
    soft, hard, problem = sim.raise_open_files(per_process * sim.FDS_PER_KIOSK + 64)
    if problem:
        print(f"bench.storm: {problem}", file=sys.stderr)
        return 2
    shm = Path("/dev/shm")
    outbox_base = args.outbox_dir or (shm if shm.is_dir() and os.access(shm, os.W_OK) else None)
    work = args.dir or Path(tempfile.mkdtemp(prefix="deskpulse-storm-"))
    load_before = uptime_load()
    print(f"reconnect storm: {args.kiosks} kiosks x {args.backlog} answers, {args.processes} processes, "
          f"broker down {args.down:.0f} s; load average before: {load_before}", flush=True)
    runs = []
    try:
        for mode in modes:
            print(f"-- {mode}", flush=True)
            try:
                runs.append(run_mode(jitter=mode == "jitter", kiosks=args.kiosks, backlog=args.backlog,
                                     processes=args.processes, down_s=args.down, timeout=args.timeout,
                                     folder=work / mode, outbox_base=outbox_base or Path(tempfile.gettempdir()),
                                     progress=not args.no_progress))
            except (RuntimeError, TimeoutError) as exc:  # say what went wrong, and go on with the next mode
                print(f"bench.storm: {mode}: {exc}", file=sys.stderr, flush=True)
                # the same keys as a run that finished, with no figures (None), so readers need no special case
                runs.append({**dict.fromkeys(RUN_KEYS), "mode": mode.replace("-", " "), "kiosks": args.kiosks,
                             "backlog": args.backlog, "ok": False, "timed_out": False, "error": str(exc)})
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)
    load_after = uptime_load()
    print()
    print(table(runs))
    print(f"load average before / after: {load_before} / {load_after}; {os.cpu_count()} cores, "
          f"{platform.machine()}, Python {platform.python_version()}")
    if args.json is not None:
        args.json.write_text(json.dumps({
            "bench": "storm", "kiosks": args.kiosks, "backlog": args.backlog, "processes": args.processes,
            "down_s": args.down, "load_before": load_before, "load_after": load_after, "cores": os.cpu_count(),
            "machine": platform.machine(), "python": platform.python_version(), "runs": runs,
        }, indent=1) + "\n")
    return 0 if all(r["ok"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())

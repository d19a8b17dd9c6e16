"""Benchmark: how close the sender and the whole path come to raw paho.

Two ratios, each the median of interleaved runs against a private Mosquitto:

1. **drain**: the sender draining N pending outbox answers to ``sent`` (PUBACK
   recorded in the outbox) against raw paho publishing the same payloads with
   QoS 1 and the same in-flight window (goal >= 0.8);
2. **end to end**: the same backlog to ``confirmed`` (central stored it in
   SQLite and its receipt came back) against a raw paho publisher feeding an
   idle QoS 1 paho subscriber (goal >= 0.7).

The outbox lives on a real file system (``--dir``, default ``bench/.work``),
not tmpfs. Not part of the test suite: run ``python -m bench.sync_drain``.

``--json FILE`` also writes ``{"bench": "sync_drain", "settings": {...},
"load_average": [...], "rows": [...]}`` with a row ``drain`` and (unless
``--skip-e2e``) ``end to end``: ``answers_per_s``, ``raw_per_s``, ``ratio``,
``goal``, ``met`` (medians) and every run's ``runs_answers_per_s``, ``runs_raw_per_s``;
and ``timelines``: the last run's progress as ``[seconds, answers done]`` points about every
50 ms (``raw``: PUBACKs, ``drain``: sent, ``e2e``: confirmed), which ``bench.plots`` draws.
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
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from dev.broker import Mosquitto, free_port
from sync import protocol
from sync.broker import BrokerSettings
from sync.outbox import Outbox
from sync.sender import Sender, SenderSettings

SITE, DEVICE = "bench-site", "desk-1"


def fill_outbox(path: Path, n: int) -> list[bytes]:
    """An outbox with ``n`` pending answers (written in one transaction: setup, not measured)."""
    with Outbox(path, SITE, DEVICE) as box:
        payloads = []
        rows = []
        now = time.time()
        for seq in range(1, n + 1):
            event = {"schema": 1, "id": protocol.uuid7(), "site": SITE, "device": DEVICE, "epoch": box.epoch,
                     "seq": seq, "ts": protocol.utc_timestamp(), "clock_synced": True,
                     "boot_id": str(uuid.uuid4()), "mono_ms": seq, "rating": 1 + seq % 5, "scale": 5,
                     "reasons": [], "lang": "en", "source": "touch", "survey": 0, "flags": []}
            payload = protocol.encode("feedback", event)
            payloads.append(payload)
            rows.append({"seq": seq, "id": event["id"], "payload": payload, "now": now})
        conn = box._conn
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO outbox (seq, id, state, payload, created_at)"
                         " VALUES (:seq, :id, 0, :payload, :now)", rows)
        conn.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (str(n + 1),))
        conn.execute("COMMIT")
    return payloads


#: Every run's progress, (seconds since its start, answers done), sampled about every 50 ms: the plot's lines.
Samples = list[tuple[float, int]]
SAMPLE_S = 0.05


def sample(samples: Samples | None, start: float, done: int, force: bool = False) -> None:
    """Add a point when the last is SAMPLE_S old (or ``force``)."""
    if samples is None:
        return
    now = time.perf_counter() - start
    if force or not samples or now - samples[-1][0] >= SAMPLE_S:
        samples.append((round(now, 3), done))


def raw_publish(broker: Mosquitto, payloads: list[bytes], window: int,
                subscriber: subprocess.Popen[str] | None = None, samples: Samples | None = None) -> float:
    """Seconds for raw paho to get every QoS 1 PUBACK (and, if given, the subscriber every message)."""
    done = [0]
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="raw-pub", protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(window)
    client.max_queued_messages_set(0)
    client.on_publish = lambda c, u, mid, reason, p: done.__setitem__(0, done[0] + 1)
    client.connect(broker.host, broker.port)
    client.loop(0.1)
    topic = protocol.feedback_topic(SITE, DEVICE)
    start = time.perf_counter()
    for payload in payloads:
        client.publish(topic, payload, qos=1)
    sample(samples, start, 0, force=True)
    while done[0] < len(payloads):
        client.loop(0.01)
        sample(samples, start, done[0])
    sample(samples, start, done[0], force=True)
    if subscriber is not None:
        assert subscriber.stdout is not None and subscriber.stdout.readline().strip() == "done"
    elapsed = time.perf_counter() - start
    client.disconnect()
    return elapsed


SUBSCRIBER = """
import sys, paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
host, port, want, topic = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
count = [0]
def on_message(c, u, m):
    count[0] += 1
    if count[0] == want:
        print("done", flush=True)
def on_subscribe(c, u, mid, reasons, p):
    print("ready", flush=True)
sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="raw-sub", protocol=mqtt.MQTTv5)
sub.on_message, sub.on_subscribe = on_message, on_subscribe
sub.connect(host, port)
sub.subscribe(topic, qos=1)
sub.loop_forever()
"""


def idle_subscriber(broker: Mosquitto, want: int) -> subprocess.Popen[str]:
    """A raw QoS 1 paho subscriber in its own process (as central is); prints 'done' at ``want``."""
    proc = subprocess.Popen([sys.executable, "-c", SUBSCRIBER, broker.host, str(broker.port), str(want),
                             protocol.FEEDBACK_FILTER], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def sender_drain(broker: Mosquitto, outbox: Path, n: int, window: int, *, confirmed: bool,
                 samples: Samples | None = None) -> float:
    """Seconds for the sender to move ``n`` answers to sent (or confirmed)."""
    sender = Sender(outbox, SITE, DEVICE, BrokerSettings(broker.host, broker.port),
                    SenderSettings(max_inflight=window, resend_after_s=3600, status_every_s=3600))
    start = time.perf_counter()
    sender.start()
    sender.notify()
    sample(samples, start, 0, force=True)
    while (done := sender.status.confirmed if confirmed else sender.status.acked) < n:
        sample(samples, start, done)
        time.sleep(0.005)
    sample(samples, start, n, force=True)
    elapsed = time.perf_counter() - start
    sender.stop()
    return elapsed


def central(broker: Mosquitto, folder: Path) -> subprocess.Popen[bytes]:
    """``deskpulse-central`` in its own process, as deployed; returns when it collects."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "central.cli", "--broker", broker.url,
                             "--db", f"sqlite:///{folder / 'central.sqlite3'}", "--bind", f"127.0.0.1:{port}",
                             "--log-level", "warning"], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                time.sleep(1.0)  # the collector subscribes right after the web server starts
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("central did not start")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sync_drain", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=50_000, help="answers per run (default 50000)")
    parser.add_argument("--runs", type=int, default=3, help="interleaved runs (default 3; the median counts)")
    parser.add_argument("--window", type=int, default=100, help="QoS 1 messages in flight (default 100)")
    parser.add_argument("--dir", type=Path, default=Path(__file__).resolve().parent / ".work",
                        help="work folder on a real file system (default bench/.work)")
    parser.add_argument("--skip-e2e", action="store_true", help="only the drain ratio")
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="also write every run's figures and the medians to FILE as JSON (for `make bench`)")
    args = parser.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=args.dir))
    broker = Mosquitto(work / "mosquitto", persistence=False).start()
    results: dict[str, list[float]] = {"raw": [], "drain": [], "raw_e2e": [], "e2e": []}
    timelines: dict[str, Samples] = {}
    try:
        for run in range(args.runs):
            print(f"run {run + 1}/{args.runs}: filling {args.count} answers…", file=sys.stderr, flush=True)
            box = work / f"outbox-{run}.sqlite3"
            payloads = fill_outbox(box, args.count)
            timelines = {key: [] for key in results}  # the last run's are kept
            results["raw"].append(raw_publish(broker, payloads, args.window, samples=timelines["raw"]))
            results["drain"].append(sender_drain(broker, box, args.count, args.window, confirmed=False,
                                                 samples=timelines["drain"]))
            if args.skip_e2e:
                continue
            sub = idle_subscriber(broker, args.count)
            results["raw_e2e"].append(raw_publish(broker, payloads, args.window, subscriber=sub))
            sub.kill()
            sub.wait()
            box2 = work / f"outbox-e2e-{run}.sqlite3"
            fill_outbox(box2, args.count)
            folder = work / f"central-{run}"
            folder.mkdir()
            proc = central(broker, folder)
            try:
                results["e2e"].append(sender_drain(broker, box2, args.count, args.window, confirmed=True,
                                                   samples=timelines["e2e"]))
            finally:
                proc.terminate()
                proc.wait()
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)

    def rate(key: str) -> float:
        return float(args.count / statistics.median(results[key]))

    def row(name: str, side: str, raw: str, goal: float) -> dict[str, Any]:
        ratio = rate(side) / rate(raw)
        return {"name": name, "answers_per_s": round(rate(side), 1), "raw_per_s": round(rate(raw), 1),
                "ratio": round(ratio, 3), "goal": goal, "met": ratio >= goal,
                "runs_answers_per_s": [round(args.count / t, 1) for t in results[side]],
                "runs_raw_per_s": [round(args.count / t, 1) for t in results[raw]]}

    rows = [row("drain", "drain", "raw", 0.8)]
    print(f"answers per run: {args.count}, in-flight window: {args.window}, runs: {args.runs} (median)")
    print(f"raw paho QoS 1 publish:          {rate('raw'):9.0f} msg/s")
    print(f"sender drain to sent:            {rate('drain'):9.0f} answers/s   ratio {rate('drain') / rate('raw'):.2f}"
          "  (goal >= 0.8)")
    if not args.skip_e2e:
        rows.append(row("end to end", "e2e", "raw_e2e", 0.7))
        print(f"raw paho publisher -> subscriber: {rate('raw_e2e'):8.0f} msg/s")
        print(f"sender -> central, confirmed:     {rate('e2e'):8.0f} answers/s   "
              f"ratio {rate('e2e') / rate('raw_e2e'):.2f}  (goal >= 0.7)")
    if args.json is not None:
        report = {"bench": "sync_drain", "settings": {"count": args.count, "runs": args.runs, "window": args.window},
                  "load_average": [round(x, 2) for x in os.getloadavg()], "rows": rows,
                  "timelines": {key: points for key, points in timelines.items() if points}}
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

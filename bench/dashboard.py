"""Benchmark: the dashboard's requests on a big store, read from the rollups and from every answer.

Seeds a fresh store (``dev.seed``: ``--answers`` over 80 desks at eight sites in
eight zones and 365 days), starts ``deskpulse-central`` on it in its own process
(as deployed: ``python -m central.cli``, with a private Mosquitto on loopback),
and times each request with one HTTP client, one request at a time: the
median of ``--runs`` after one warm-up. Then it takes the sites out of the
rollups (``rollup_zones`` emptied: the web side counts every answer again, as
it did before the rollups) and times the same requests in the same process,
so both columns and their ratio come from one run on one machine. Before each
timed request the bench stores one new answer, so central computes the view anew
(without one, every page after the first gets the numbers central already
computed for that view: the "shared" column).

Goals (issue 19, this 2-core machine, 1M answers): overview <= 0.3 s,
``/api/aggregates`` <= 0.1 s, ``/api/devices`` <= 0.1 s, TV <= 0.1 s.
Not part of the test suite: ``python -m bench.dashboard``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.ingest import DEFAULT_PG_URL, Scratch
from dev.broker import Mosquitto, free_port

TV_TOKEN = "bench-tv-0123456789abcdef0123456789"
#: (label, path, goal in seconds or None).
REQUESTS = (
    ("overview, last 30 days", "/", 0.3),
    ("overview, one site", "/?site=lhr-t5", 0.3),
    ("/api/aggregates", "/api/aggregates", 0.1),
    ("/api/devices", "/api/devices", 0.1),
    ("/export/aggregates.csv", "/export/aggregates.csv", None),
    ("wall TV (one site)", f"/tv/{TV_TOKEN}", 0.1),
    ("/api/events?limit=50", "/api/events?limit=50", None),
)


def timed(url: str, runs: int, change: Callable[[], None] | None = None) -> float:
    """The median seconds of ``runs`` GETs of ``url`` (after one warm-up), reading the whole body.

    ``change`` (not timed) runs before each GET: a new answer, so central computes the view
    anew rather than hand out the numbers it shares until the next answer.
    """
    def get() -> float:
        if change is not None:
            change()
        started = time.perf_counter()
        with urllib.request.urlopen(url, timeout=300) as reply:
            reply.read()
        return time.perf_counter() - started

    get()
    return statistics.median(get() for _ in range(runs))


Row = tuple[str, float, float, float, float | None]


def _answers(store: Any) -> Callable[[], None]:
    """Stores one new answer per call (at the seeded Heathrow desk 1, now)."""
    import uuid

    from sync import protocol

    epoch, seq = str(uuid.uuid4()), [0]

    def store_one() -> None:
        seq[0] += 1
        store.insert_events([{
            "schema": 1, "id": protocol.uuid7(), "site": "lhr-t5", "device": "desk-01", "epoch": epoch,
            "seq": seq[0], "ts": protocol.utc_timestamp(), "clock_synced": True, "boot_id": epoch,
            "mono_ms": seq[0], "rating": 4, "scale": 5, "reasons": [], "lang": "en", "source": "touch",
            "survey": 1, "flags": []}])

    return store_one


def bench(backend: str, answers: int, runs: int, folder: Path, pg_url: str, every_answer: bool = True,
          db_url: str | None = None) -> tuple[list[Row], float | None]:
    """The rows of one backend's table and the seconds its seeding took (None: ``db_url`` given, seeded before)."""
    from central.config import from_dict
    from central.store import Store, rollup_zones
    from dev.seed import seed, seed_config

    db = None if db_url else Scratch(backend, folder, pg_url, f"dashboard_{backend}")
    url = db_url or (db.url if db else "")
    seeding: float | None = None
    try:
        raw = seed_config(80)
        raw["dashboard"] = {"tv": {"wall": {"token": TV_TOKEN, "site": "lhr-t5"}}}
        config = from_dict({**raw, "database": {"url": url}}, source="<bench>")
        if db is not None:
            started = time.monotonic()
            with Store(url) as store:
                store.migrate()
                store.zones = lambda slug: config.site(slug).timezone
                seed(store, config, total=answers, days=365, progress=True)
            seeding = time.monotonic() - started
            print(f"{backend}: seeded {answers:,} answers in {seeding:.0f} s", file=sys.stderr)
        broker = Mosquitto(folder / f"mosquitto-{backend}").start()
        try:
            port = free_port()
            toml = folder / f"dashboard-{backend}.toml"
            toml.write_text(_toml(raw, url, broker.url, port))
            proc = subprocess.Popen([sys.executable, "-m", "central.cli", "--config", str(toml),
                                     "--log-level", "warning"], stdout=subprocess.DEVNULL)
            try:
                base = f"http://127.0.0.1:{port}"
                _wait_up(base, proc)
                with Store(url) as store:
                    store.zones = lambda slug: config.site(slug).timezone
                    answer = _answers(store)
                    rolled = {label: timed(base + path, runs, answer) for label, path, _ in REQUESTS}
                    shared = {label: timed(base + path, runs) for label, path, _ in REQUESTS}
                    counted = {label: float("nan") for label, _, _ in REQUESTS}
                    if every_answer and db is not None:  # a given store keeps its rollups
                        with store.transaction() as conn:
                            conn.execute(rollup_zones.delete())  # every site read from its answers again
                        counted = {label: timed(base + path, runs, answer) for label, path, _ in REQUESTS}
            finally:
                proc.terminate()
                proc.wait(30)
        finally:
            broker.kill()
        return [(label, rolled[label], shared[label], counted[label], goal) for label, _, goal in REQUESTS], seeding
    finally:
        if db is not None:
            db.drop()


def _toml(raw: dict[str, Any], db_url: str, broker_url: str, port: int) -> str:
    from dev.seed import _toml as sites_toml

    text = sites_toml(raw, db_url)
    return (text + f'[broker]\nurl = "{broker_url}"\n[web]\nbind = "127.0.0.1:{port}"\n'
            f'[dashboard.tv.wall]\ntoken = "{TV_TOKEN}"\nsite = "lhr-t5"\n')


def _wait_up(base: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 300  # central counts nothing more at start: the seed kept the rollups
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"deskpulse-central exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("deskpulse-central did not come up in 300 s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dashboard", description=__doc__.split("\n\n")[0])
    parser.add_argument("--answers", type=int, default=1_000_000, help="answers in the store (default 1,000,000)")
    parser.add_argument("--runs", type=int, default=5, help="timed requests per row; the median counts (default 5)")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, metavar="URL",
                        help=f"a PostgreSQL server to create a scratch database on (default {DEFAULT_PG_URL})")
    parser.add_argument("--dir", type=Path, default=Path(__file__).resolve().parent / ".work",
                        help="work folder on a real file system (default bench/.work)")
    parser.add_argument("--no-every-answer", dest="every_answer", action="store_false",
                        help="skip the column without the rollups (at ten million answers each of its requests "
                        "takes minutes)")
    parser.add_argument("--db", metavar="URL", help="time this store, seeded before by `python -m dev.seed` with its "
                        "default 80 desks (needs one --backend, its own; kept afterwards with the answers stored "
                        "here; the column without the rollups is skipped, it would change the store)")
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="also write the medians (seconds per request and backend, seeding time) to FILE as JSON")
    args = parser.parse_args(argv)
    if args.answers < 1 or args.runs < 1:
        parser.error("--answers and --runs must be at least 1")
    if args.db and (args.backend == "both" or not args.db.startswith(args.backend)):
        parser.error("--db needs --backend sqlite or --backend postgresql, matching its URL")
    args.dir.mkdir(parents=True, exist_ok=True)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    report: dict[str, Any] = {"bench": "dashboard", "answers": None if args.db else args.answers, "runs": args.runs,
                              "load_average": list(os.getloadavg()), "backends": {}}
    for backend in backends:
        rows, seeding = bench(backend, args.answers, args.runs, args.dir, args.pg_url, args.every_answer, args.db)
        report["backends"][backend] = {
            "store": args.db or "seeded", "seeding_s": seeding,
            "requests": [{"request": label, "path": path, "computed_s": rolled, "shared_s": shared,
                          "every_answer_s": None if counted != counted else counted, "goal_s": goal,
                          "met": None if goal is None else rolled <= goal}
                         for (label, rolled, shared, counted, goal), (_, path, _) in zip(rows, REQUESTS, strict=True)]}
        said = f"{args.db} (given)" if args.db else f"{args.answers:,} answers"
        print(f"\n{backend}, {said}, median of {args.runs}" + (f"; seeded in {seeding:.0f} s" if seeding else "") + ":")
        print(f"  {'request':<26} {'rollups':>9} {'shared':>9} {'every answer':>13} {'ratio':>7}  goal (rollups)")
        for label, rolled, shared, counted, goal in rows:
            verdict = "" if goal is None else f"<= {goal:.1f} s {'met' if rolled <= goal else 'NOT met'}"
            every = "skipped" if counted != counted else f"{counted:.3f}s"  # NaN: --no-every-answer
            ratio = "—" if counted != counted else f"{rolled / counted:.2f}"
            print(f"  {label:<26} {rolled:>8.3f}s {shared:>8.3f}s {every:>13} {ratio:>7}  {verdict}")
        print("  rollups: after a new answer (computed); shared: no new answer (another page's numbers);\n"
              "  every answer: after a new answer, the rollups not used; ratio: rollups / every answer")
    if args.json:
        report["load_average_after"] = list(os.getloadavg())
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

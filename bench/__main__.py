"""``make bench``: every benchmark in one run, one table.

    .venv/bin/python -m bench [--only NAME,...] [--skip NAME,...] [--out build/bench] [--pg-url URL]

Runs each benchmark of ``bench/`` as its own process (so one cannot warm or slow
the next), each doing its own side-by-side measurement: the figure and its
baseline alternate within the benchmark (three times for throughput, and the median
counts; the reconnect storm once per mode, see bench/README.md). Then
prints one table: the figure, the baseline measured beside it, their ratio, the
goal and whether it is met. Rows that could not run say why ("skipped: no server"
for PostgreSQL when nothing answers on ``--pg-url``). Writes into ``--out``:
``table.md`` (the table as printed), ``results.json`` (every figure, the machine),
each benchmark's own JSON and log, and PNG plots (drain over time; connection
attempts per second during the reconnect storm, with and without jitter).

Benchmarks (``--only``/``--skip`` take these names): drain, ingest, kiosk, idle,
storm, dashboard. ``dashboard`` seeds a store of a million answers per back end
(several minutes each) and is skipped unless named in ``--only`` or ``--with-dashboard``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.ingest import Scratch, pg_problem

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
NAMES = ("drain", "ingest", "kiosk", "idle", "storm", "dashboard")


@dataclass
class Row:
    """One line of the table."""

    name: str
    measured: str
    baseline: str = ""
    ratio: float | None = None
    goal: str = ""
    met: bool | None = None
    note: str = ""

    def cells(self) -> list[str]:
        verdict = {True: "met", False: "**not met**", None: ""}[self.met]
        if self.note and not self.measured:
            return [self.name, self.note, "", "", self.goal, verdict]
        ratio = "" if self.ratio is None else f"{self.ratio:.2f}"
        return [self.name, self.measured, self.baseline, ratio, self.goal, verdict]


@dataclass
class Step:
    """One benchmark: its command and how its JSON becomes rows."""

    name: str
    argv: Callable[[Path, argparse.Namespace], list[str]]
    rows: Callable[[dict[str, Any], argparse.Namespace], list[Row]]
    timeout_s: float
    #: False: the command writes no JSON; its rows get {"seconds": how long it took}.
    writes_json: bool = True
    #: Skipped ("skipped: no server") when PostgreSQL does not answer at --pg-url.
    needs_pg: bool = False
    before: Callable[[argparse.Namespace], None] | None = None
    after: Callable[[argparse.Namespace], None] | None = None


def fmt_rate(value: float, unit: str) -> str:
    return f"{value:,.0f} {unit}"


# ---------------------------------------------------------------------------- the benchmarks


def kiosk_rows(r: dict[str, Any], _: argparse.Namespace) -> list[Row]:
    fs = r.get("file_system", "disk")
    return [
        Row("tap → thank-you frame, median (durable write)", f"{r['tap_disk_median_ms']:.2f} ms on {fs}",
            f"{r['tap_memory_median_ms']:.2f} ms in /dev/shm", r["tap_disk_median_ms"] / r["tap_memory_median_ms"]),
        Row("tap → thank-you frame, p99 (durable write)", f"{r['tap_disk_p99_ms']:.2f} ms on {fs}",
            f"{r['tap_memory_p99_ms']:.2f} ms in /dev/shm", r["tap_disk_p99_ms"] / r["tap_memory_p99_ms"],
            f"p99 < {r['goals']['tap_p99_ms']:g} ms", r["tap_disk_p99_ms"] < r["goals"]["tap_p99_ms"]),
        Row("kiosk start → first frame", f"{r['start_kiosk_s']:.2f} s", f"{r['start_bare_s']:.2f} s bare pygame",
            r["start_kiosk_s"] / r["start_bare_s"], f"< {r['goals']['start_s']:g} s",
            r["start_kiosk_s"] < r["goals"]["start_s"]),
        Row("kiosk resident memory", f"{r['rss_kiosk_mb']:.0f} MB", f"{r['rss_bare_mb']:.0f} MB bare pygame",
            r["rss_kiosk_mb"] / r["rss_bare_mb"], f"< {r['goals']['rss_mb']:g} MB",
            r["rss_kiosk_mb"] < r["goals"]["rss_mb"]),
    ]


def idle_rows(r: dict[str, Any], _: argparse.Namespace) -> list[Row]:
    return [Row("idle kiosk CPU", f"{r['kiosk_core_pct']:.2f} % of a core",
                f"{r['naive_core_pct']:.2f} % naive 30 fps loop", r["kiosk_core_pct"] / r["naive_core_pct"],
                f"< {r['goal_core_pct']:g} %", r["kiosk_core_pct"] < r["goal_core_pct"])]


def run_idle(out: Path, args: argparse.Namespace) -> list[str]:
    # Three interleaved pairs (kiosk, naive loop), the median of each: bench.idle_cpu --runs.
    return [sys.executable, "-m", "bench.idle_cpu", "--seconds", str(args.idle_seconds), "--runs", "3",
            "--json", str(out)]


def drain_rows(r: dict[str, Any], _: argparse.Namespace) -> list[Row]:
    what = {"drain": ("outbox drain (sender → broker, sent)", "raw paho publisher"),
            "end to end": ("end to end (outbox → central → receipt)", "raw publisher → subscriber")}
    return [Row(what[row["name"]][0], fmt_rate(row["answers_per_s"], "answers/s"),
                f"{fmt_rate(row['raw_per_s'], 'msg/s')} {what[row['name']][1]}", row["ratio"],
                f"ratio ≥ {row['goal']:g}", row["met"]) for row in r["rows"]]


def ingest_rows(r: dict[str, Any], _: argparse.Namespace) -> list[Row]:
    out: list[Row] = []
    by_backend: dict[str, dict[str, Any]] = {}
    for row in r["rows"]:
        n = row["collectors"]
        label = f"ingest, {'PostgreSQL' if row['backend'] == 'postgresql' else 'SQLite'}, {n} collector{'s' * (n > 1)}"
        if "skipped" in row:
            if row["rollups"]:
                out.append(Row(label, "", note=f"skipped: {row['skipped']}", goal=f"ratio ≥ {row['goal']:g}"))
            continue
        if row["rollups"]:
            by_backend[row["backend"]] = row
            out.append(Row(label, fmt_rate(row["events_per_s"], "events/s"),
                           f"{fmt_rate(row['raw_per_s'], 'msg/s')} raw QoS 1 delivery", row["ratio"],
                           f"ratio ≥ {row['goal']:g}", row["met"]))
        else:
            with_them = by_backend.get(row["backend"], {})
            out.append(Row(f"{label}: with the rollups / without",
                           fmt_rate(with_them.get("events_per_s", 0.0), "events/s"),
                           f"{fmt_rate(row['events_per_s'], 'events/s')} without", row["with_over_without"],
                           f"ratio ≥ {row['rollup_goal']:g}", row["rollup_met"]))
    return out


def ingest_argv(collectors: int) -> Callable[[Path, argparse.Namespace], list[str]]:
    def argv(out: Path, args: argparse.Namespace) -> list[str]:
        return [sys.executable, "-m", "bench.ingest", "--count", str(args.ingest_count), "--runs", "3",
                "--backend", "both", "--pg-url", args.pg_url, "--collectors", str(collectors),
                "--rollups", "both" if collectors == 1 else "on", "--json", str(out)]
    return argv


def storm_rows(r: dict[str, Any], _: argparse.Namespace) -> list[Row]:
    failed = [f"{run['mode']}: {run.get('error') or 'failed'}" for run in r["runs"] if not run.get("ok")]
    if any(run.get("all_confirmed_after_restart_s") is None for run in r["runs"]):
        return [Row(f"reconnect storm, {r['kiosks']:,} kiosks × {r['backlog']}", "", note="; ".join(failed),
                    goal="0 missing or doubled", met=False)]
    runs = {run["mode"]: run for run in r["runs"]}
    jit, flat = runs.get("jitter"), runs.get("no jitter")
    size = f"{r['kiosks']:,} kiosks × {r['backlog']}"
    out: list[Row] = []
    if jit is None:
        return [Row(f"reconnect storm, {size}", "", note="the jitter run is missing")]

    def both(key: str, unit: str) -> tuple[str, str, float | None]:
        a = jit[key]
        b = None if flat is None else flat[key]
        ratio = None if (a is None or not b) else a / b
        return (f"{a} {unit} with jitter", "" if b is None else f"{b} {unit} without jitter", ratio)

    measured, baseline, ratio = both("all_confirmed_after_restart_s", "s")
    out.append(Row(f"reconnect storm, {size}: restart → every answer confirmed", measured, baseline, ratio))
    measured, baseline, ratio = both("peak_attempts_per_s_after_restart", "/s")
    out.append(Row(f"reconnect storm, {size}: peak connection attempts", measured, baseline, ratio))
    bad = sum(run["missing"] + run["duplicated"] for run in r["runs"])
    out.append(Row(f"reconnect storm, {size}: missing + doubled",
                   " / ".join(f"{run['missing']} + {run['duplicated']} ({run['mode']})" for run in r["runs"]),
                   goal="0", met=bad == 0 and all(run["ok"] for run in r["runs"])))
    return out


def dashboard_rows(r: dict[str, Any], _: argparse.Namespace) -> list[Row]:
    out: list[Row] = []
    for backend, b in r["backends"].items():
        name = "PostgreSQL" if backend == "postgresql" else "SQLite"
        seeded = f"; seeded in {b['seeding_s']:.0f} s" if b.get("seeding_s") else ""
        for q in b["requests"]:
            if q["goal_s"] is None:
                continue
            out.append(Row(f"dashboard at {r['answers'] or DASHBOARD_ANSWERS:,} answers, {name}: {q['request']}",
                           f"{q['computed_s']:.3f} s after a new answer{seeded}",
                           f"{q['shared_s']:.3f} s shared", q["computed_s"] / q["shared_s"] if q["shared_s"] else None,
                           f"≤ {q['goal_s']:g} s", q["met"]))
            seeded = ""
    return out


def dashboard_load_rows(r: dict[str, Any], _: argparse.Namespace) -> list[Row]:
    idle, busy = r["cores_answers_only"], r["cores_with_pages"]
    return [
        Row(f"dashboard, {r['pages']} open pages at {r['rate']:g} answers/s: web side CPU",
            f"{r['web_cores']:.2f} cores", f"{idle:.2f} cores answers only", busy / idle if idle else None,
            "< 0.5 core", r["web_goal_met"]),
        Row(f"dashboard, {r['pages']} open pages: publish → the page's feed, max",
            f"{r['feed']['max_s']:.2f} s", f"median {r['feed']['median_s']:.2f} s", None, "≤ 2 s",
            r["feed_goal_met"]),
        Row(f"dashboard, {r['pages']} open pages: publish → the page's numbers include it, median",
            f"{r['numbers']['median_s']:.2f} s", f"p99 {r['numbers']['p99_s']:.2f} s"),
    ]


DASHBOARD_ANSWERS = 1_000_000


def store_url(args: argparse.Namespace, backend: str) -> str:
    """The store the dashboard rows seed once and time (made by :func:`make_store`)."""
    return str(args.stores[backend].url)


def make_store(backend: str) -> Callable[[argparse.Namespace], None]:
    """A fresh store for the dashboard rows: a SQLite file in --out, or a scratch PostgreSQL database."""
    def make(args: argparse.Namespace) -> None:
        args.stores[backend] = Scratch(backend, args.out.resolve(), args.pg_url, "dashboard_1m")
    return make


def drop_store(backend: str) -> Callable[[argparse.Namespace], None]:
    def drop(args: argparse.Namespace) -> None:
        store = args.stores.pop(backend, None)
        if store is not None:
            store.drop()
    return drop


def seed_argv(args: argparse.Namespace, backend: str) -> list[str]:
    return [sys.executable, "-m", "dev.seed", "--db", store_url(args, backend), "--answers", str(DASHBOARD_ANSWERS)]


def seed_rows(name: str) -> Callable[[dict[str, Any], argparse.Namespace], list[Row]]:
    def rows(r: dict[str, Any], _: argparse.Namespace) -> list[Row]:
        rate = DASHBOARD_ANSWERS / r["seconds"]
        return [Row(f"dashboard: seeding {DASHBOARD_ANSWERS:,} answers into {name} (dev.seed)",
                    f"{r['seconds']:.0f} s", f"{rate:,.0f} answers/s")]
    return rows


def dashboard_argv(backend: str) -> Callable[[Path, argparse.Namespace], list[str]]:
    def argv(out: Path, args: argparse.Namespace) -> list[str]:
        return [sys.executable, "-m", "bench.dashboard", "--db", store_url(args, backend), "--backend", backend,
                "--json", str(out)]
    return argv


STEPS: dict[str, list[Step]] = {
    "drain": [Step("sync_drain", lambda out, a: [sys.executable, "-m", "bench.sync_drain", "--count",
                                                 str(a.drain_count), "--runs", "3", "--json", str(out)],
                   drain_rows, timeout_s=900)],
    "ingest": [Step("ingest", ingest_argv(1), ingest_rows, timeout_s=1200),
               Step("ingest_2", ingest_argv(2), ingest_rows, timeout_s=1200)],
    "kiosk": [Step("kiosk", lambda out, a: [sys.executable, "-m", "bench.kiosk", "--json", str(out)],
                   kiosk_rows, timeout_s=600)],
    "idle": [Step("idle", run_idle, idle_rows, timeout_s=600)],
    "storm": [Step("storm", lambda out, a: [sys.executable, "-m", "bench.storm", "--kiosks", str(a.storm_kiosks),
                                            "--backlog", "50", "--no-progress", "--json", str(out)],
                   storm_rows, timeout_s=1200)],
    "dashboard": [
        Step("seed_sqlite", lambda out, a: seed_argv(a, "sqlite"), seed_rows("SQLite"), timeout_s=3600,
             writes_json=False, before=make_store("sqlite")),
        Step("dashboard_sqlite", dashboard_argv("sqlite"), dashboard_rows, timeout_s=1800),
        Step("dashboard_load", lambda out, a: [sys.executable, "-m", "bench.dashboard_load", "--db",
                                               store_url(a, "sqlite"), "--json", str(out)],
             dashboard_load_rows, timeout_s=1800, after=drop_store("sqlite")),
        Step("seed_postgresql", lambda out, a: seed_argv(a, "postgresql"), seed_rows("PostgreSQL"), timeout_s=3600,
             writes_json=False, needs_pg=True, before=make_store("postgresql")),
        Step("dashboard_postgresql", dashboard_argv("postgresql"), dashboard_rows, timeout_s=1800, needs_pg=True,
             after=drop_store("postgresql")),
    ],
}


# ---------------------------------------------------------------------------- running and the table


def machine() -> dict[str, Any]:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal:"))
    return {"cpu": model, "cores": os.cpu_count(), "memory_gib": round(mem_kb / 1024 / 1024, 1),
            "kernel": platform.release(), "python": platform.python_version(),
            "load_at_start": os.getloadavg()[0], "date": time.strftime("%Y-%m-%d %H:%M %Z")}


def table(rows: list[Row]) -> str:
    head = ["benchmark", "measured", "baseline, same run", "ratio", "goal", ""]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def run_step(step: Step, out: Path, args: argparse.Namespace) -> list[Row]:
    if step.needs_pg and not args.pg:
        return [Row(step.name, "", note="skipped: no server")]
    if step.before is not None:
        step.before(args)
    try:
        return _run_step(step, out, args)
    finally:
        if step.after is not None:
            step.after(args)


def _run_step(step: Step, out: Path, args: argparse.Namespace) -> list[Row]:
    result = out / f"{step.name}.json"
    log = out / f"{step.name}.log"
    result.unlink(missing_ok=True)
    argv = step.argv(result, args)
    print(f"== {step.name}: {' '.join(argv[1:])}", flush=True)
    started = time.monotonic()
    with open(log, "w") as sink:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        try:
            for line in proc.stdout:  # the benchmark's own progress, shown and kept
                sink.write(line)
                print(f"   {line}", end="", flush=True)
                if time.monotonic() - started > step.timeout_s:
                    proc.kill()
                    break
        finally:
            code = proc.wait()
    took = time.monotonic() - started
    if code == 0 and not step.writes_json:
        result.write_text(json.dumps({"seconds": took}) + "\n")
    why = "timed out" if took > step.timeout_s else f"exit {code}"
    failed = Row(step.name, "", note=f"failed ({why}; see {log})")
    if not result.exists():
        return [failed]
    print(f"   ({took:.0f} s)", flush=True)
    try:
        rows = step.rows(json.loads(result.read_text()), args)  # a run that failed may still say how far it got
    except (ValueError, KeyError, TypeError, ZeroDivisionError) as exc:
        return [Row(step.name, "", note=f"failed: its JSON ({result}) lacks what the table needs: {exc!r}")]
    return rows if code == 0 else [*rows, failed]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="comma-separated benchmarks to run (default: all but dashboard)")
    parser.add_argument("--skip", default="", help="comma-separated benchmarks to leave out")
    parser.add_argument("--with-dashboard", action="store_true",
                        help="also the dashboard at a million answers (seeds a store per back end, minutes)")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "bench", help="where results go "
                        "(default build/bench)")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, help=f"PostgreSQL server for the PostgreSQL rows "
                        f"(default {DEFAULT_PG_URL}); rows say 'skipped: no server' when it does not answer")
    parser.add_argument("--idle-seconds", type=float, default=15.0, help="length of each idle-CPU run (default 15)")
    parser.add_argument("--drain-count", type=int, default=20_000, help="answers per drain run (default 20000)")
    parser.add_argument("--ingest-count", type=int, default=20_000, help="events per ingest run (default 20000)")
    parser.add_argument("--storm-kiosks", type=int, default=1000, help="kiosks in the reconnect storm (default 1000)")
    args = parser.parse_args(argv)
    only = [n for n in args.only.split(",") if n]
    skip = {n for n in args.skip.split(",") if n}
    for name in [*only, *skip]:
        if name not in NAMES:
            parser.error(f"unknown benchmark {name!r}; the names are {', '.join(NAMES)}")
    chosen = only or [n for n in NAMES if n != "dashboard" or args.with_dashboard]
    chosen = [n for n in chosen if n not in skip]
    args.pg = pg_problem(args.pg_url) is None
    args.stores = {}
    args.out.mkdir(parents=True, exist_ok=True)
    facts = machine()
    print(f"machine: {facts['cpu']}, {facts['cores']} cores, {facts['memory_gib']} GiB, Python {facts['python']}, "
          f"load {facts['load_at_start']:.2f}; PostgreSQL at {args.pg_url}: "
          f"{'answers' if args.pg else 'no server (its rows are skipped)'}", flush=True)
    started = time.monotonic()
    rows: list[Row] = []
    for name in chosen:
        for step in STEPS[name]:
            rows += run_step(step, args.out, args)
    text = table(rows)
    took = time.monotonic() - started
    footer = (f"\n{facts['cores']} cores ({facts['cpu']}), {facts['memory_gib']} GiB, Linux {facts['kernel']}, "
              f"Python {facts['python']}; load {facts['load_at_start']:.2f} at start; {facts['date']}; "
              f"all benchmarks took {took / 60:.1f} min.")
    print("\n" + text + footer)
    (args.out / "table.md").write_text(text + "\n" + footer + "\n")
    try:
        from bench.plots import draw_all
    except ImportError as exc:
        print(f"plots skipped: {exc} (make bench installs matplotlib)")
    else:
        for path in draw_all(args.out):
            print(f"plot: {path}")
    (args.out / "results.json").write_text(json.dumps(
        {"machine": facts, "rows": [r.__dict__ for r in rows]}, indent=2, default=str) + "\n")
    return 0 if all("failed" not in r.note for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

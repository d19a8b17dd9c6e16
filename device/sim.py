"""``deskpulse-sim``: a fleet of virtual kiosks running the real flow, outbox and sender.

Each virtual kiosk is the kiosk minus its screen: a :class:`device.flow.Flow`
fed simulated customers (a rating, sometimes a reason or "skip", at a given
rate), its own outbox file (:class:`sync.outbox.Outbox`, WAL, fsync) written
exactly as the kiosk writes it (:func:`device.facts.answer`), and its own
:class:`sync.sender.Sender` with its own MQTT client (client id
``{site}.{device}``). Nothing here publishes on its own: every message on the
wire is the sender's.

A few processes (``--processes``, default one per core) each run many kiosks
on one thread: a selector waits on every sender's socket and drives the
senders through :meth:`sync.sender.Sender.open_external` (no thread per
kiosk). The main process starts them, shows progress, decides when tapping
ends and when the run is over, and checks the result against every outbox
file and, with ``--central-db``, central's ``events`` table.

The storm bench (``bench/storm.py``) drives the same :class:`Fleet` with its
own phases (connect, kill the broker, make a backlog, restart).
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import json
import logging
import math
import multiprocessing
import os
import queue
import random
import resource
import selectors
import shutil
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field, fields, replace
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Final, TextIO

from device import __version__, facts
from device.config import KioskConfig, SurveyConfig
from device.flow import Flow, FlowSettings, Reason, Save, Saved, SaveFailed, Skip, Tap, Tick
from sync.broker import BrokerSettings, parse_broker_url
from sync.errors import DeskPulseError
from sync.outbox import Outbox, State
from sync.sender import Sender, SenderSettings

log = logging.getLogger("deskpulse.sim")

#: File descriptors one virtual kiosk holds: two SQLite connections (the flow's and
#: the sender's) on the outbox, its -wal and -shm files, and the MQTT socket; with room to spare.
FDS_PER_KIOSK = 8
#: Ratings the simulated customers give, best (5) to worst (1), on a 5-point scale.
RATING_WEIGHTS = {5: 40, 4: 30, 3: 15, 2: 8, 1: 7}


# ---------------------------------------------------------------------------- worker side


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What one worker process runs (picklable: it crosses to a spawned process)."""

    number: int
    kiosks: tuple[int, ...]
    site: str
    prefix: str
    data_dir: Path
    broker: BrokerSettings
    sender: SenderSettings
    flow: FlowSettings
    rate: float  # answers per second per kiosk while tapping is open
    answers: int | None  # per kiosk (None: until tapping closes)
    backlog: int  # answers each kiosk makes before its sender connects
    tick_s: float = 0.05
    report_s: float = 0.5
    seed: int = 0


@dataclass(slots=True)
class Counts:
    """What a worker counts of its kiosks, and the fleet of all workers (:class:`Totals`)."""

    kiosks: int = 0
    made: int = 0
    save_failed: int = 0
    published: int = 0
    acked: int = 0
    confirmed: int = 0
    connected: int = 0
    central_online: int = 0
    attempts: int = 0
    restarts: int = 0
    tapping: bool = False
    #: Kiosks whose customer is still on the follow-up (their answer comes when they tap, skip or time out).
    followups: int = 0


#: The counts summed over workers (``tapping``: any of them).
_SUMMED: Final = tuple(f.name for f in fields(Counts) if f.name != "tapping")


@dataclass(slots=True, kw_only=True)
class Report(Counts):
    """A worker's counters (cumulative), sent every ``report_s`` and at the end."""

    number: int
    phase: str  # starting | ready | running | done | failed
    #: tenth of a unix second -> connection attempts / rows confirmed in it (since the last report)
    attempts_by_ds: dict[int, int] = field(default_factory=dict)
    confirmed_by_ds: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)  # last_error -> kiosks showing it
    rss_kb: int = 0
    cpu_s: float = 0.0
    outboxes: tuple[tuple[str, str], ...] = ()  # (device, outbox path), in the final report
    made_by_device: dict[str, int] = field(default_factory=dict)  # in the final report
    problem: str | None = None


class _Watch:
    """The worker's selector as the senders' :class:`sync.sender.SocketWatch`."""

    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self.socks: dict[Sender, Any] = {}

    def opened(self, sender: Sender, sock: Any) -> None:
        self.selector.register(sock, selectors.EVENT_READ, sender)
        self.socks[sender] = sock

    def closed(self, sender: Sender, sock: Any) -> None:
        registered = self.socks.get(sender)
        if registered is not None and registered is sock:
            del self.socks[sender]
            self.selector.unregister(registered)  # before paho closes it (a closed number may be reused at once)

    def want_write(self, sender: Sender, sock: Any, on: bool) -> None:
        registered = self.socks.get(sender)
        if registered is not None and registered is sock:
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if on else 0)
            self.selector.modify(registered, events, sender)


class SimKiosk:
    """One virtual kiosk: the real flow, its own outbox and its own sender.

    Its clock is the monotonic clock plus an offset: a backlog is made in
    simulated time (customers one after another, each waiting for the
    thank-you to end) and the offset keeps the flow's timers consistent after.
    """

    def __init__(self, spec: WorkerSpec, n: int, rng: random.Random) -> None:
        self.device = f"{spec.prefix}{n:04d}"
        self.path = spec.data_dir / self.device / "outbox.sqlite3"
        self.rng = rng
        self.rate = spec.rate
        # --answers counts what customers tap after the start, beside the --backlog made before it
        self.quota = math.inf if spec.answers is None else spec.answers + spec.backlog
        self.outbox = Outbox(self.path, spec.site, self.device, max_bytes=spec.sender.max_outbox_bytes)
        self.sender = Sender(self.path, spec.site, self.device, spec.broker, spec.sender, version=__version__)
        self.flow = Flow(spec.flow)
        self.offset = 0.0
        self.made = 0
        self.save_failed = 0
        self.tapping = False
        self._ratings = list(RATING_WEIGHTS)
        self._weights = list(RATING_WEIGHTS.values())

    def clock(self) -> float:
        return time.monotonic() + self.offset

    def wants_customers(self) -> bool:
        return self.tapping and self.made < self.quota

    def act(self, now: float) -> float | None:
        """The customer in front of the kiosk does the next thing at kiosk time ``now``.

        Returns the kiosk time to act again (the next customer, a reason to
        tap, the faces coming back), or None when nobody is coming.
        """
        flow = self.flow
        effect = flow.handle(Tick(), now)
        if effect is not None:  # the follow-up timed out: the rating alone
            self._save(effect, now)
        if flow.state.screen == "followup":
            # The customer who was asked why taps a reason, or skips (timeouts happen on their own).
            why = Reason(self.rng.choice(flow.settings.reasons)) if self.rng.random() < 0.7 else Skip()
            effect = flow.handle(why, now)
            if effect is not None:
                self._save(effect, now)
            return self._next_customer(now)
        if not self.wants_customers():
            return None
        scale = flow.settings.scale
        rating = min(scale, self.rng.choices(self._ratings, self._weights)[0])
        tap = Tap(rating, "touch")
        if not flow.accepts(tap):  # the thank-you still shows: the customer waits for the faces
            return flow.next_deadline() or now + 0.1
        effect = flow.handle(tap, now)
        if effect is None:  # the follow-up asks why: the customer reads it first
            return now + self.rng.uniform(0.5, min(3.0, flow.settings.follow_up_s / 2))
        self._save(effect, now)
        return self._next_customer(now)

    def _next_customer(self, now: float) -> float | None:
        if not self.wants_customers():
            return None
        if self.rate <= 0:  # a backlog: the next customer taps as soon as the faces are back
            return now + self.flow.settings.thank_you_s + 0.01
        return now + self.rng.expovariate(self.rate)

    def _save(self, effect: Save, now: float) -> None:
        """What the kiosk does with a Save: the outbox write, then Saved (or SaveFailed), then wake the sender."""
        try:
            self.outbox.append(facts.answer(effect, 0))
        except DeskPulseError as exc:
            log.error("%s: answer not saved: %s", self.device, exc)
            self.save_failed += 1
            self.flow.handle(SaveFailed(str(exc)), now)
            return
        self.made += 1
        self.flow.handle(Saved(), now)
        self.sender.notify()

    def make_backlog(self, count: int) -> None:
        """``count`` customers one after another, in simulated time (the sender is told after each)."""
        target = self.made + count
        rate, quota, tapping = self.rate, self.quota, self.tapping
        self.rate, self.quota, self.tapping = 0.0, target, True
        start = t = self.clock()
        try:
            while self.made < target:
                nxt = self.act(t)
                t = nxt if nxt is not None and nxt > t else t + 0.01
                if self.save_failed > count:  # a broken disk: do not loop for ever
                    break
        finally:
            self.rate, self.quota, self.tapping = rate, quota, tapping
            self.offset += t - start


def _worker(spec: WorkerSpec, commands: Any, reports: Any) -> None:
    """A worker process: its kiosks' flows and senders on one thread, until told to stop."""
    logging.basicConfig(level=logging.WARNING, format=f"worker {spec.number}: %(levelname)s %(name)s: %(message)s")
    if os.environ.get("DESKPULSE_SIM_VERBOSE"):
        logging.getLogger().setLevel(logging.INFO)
    else:  # a thousand kiosks losing their broker would say so a thousand times; the summary counts them
        logging.getLogger("deskpulse.sync").setLevel(logging.ERROR)
    try:
        _Worker(spec, commands, reports).run()
    except Exception as exc:
        logging.getLogger("deskpulse.sim").exception("worker %d failed", spec.number)
        reports.put(Report(number=spec.number, phase="failed", problem=f"{type(exc).__name__}: {exc}"))


class _Worker:
    def __init__(self, spec: WorkerSpec, commands: Any, reports: Any) -> None:
        self.spec = spec
        self.commands = commands
        self.reports = reports
        self.watch = _Watch()
        rng = random.Random(spec.seed * 1_000_003 + spec.number)
        self.kiosks = [SimKiosk(spec, n, random.Random(rng.random())) for n in spec.kiosks]
        self.senders = [k.sender for k in self.kiosks]
        self.heap: list[tuple[float, int]] = []  # (monotonic time, kiosk index): customers due
        self.backlog_todo: list[tuple[SimKiosk, int]] = []  # backlogs asked for and not made yet
        self.running = False  # senders opened
        self.tapping = False
        self.attempts_seen = 0
        self.confirmed_seen = 0
        self.attempts_by_ds: Counter[int] = Counter()
        self.confirmed_by_ds: Counter[int] = Counter()

    def report(self, phase: str, final: bool = False) -> None:
        statuses = [s.status for s in self.senders]
        errors = Counter(st.last_error for st in statuses if st.last_error and not st.connected)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        report = Report(
            number=self.spec.number, phase=phase, kiosks=len(self.kiosks),
            made=sum(k.made for k in self.kiosks), save_failed=sum(k.save_failed for k in self.kiosks),
            published=sum(st.published for st in statuses), acked=sum(st.acked for st in statuses),
            confirmed=sum(st.confirmed for st in statuses), connected=sum(st.connected for st in statuses),
            central_online=sum(st.central_online for st in statuses),
            attempts=sum(s.connect_attempts for s in self.senders), restarts=sum(st.restarts for st in statuses),
            tapping=self.tapping and any(k.wants_customers() for k in self.kiosks),
            followups=sum(k.flow.state.screen == "followup" for k in self.kiosks),
            attempts_by_ds=dict(self.attempts_by_ds), confirmed_by_ds=dict(self.confirmed_by_ds),
            errors=dict(errors.most_common(3)), rss_kb=usage.ru_maxrss, cpu_s=usage.ru_utime + usage.ru_stime,
        )
        self.attempts_by_ds.clear()
        self.confirmed_by_ds.clear()
        if final:
            report.outboxes = tuple((k.device, str(k.path)) for k in self.kiosks)
            report.made_by_device = {k.device: k.made for k in self.kiosks}
        self.reports.put(report)

    def count(self) -> None:
        """Attribute new connection attempts and confirmations to this tenth of a wall-clock second."""
        tenth = int(time.time() * 10)
        attempts = sum(s.connect_attempts for s in self.senders)
        confirmed = sum(s.status.confirmed for s in self.senders)
        if attempts > self.attempts_seen:
            self.attempts_by_ds[tenth] += attempts - self.attempts_seen
        if confirmed > self.confirmed_seen:
            self.confirmed_by_ds[tenth] += confirmed - self.confirmed_seen
        self.attempts_seen, self.confirmed_seen = attempts, confirmed

    def command(self, cmd: tuple[Any, ...]) -> bool:
        """Apply one command from the main process; False: stop."""
        kind = cmd[0]
        if kind == "stop":
            return False
        if kind == "connect" and not self.running:
            self.running = True
            for sender in self.senders:
                sender.open_external(self.watch)
        elif kind == "taps":
            self.set_tapping(bool(cmd[1]))
        elif kind == "backlog":
            # Made a few kiosks at a time between network rounds (run()), so the
            # senders keep their own reconnect schedule meanwhile.
            self.backlog_todo.extend((k, int(cmd[1])) for k in self.kiosks)
        return True

    def make_some_backlog(self, budget_s: float = 0.02) -> None:
        until = time.monotonic() + budget_s
        while self.backlog_todo and time.monotonic() < until:
            kiosk, count = self.backlog_todo.pop(0)
            kiosk.make_backlog(count)
            if self.running:
                kiosk.sender.tick()

    def set_tapping(self, on: bool) -> None:
        self.tapping = on
        now = time.monotonic()
        for i, k in enumerate(self.kiosks):
            k.tapping = on
            if on and k.rate > 0 and k.wants_customers():
                heapq.heappush(self.heap, (now + k.rng.expovariate(k.rate), i))

    def run(self) -> None:
        for k in self.kiosks:
            if self.spec.backlog:
                k.make_backlog(self.spec.backlog)
        self.report("ready")
        tick_s = self.spec.tick_s
        next_sweep = next_report = next_command = time.monotonic()
        select = self.watch.selector.select
        touched: set[Sender] = set()
        while True:
            now = time.monotonic()
            wait = min(next_sweep, next_command, self.heap[0][0] if self.heap else math.inf) - now
            if self.backlog_todo:
                wait = 0.0
            if self.running and self.watch.socks:
                for key, mask in select(max(0.0, min(wait, tick_s))):
                    sender: Sender = key.data
                    if mask & selectors.EVENT_WRITE:
                        sender.writable()
                    if mask & selectors.EVENT_READ:
                        sender.readable()
                    touched.add(sender)
            elif wait > 0:
                time.sleep(min(wait, tick_s))
            now = time.monotonic()
            while self.heap and self.heap[0][0] <= now:
                _, i = heapq.heappop(self.heap)
                k = self.kiosks[i]
                nxt = k.act(k.clock())
                if self.running:
                    touched.add(k.sender)
                if nxt is not None:
                    heapq.heappush(self.heap, (nxt - k.offset, i))
            if self.running:
                if now >= next_sweep:
                    next_sweep = now + tick_s
                    for sender in self.senders:
                        sender.tick(now)
                    self.count()
                else:
                    for sender in touched:
                        sender.tick(now)
            touched.clear()
            if self.backlog_todo:
                self.make_some_backlog()
            if now >= next_command:
                next_command = now + 0.1
                try:
                    while True:
                        if not self.command(self.commands.get_nowait()):
                            self.finish()
                            return
                except queue.Empty:
                    pass
            if now >= next_report:
                next_report = now + self.spec.report_s
                self.report("running" if self.running else "ready")

    def finish(self) -> None:
        for k in self.kiosks:
            k.tapping = False
            k.sender.close_external()
            k.outbox.close()
        self.count()
        self.report("done", final=True)


# ---------------------------------------------------------------------------- main side


def raise_open_files(needed: int) -> tuple[int, int, str | None]:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit; say if that is still under ``needed``.

    Returns (soft, hard, problem): problem is None when the limit is enough.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, needed * 2)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, target, exc)
    if soft < needed:
        return soft, hard, (f"the open-file limit is {soft} (hard limit {hard}) but each worker process needs "
                            f"about {needed} ({FDS_PER_KIOSK} per kiosk): use more --processes, fewer --kiosks, "
                            f"or raise the hard limit (ulimit -Hn as root, LimitNOFILE= in a unit, "
                            f"/etc/security/limits.conf)")
    return soft, hard, None


@dataclass
class Totals(Counts):
    """The fleet's counters, summed over the workers' latest reports."""

    errors: Counter[str] = field(default_factory=Counter)


class Fleet:
    """The worker processes and what they report. Used by the CLI and by ``bench/storm.py``.

    Args:
        specs: one per worker process.
    """

    def __init__(self, specs: list[WorkerSpec]) -> None:
        self.specs = specs
        ctx = multiprocessing.get_context("spawn")
        self.reports: Any = ctx.Queue()
        self.commands = [ctx.Queue() for _ in specs]
        self.procs: list[BaseProcess] = [
            ctx.Process(target=_worker, args=(spec, cmd, self.reports), name=f"deskpulse-sim-{spec.number}",
                        daemon=True)
            for spec, cmd in zip(specs, self.commands, strict=True)]
        self.latest: dict[int, Report] = {}
        self.attempts_by_ds: Counter[int] = Counter()
        self.confirmed_by_ds: Counter[int] = Counter()
        self.final: dict[int, Report] = {}

    def start(self) -> Fleet:
        for proc in self.procs:
            proc.start()
        return self

    def send(self, *command: Any) -> None:
        for q in self.commands:
            q.put(command)

    def poll(self, timeout: float = 0.2) -> Totals:
        """Take the reports that came in (waiting up to ``timeout`` for the first) and sum them."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                report: Report = self.reports.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if report.phase == "failed":
                raise RuntimeError(f"worker {report.number} failed: {report.problem}")
            self.attempts_by_ds.update(report.attempts_by_ds)
            self.confirmed_by_ds.update(report.confirmed_by_ds)
            self.latest[report.number] = report
            if report.phase == "done":
                self.final[report.number] = report
            deadline = min(deadline, time.monotonic())  # drain what is queued, then return
        for proc, spec in zip(self.procs, self.specs, strict=True):
            if proc.exitcode not in (None, 0) and spec.number not in self.final:
                raise RuntimeError(f"worker {spec.number} exited with {proc.exitcode}")
        return self.totals()

    def totals(self) -> Totals:
        t = Totals()
        for r in self.latest.values():
            for name in _SUMMED:
                setattr(t, name, getattr(t, name) + getattr(r, name))
            t.tapping = t.tapping or r.tapping
            t.errors.update(r.errors)
        return t

    def phases(self, phase: str) -> bool:
        """Every worker's latest report is in ``phase``."""
        return len(self.latest) == len(self.specs) and all(r.phase == phase for r in self.latest.values())

    def wait(self, what: str, until: Any, timeout: float, progress: Progress | None = None) -> Totals:
        """Poll until ``until(totals)`` is true; RuntimeError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            totals = self.poll()
            if progress is not None:
                progress.show(totals)
            if until(totals):
                return totals
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not within {timeout:.0f} s (made {totals.made}, confirmed "
                                   f"{totals.confirmed}, connected {totals.connected}/{totals.kiosks}, central "
                                   f"online for {totals.central_online}; errors: {dict(totals.errors.most_common(3))})")

    def stop(self, timeout: float = 60.0) -> None:
        """Stop every worker (senders say offline and disconnect) and collect their final reports."""
        self.send("stop")
        deadline = time.monotonic() + timeout
        while len(self.final) < len(self.specs) and time.monotonic() < deadline:
            with contextlib.suppress(RuntimeError):
                self.poll(0.5)
            if all(p.exitcode is not None for p in self.procs):
                break
        for proc in self.procs:
            proc.join(max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(5)

    def outboxes(self) -> list[tuple[str, Path]]:
        return [(device, Path(path)) for r in self.final.values() for device, path in r.outboxes]

    def made_by_device(self) -> dict[str, int]:
        return {d: n for r in self.final.values() for d, n in r.made_by_device.items()}


def make_specs(*, kiosks: int, processes: int, site: str, prefix: str, data_dir: Path, broker: BrokerSettings,
               sender: SenderSettings, flow: FlowSettings, rate: float, answers: int | None, backlog: int,
               seed: int = 0, tick_s: float = 0.05) -> list[WorkerSpec]:
    """Split ``kiosks`` over ``processes`` workers (contiguous numbers from 1)."""
    processes = max(1, min(processes, kiosks))
    numbers = list(range(1, kiosks + 1))
    size = math.ceil(kiosks / processes)
    return [WorkerSpec(number=i, kiosks=tuple(numbers[i * size:(i + 1) * size]), site=site, prefix=prefix,
                       data_dir=data_dir, broker=broker, sender=sender, flow=flow, rate=rate, answers=answers,
                       backlog=backlog, seed=seed, tick_s=tick_s)
            for i in range(processes) if numbers[i * size:(i + 1) * size]]


def flow_settings(survey: SurveyConfig) -> FlowSettings:
    """The flow's settings from a kiosk configuration's survey (as the kiosk makes them)."""
    return FlowSettings(scale=survey.scale, default_lang=survey.default_lang, languages=survey.languages,
                        thank_you_s=survey.thank_you_s, repeat_interval_s=survey.repeat_interval_s,
                        follow_up_ratings=frozenset(survey.follow_up_ratings), reasons=survey.reasons,
                        follow_up_s=survey.follow_up_s, inactivity_s=survey.inactivity_s)


# ---------------------------------------------------------------------------- progress and checks


class Progress:
    """A one-line progress bar on a terminal; a plain line every ``every_s`` otherwise."""

    def __init__(self, out: TextIO, total: int | None, *, every_s: float = 5.0, enabled: bool = True) -> None:
        self.out = out
        self.total = total
        self.tty = out.isatty()
        self.every_s = every_s if not self.tty else 0.2
        self.enabled = enabled
        self.started = time.monotonic()
        self._next = 0.0
        self._drawn = False

    def line(self, t: Totals) -> str:
        elapsed = time.monotonic() - self.started
        made = t.made
        goal = self.total if self.total is not None else made
        text = (f"{elapsed:6.1f} s  made {made}  confirmed {t.confirmed}/{made}  "
                f"connected {t.connected}/{t.kiosks}  attempts {t.attempts}")
        if self.tty and goal:
            width = 24
            done = min(width, int(width * t.confirmed / max(goal, 1)))
            text = f"[{'#' * done}{'.' * (width - done)}] " + text
        return text

    def show(self, t: Totals, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now < self._next and not force:
            return
        self._next = now + self.every_s
        if self.tty:
            self.out.write("\r\x1b[2K" + self.line(t))
            self._drawn = True
        else:
            self.out.write(self.line(t) + "\n")
        self.out.flush()

    def done(self) -> None:
        if self.enabled and self.tty and self._drawn:
            self.out.write("\n")
            self.out.flush()


@dataclass
class Check:
    """The result of a run, from the outbox files (and central's database when given)."""

    kiosks: int
    made: int  # answers the flows stored (Saved)
    in_outboxes: int  # rows in the outbox files
    confirmed: int  # rows a receipt confirmed (stored or duplicate)
    rejected: int
    unconfirmed: int  # still pending or sent
    stored: int | None  # outbox answers found in central's events (None: not checked)
    missing: int  # answers not stored centrally (by receipts when central's database is not given)
    duplicated: int  # extra rows in central for one answer, or for one (device, epoch, seq)
    lost_at_outbox: int  # answers the flow stored that are not in their outbox file
    extra_in_central: int | None  # central rows of these kiosks' epochs that no outbox has
    stored_by: str  # "central's database" or "receipts"

    @property
    def ok(self) -> bool:
        return self.missing == 0 and self.duplicated == 0 and self.lost_at_outbox == 0 and not self.extra_in_central


def read_outbox(path: Path) -> tuple[str | None, list[tuple[str, int, int]]]:
    """(epoch, [(id, seq, state)]) of one outbox file, read-only."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
    try:
        epoch = conn.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
        rows = conn.execute("SELECT id, seq, state FROM outbox").fetchall()
    finally:
        conn.close()
    return (None if epoch is None else str(epoch[0])), [(str(i), int(q), int(s)) for i, q, s in rows]


def central_rows(url: str, site: str) -> list[tuple[str, str, str, int]]:
    """(id, device, epoch, seq) of every event of ``site`` in central's database (``sqlite:///`` or ``postgresql://``)."""
    query = "SELECT id, device, epoch, seq FROM events WHERE site = "
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        conn = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        try:
            return [(str(a), str(b), str(c), int(d)) for a, b, c, d in conn.execute(query + "?", (site,))]
        finally:
            conn.close()
    if url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        try:
            import psycopg
        except ImportError:
            raise DeskPulseError("--central-db postgresql://… needs psycopg (pip install 'deskpulse[postgres]')"
                                 ) from None
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as pg:
            return [(str(a), str(b), str(c), int(d)) for a, b, c, d in pg.execute(query + "%s", (site,))]
    raise DeskPulseError(f"--central-db: {url!r} is neither sqlite:///… nor postgresql://…")


def check(outboxes: list[tuple[str, Path]], made_by_device: dict[str, int], site: str,
          central_db: str | None) -> Check:
    """Compare every outbox with what the flows made and, if given, with central's events."""
    ids: dict[str, tuple[str, str, int]] = {}  # id -> (device, epoch, seq)
    epochs: set[tuple[str, str]] = set()
    confirmed = rejected = unconfirmed = lost = 0
    for device, path in outboxes:
        epoch, rows = read_outbox(path)
        if epoch is not None:
            epochs.add((device, epoch))
        lost += max(0, made_by_device.get(device, 0) - len(rows))
        for id_, seq, state in rows:
            ids[id_] = (device, epoch or "", seq)
            confirmed += state == State.CONFIRMED
            rejected += state == State.REJECTED
            unconfirmed += state in (State.PENDING, State.SENT)
    made = sum(made_by_device.values())
    if central_db is None:
        return Check(kiosks=len(outboxes), made=made, in_outboxes=len(ids), confirmed=confirmed, rejected=rejected,
                     unconfirmed=unconfirmed, stored=None, missing=len(ids) - confirmed, duplicated=0,
                     lost_at_outbox=lost, extra_in_central=None, stored_by="receipts")
    events = [r for r in central_rows(central_db, site) if (r[1], r[2]) in epochs]
    per_id = Counter(r[0] for r in events)
    per_seq = Counter((r[1], r[2], r[3]) for r in events)
    stored = sum(1 for i in ids if per_id[i] > 0)
    duplicated = sum(n - 1 for n in per_id.values() if n > 1) + sum(n - 1 for n in per_seq.values() if n > 1)
    extra = sum(1 for i in per_id if i not in ids)
    return Check(kiosks=len(outboxes), made=made, in_outboxes=len(ids), confirmed=confirmed, rejected=rejected,
                 unconfirmed=unconfirmed, stored=stored, missing=len(ids) - stored, duplicated=duplicated,
                 lost_at_outbox=lost, extra_in_central=extra, stored_by="central's database")


def timeline(tenths: Counter[int], start: float, end: float) -> list[int]:
    """Per-second counts from unix time ``start`` to ``end`` (zeros included), from counts per tenth of a second."""
    first, last = int(start), int(end)
    return [sum(tenths.get(s * 10 + d, 0) for d in range(10)) for s in range(first, last + 1)]


def peak_per_s(tenths: Counter[int], start: float, end: float) -> int:
    """The most counted in any one-second window (sliding by a tenth) between ``start`` and ``end``.

    A burst that straddles a second's boundary shows whole here, split in two in :func:`timeline`.
    """
    first, last = int(start * 10), int(end * 10)
    counts = [tenths.get(t, 0) for t in range(first, last + 1)]
    return max((sum(counts[i:i + 10]) for i in range(max(1, len(counts) - 9))), default=0)


# ---------------------------------------------------------------------------- CLI


EPILOG = """\
examples:
  deskpulse-sim --broker mqtt://127.0.0.1:1883 --kiosks 100 --answers 20
        100 kiosks, 20 answers each at one answer per 5 s per kiosk, then wait until all are confirmed
  deskpulse-sim -c kiosk.toml --kiosks 1000 --processes 2 --duration 60 --rate 0.3
        broker, TLS, credentials, survey and sync settings from a kiosk's configuration
  deskpulse-sim --broker mqtt://10.0.0.5:1883 --kiosks 50 --backlog 200 --answers 0 --central-db \\
        sqlite:////var/lib/deskpulse/central.sqlite3
        50 kiosks that come online with 200 answers each waiting, checked against central's database

Each kiosk is the real flow (simulated customers), its own outbox file and the real
sender with its own MQTT client (client id <site>.<prefix><nnnn>). The broker must let
these clients in: anonymous, or a test user from [broker] with an ACL for the site's
topics (a broker with one login per device, as the dynamic-security plugin sets up,
refuses them). Without --dir the outboxes go to a fresh folder in /dev/shm (memory: one
disk shared by a thousand kiosks would measure the disk, not the broker), removed at the
end unless --keep.

Exit status: 0 when every answer made is confirmed and (with --central-db) stored
exactly once; 1 when something is missing, doubled or not confirmed by --timeout;
2 on a usage or configuration error.
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="deskpulse-sim",
        description="Simulate a fleet of DeskPulse kiosks (the real flow, outbox and sender, with simulated "
                    "customers) against a broker and central, then check every answer arrived once.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"deskpulse-sim {__version__}")
    p.add_argument("-c", "--config", type=Path, metavar="KIOSK_TOML",
                   help="take [broker] (URL, credentials, TLS), [survey] and [sync] from this kiosk configuration; "
                        "its site is the default --site")
    p.add_argument("--broker", metavar="URL", help="mqtt://host:port or mqtts://host:port (overrides the config's "
                                                   "URL; default mqtt://127.0.0.1:1883)")
    p.add_argument("--kiosks", type=int, default=100, help="virtual kiosks (default 100)")
    p.add_argument("--processes", type=int, default=os.cpu_count() or 1,
                   help="worker processes, each running its share of the kiosks on one thread "
                        "(default: one per core, here %(default)s)")
    p.add_argument("--site", help="site slug of every kiosk (default: the config's, else 'sim')")
    p.add_argument("--prefix", default="sim-", help="device names are PREFIX0001, PREFIX0002, … (default 'sim-')")
    p.add_argument("--rate", type=float, default=0.2,
                   help="customers per second per kiosk while tapping (default 0.2, one per 5 s; a kiosk takes "
                        "at most one per thank-you time, 3 s by default)")
    stop = p.add_mutually_exclusive_group()
    stop.add_argument("--answers", type=int, help="answers per kiosk, then stop tapping")
    stop.add_argument("--duration", type=float, help="seconds of tapping (default 30 when --answers is not given)")
    p.add_argument("--backlog", type=int, default=0,
                   help="answers each kiosk stores before its sender connects (a fleet coming back online)")
    p.add_argument("--timeout", type=float, default=300.0,
                   help="hard limit in seconds for the whole run, drain included (default 300)")
    p.add_argument("--resend-after", type=float, metavar="S",
                   help="re-publish unconfirmed answers after S seconds (default: the config's sync.resend_after_s, "
                        "30)")
    p.add_argument("--central-db", metavar="URL",
                   help="central's database (sqlite:///path or postgresql://…) to count what was stored, missing "
                        "and doubled; without it 'stored' means confirmed by central's receipts")
    p.add_argument("--dir", type=Path, help="folder for the kiosks' outboxes (default: a fresh one in /dev/shm)")
    p.add_argument("--keep", action="store_true", help="keep the outboxes after the run")
    p.add_argument("--json", type=Path, metavar="FILE", help="write the summary and per-second timelines as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulated customers (default 0)")
    p.add_argument("-v", "--verbose", action="store_true", help="log the senders' connection messages too")
    # For bench/storm.py only: reconnect without jitter, to measure the stampede jitter prevents.
    p.add_argument("--no-jitter", action="store_true", help=argparse.SUPPRESS)
    return p


def _settings(args: argparse.Namespace) -> tuple[str, BrokerSettings, SenderSettings, FlowSettings]:
    config: KioskConfig | None = None
    if args.config is not None:
        from device.config import load

        config = load(args.config)
    broker = config.broker if config is not None else BrokerSettings()
    if args.broker:
        host, port, tls = parse_broker_url(args.broker, where="--broker")
        broker = replace(broker, host=host, port=port, tls=tls)
    sync = config.sync if config is not None else None
    sender = SenderSettings()
    if sync is not None:
        sender = replace(sender, max_inflight=sync.max_inflight, resend_after_s=sync.resend_after_s,
                         prune_after_s=sync.retention_days * 86400,
                         max_outbox_bytes=int(sync.max_outbox_mb * 1_000_000))
    if args.resend_after is not None:
        sender = replace(sender, resend_after_s=args.resend_after)
    if args.no_jitter:
        sender = replace(sender, jitter=False)
    flow = flow_settings(config.survey if config is not None else SurveyConfig())
    site = args.site or (config.site if config is not None else "sim")
    return site, broker, sender, flow


def _fail(message: str) -> int:
    print(f"deskpulse-sim: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.verbose:
        os.environ["DESKPULSE_SIM_VERBOSE"] = "1"
    if args.kiosks < 1 or args.processes < 1:
        return _fail("--kiosks and --processes must be at least 1")
    if args.rate < 0 or args.backlog < 0 or (args.answers is not None and args.answers < 0):
        return _fail("--rate, --backlog and --answers must not be negative")
    if args.answers is None and args.duration is None:
        args.duration = 30.0
    try:
        site, broker, sender, flow = _settings(args)
        from sync.protocol import check_slug

        check_slug(site, "site")
        check_slug(f"{args.prefix}0001", "device")
    except DeskPulseError as exc:
        return _fail(str(exc))
    processes = max(1, min(args.processes, args.kiosks))
    per_process = math.ceil(args.kiosks / processes)
    soft, hard, problem = raise_open_files(per_process * FDS_PER_KIOSK + 64)
    if problem:
        return _fail(problem)
    made_dir = args.dir is None
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() and os.access("/dev/shm", os.W_OK) else None
    data_dir = args.dir or Path(tempfile.mkdtemp(prefix="deskpulse-sim-", dir=base))
    specs = make_specs(kiosks=args.kiosks, processes=processes, site=site, prefix=args.prefix, data_dir=data_dir,
                       broker=broker, sender=sender, flow=flow, rate=args.rate, answers=args.answers,
                       backlog=args.backlog, seed=args.seed)
    print(f"deskpulse-sim: {args.kiosks} kiosks of site {site!r} in {len(specs)} processes against {broker.url}; "
          f"outboxes in {data_dir}; open-file limit {soft}", flush=True)
    total = None if args.answers is None else args.kiosks * (args.answers + args.backlog)
    progress = Progress(sys.stdout, total, enabled=not args.no_progress)
    try:
        return _run(args, specs, site, progress, data_dir)
    except KeyboardInterrupt:
        progress.done()
        print("deskpulse-sim: interrupted", file=sys.stderr)
        return 1
    finally:
        if made_dir and not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)


def _run(args: argparse.Namespace, specs: list[WorkerSpec], site: str, progress: Progress, data_dir: Path) -> int:
    started = time.monotonic()
    hard_deadline = started + args.timeout
    fleet = Fleet(specs).start()
    timed_out: str | None = None
    wall_start = time.time()
    tap_start = tap_end = time.monotonic()
    try:
        fleet.wait("the kiosks to open their outboxes", lambda t: fleet.phases("ready"),
                   max(1.0, hard_deadline - time.monotonic()))
        fleet.send("connect")
        fleet.send("taps", True)
        wall_start = time.time()
        tap_start = time.monotonic()
        tap_until = tap_start + args.duration if args.duration is not None else math.inf
        totals = fleet.poll()
        tapping = True
        while True:
            totals = fleet.poll()
            progress.show(totals)
            now = time.monotonic()
            if tapping and (now >= tap_until or (args.answers is not None and not totals.tapping
                                                  and totals.made >= args.kiosks * (args.answers + args.backlog))):
                fleet.send("taps", False)
                tapping = False
                tap_end = now
            if not tapping and fleet.phases("running") and totals.confirmed >= totals.made \
                    and not totals.tapping and not totals.followups:
                break
            if now >= hard_deadline:
                timed_out = f"--timeout {args.timeout:.0f} s reached with {totals.made - totals.confirmed} " \
                            f"answers unconfirmed"
                break
        if tapping:
            tap_end = time.monotonic()
    finally:
        drained = time.monotonic()
        progress.show(fleet.totals(), force=True)
        progress.done()
        fleet.stop()
    totals = fleet.totals()
    result = check(fleet.outboxes(), fleet.made_by_device(), site, args.central_db)
    wall_end = time.time()
    rss = [r.rss_kb for r in fleet.final.values()]
    cpu = [r.cpu_s for r in fleet.final.values()]
    tap_s = max(1e-9, tap_end - tap_start)
    summary = {
        "kiosks": result.kiosks, "processes": len(specs), "answers_made": result.made,
        "in_outboxes": result.in_outboxes, "confirmed": result.confirmed, "rejected": result.rejected,
        "unconfirmed": result.unconfirmed, "stored_centrally": result.stored if result.stored is not None
        else result.confirmed, "stored_by": result.stored_by, "missing": result.missing,
        "duplicated": result.duplicated, "lost_at_outbox": result.lost_at_outbox,
        "extra_in_central": result.extra_in_central, "save_failed": totals.save_failed,
        "connection_attempts": totals.attempts, "sender_restarts": totals.restarts,
        "backlog": result.kiosks * args.backlog,
        "tapping_s": round(tap_s, 2),
        "answers_per_s": round(max(0, result.made - result.kiosks * args.backlog) / tap_s, 1),
        "all_confirmed_s": round(drained - tap_start, 2), "worker_rss_mb": [round(k / 1024, 1) for k in rss],
        "worker_cpu_s": [round(c, 1) for c in cpu], "ok": result.ok and timed_out is None,
        "timed_out": timed_out, "last_errors": dict(totals.errors.most_common(5)),
    }
    print(_summary_text(summary))
    if args.json is not None:
        args.json.write_text(json.dumps({
            "summary": summary, "spec": {"rate": args.rate, "answers": args.answers, "duration": args.duration,
                                         "backlog": args.backlog, "data_dir": str(data_dir)},
            "timeline": {"start_unix": int(wall_start),
                         "connection_attempts_per_s": timeline(fleet.attempts_by_ds, wall_start, wall_end),
                         "confirmed_per_s": timeline(fleet.confirmed_by_ds, wall_start, wall_end)},
        }, indent=2) + "\n")
    return 0 if summary["ok"] else 1


def _summary_text(s: dict[str, Any]) -> str:
    stored = f"{s['stored_centrally']} (by {s['stored_by']})"
    rows = [
        ("kiosks / processes", f"{s['kiosks']} / {s['processes']}"),
        ("answers made", (f"{s['answers_made']} ({s['backlog']} as a backlog before connecting, the rest in "
                          if s["backlog"] else f"{s['answers_made']} (in ") + f"{s['tapping_s']} s of tapping: "
                          f"{s['answers_per_s']}/s)"),
        ("confirmed by receipts", str(s["confirmed"])),
        ("stored centrally", stored),
        ("missing", str(s["missing"])),
        ("duplicated", str(s["duplicated"])),
        ("not confirmed", str(s["unconfirmed"])),
        ("rejected by central", str(s["rejected"])),
        ("lost before the outbox", str(s["lost_at_outbox"])),
        ("connection attempts", f"{s['connection_attempts']} (sender restarts {s['sender_restarts']})"),
        ("all confirmed after", f"{s['all_confirmed_s']} s from the start of tapping"),
        ("worker RSS MB / CPU s", f"{s['worker_rss_mb']} / {s['worker_cpu_s']}"),
    ]
    if s["extra_in_central"]:
        rows.append(("in central, in no outbox", str(s["extra_in_central"])))
    if s["last_errors"]:
        rows.append(("last errors", "; ".join(f"{n}× {e}" for e, n in s["last_errors"].items())))
    width = max(len(k) for k, _ in rows)
    lines = ["", "summary"] + [f"  {k:<{width}}  {v}" for k, v in rows]
    lines.append(f"  {'result':<{width}}  " + ("OK: every answer stored exactly once" if s["ok"] else
                                               f"FAILED{': ' + s['timed_out'] if s['timed_out'] else ''}"))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

"""The kiosk at the counter: tap to thank-you frame, start to first frame, memory.

    .venv/bin/python -m bench.kiosk [--taps 300] [--starts 5] [--runs 3] [--json FILE]

**Tap to thank-you.** The real :class:`device.kiosk.Kiosk` on SDL's dummy driver, its
outbox on a real file system (``--dir``, default ``bench/.work``): a finger tap on a
face is posted, the kiosk handles it (the flow, the answer's SQLite commit with
``synchronous=FULL`` and the fsync of its WAL, the thank-you drawn) and the time to the
thank-you frame's flip is taken. The same taps with the outbox in memory-backed
``/dev/shm`` run interleaved with them, so the ratio disk/memory is what the durable
write costs. Not included: the wait for the touch event itself, which depends on the
video driver (KMSDRM on a Pi wakes at once; the dummy driver polls every 20 ms).

**Start to first frame and memory.** ``deskpulse-kiosk run --headless`` as a real
process with a private Mosquitto: the time from spawning it to its systemd
``READY=1`` (sent right after the first frame is flipped), and its resident memory
(VmRSS) two seconds later. Beside it, in the same run, a bare Python that imports
pygame, opens the same display, flips one frame and says ``READY=1``: the floor any
pygame kiosk pays. Goals: p99 tap to thank-you under 20 ms, first frame under 2 s,
RSS under 80 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pygame  # noqa: E402

from device.config import from_dict  # noqa: E402
from device.kiosk import Kiosk  # noqa: E402
from device.script import post_tap  # noqa: E402
from display.view import RatingView  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SIZE = (800, 480)
TAP_GOAL_MS = 20.0
START_GOAL_S = 2.0
RSS_GOAL_MB = 80.0


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def tap_latencies(data_dir: Path, taps: int) -> list[float]:
    """Milliseconds from a face's tap to the thank-you frame's flip, ``taps`` times."""
    flipped: list[float] = []
    now = [0.0]
    surface = pygame.display.set_mode(SIZE)
    config = from_dict({"device": {"site": "bench", "name": "desk", "data_dir": str(data_dir)},
                        "screen": {"size": list(SIZE), "fullscreen": False}}, source="bench")

    def flip() -> None:
        pygame.display.flip()
        flipped.append(time.perf_counter())

    kiosk = Kiosk(config, surface, flip=flip, clock=lambda: now[0])
    out: list[float] = []
    try:
        kiosk.redraw(force=True)
        for n in range(taps):
            # Ratings 4 and 5 go straight to the thank-you (lower ones open the follow-up first).
            rating = 4 + n % 2
            view = kiosk.view
            if not isinstance(view, RatingView):
                raise RuntimeError(f"the kiosk is not on the rating screen but on {type(view).__name__}")
            point = kiosk.display.target_center(view, rating)
            pygame.event.clear()
            before = len(flipped)
            start = time.perf_counter()
            post_tap(point, SIZE)
            kiosk.step(max_wait_ms=0)
            if kiosk.flow.state.screen != "thanks" or len(flipped) == before:
                raise RuntimeError(f"tap {n} did not reach the thank-you (screen {kiosk.flow.state.screen!r})")
            out.append((flipped[before] - start) * 1000)
            now[0] += 60  # past the thank-you: back to the rating screen
            kiosk.step(max_wait_ms=0)
        stats = kiosk.outbox.stats()
        stored = stats.pending + stats.sent + stats.confirmed + stats.rejected
        if stored != taps:
            raise RuntimeError(f"{stored} answers are in the outbox after {taps} taps")
    finally:
        kiosk.close()
    return out


class NotifySocket:
    """A datagram socket that plays systemd's NOTIFY_SOCKET."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "notify.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))

    def wait_ready(self, timeout: float) -> float:
        """perf_counter time when READY=1 arrived."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"no READY=1 within {timeout:.0f} s")
            self.sock.settimeout(left)
            data = self.sock.recv(4096)
            if b"READY=1" in data.split(b"\n"):
                return time.perf_counter()

    def close(self) -> None:
        self.sock.close()


BARE = f"""
import os, socket
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
import pygame
pygame.display.init()
pygame.font.init()
surface = pygame.display.set_mode({SIZE})
surface.fill((250, 250, 250))
pygame.display.flip()
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.connect(os.environ["NOTIFY_SOCKET"])
s.sendall(b"READY=1")
import time
time.sleep(60)
"""


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def start_once(argv: list[str], folder: Path) -> tuple[float, float]:
    """Seconds from spawn to READY=1, and MB resident two seconds later."""
    notify = NotifySocket(folder)
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path), "SDL_VIDEODRIVER": "dummy"}
    try:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            ready = notify.wait_ready(30)
            time.sleep(2)
            if proc.poll() is not None:
                raise RuntimeError(f"{argv[:4]} exited with {proc.returncode}")
            return ready - start, rss_mb(proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    finally:
        notify.close()
        notify.path.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--taps", type=int, default=300, help="taps per run and place (default 300)")
    parser.add_argument("--starts", type=int, default=3, help="kiosk starts per run (default 3)")
    parser.add_argument("--runs", type=int, default=3, help="interleaved runs (default 3; the median counts)")
    parser.add_argument("--dir", type=Path, default=Path(__file__).resolve().parent / ".work",
                        help="a folder on the real file system for the outbox (default bench/.work)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures to FILE as JSON")
    args = parser.parse_args(argv)
    if not 1 <= args.taps <= 5000 or not 1 <= args.starts <= 20 or not 1 <= args.runs <= 9:
        parser.error("--taps 1..5000, --starts 1..20, --runs 1..9")
    from dev.broker import Mosquitto

    args.dir.mkdir(parents=True, exist_ok=True)
    shm = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    pygame.display.init()
    pygame.font.init()
    disk_ms: list[list[float]] = []
    memory_ms: list[list[float]] = []
    starts: dict[str, list[float]] = {"kiosk_s": [], "kiosk_mb": [], "bare_s": [], "bare_mb": []}
    work = Path(tempfile.mkdtemp(prefix="kiosk-", dir=args.dir))
    broker = Mosquitto(work / "mosquitto").start()
    try:
        conf = work / "kiosk.toml"
        conf.write_text(f'[device]\nsite = "bench"\nname = "desk"\ndata_dir = "{work / "data"}"\n'
                        f'[broker]\nurl = "{broker.url}"\n[screen]\nfullscreen = false\n'
                        f"size = [{SIZE[0]}, {SIZE[1]}]\n")
        kiosk_cmd = [sys.executable, "-m", "device.cli", "run", "-c", str(conf), "--headless"]
        bare_cmd = [sys.executable, "-c", BARE]
        for run in range(args.runs):
            for place, into in (("disk", disk_ms), ("memory", memory_ms)):
                base = args.dir if place == "disk" else shm
                if base is None:
                    continue
                folder = Path(tempfile.mkdtemp(prefix="tap-", dir=base))
                try:
                    into.append(tap_latencies(folder, args.taps))
                finally:
                    shutil.rmtree(folder, ignore_errors=True)
            for _ in range(args.starts):
                for name, cmd in (("kiosk", kiosk_cmd), ("bare", bare_cmd)):
                    seconds, mb = start_once(cmd, work)
                    starts[f"{name}_s"].append(seconds)
                    starts[f"{name}_mb"].append(mb)
            print(f"run {run + 1}/{args.runs}: tap p99 disk {percentile(disk_ms[-1], 0.99):.1f} ms, "
                  f"start {starts['kiosk_s'][-1]:.2f} s, {starts['kiosk_mb'][-1]:.0f} MB", flush=True)
    finally:
        broker.kill()
        shutil.rmtree(work, ignore_errors=True)
        pygame.quit()

    def per_run(values: list[list[float]], q: float) -> float:
        return statistics.median(percentile(v, q) for v in values) if values else float("nan")

    result: dict[str, Any] = {
        "taps_per_run": args.taps, "runs": args.runs, "starts_per_run": args.starts,
        "tap_disk_median_ms": per_run(disk_ms, 0.5), "tap_disk_p99_ms": per_run(disk_ms, 0.99),
        "tap_memory_median_ms": per_run(memory_ms, 0.5), "tap_memory_p99_ms": per_run(memory_ms, 0.99),
        "start_kiosk_s": statistics.median(starts["kiosk_s"]), "start_bare_s": statistics.median(starts["bare_s"]),
        "rss_kiosk_mb": statistics.median(starts["kiosk_mb"]), "rss_bare_mb": statistics.median(starts["bare_mb"]),
        "goals": {"tap_p99_ms": TAP_GOAL_MS, "start_s": START_GOAL_S, "rss_mb": RSS_GOAL_MB},
        "file_system": subprocess.run(["df", "-T", str(args.dir)], capture_output=True, text=True,
                                      check=False).stdout.splitlines()[-1].split()[1],
    }
    met = {True: "met", False: "NOT met"}
    print(f"tap to thank-you, outbox on {result['file_system']} (durable write): median "
          f"{result['tap_disk_median_ms']:.1f} ms, p99 {result['tap_disk_p99_ms']:.1f} ms; in /dev/shm: median "
          f"{result['tap_memory_median_ms']:.1f} ms, p99 {result['tap_memory_p99_ms']:.1f} ms "
          f"(goal p99 < {TAP_GOAL_MS:g} ms: {met[result['tap_disk_p99_ms'] < TAP_GOAL_MS]})")
    print(f"start to first frame: kiosk {result['start_kiosk_s']:.2f} s, bare pygame {result['start_bare_s']:.2f} s "
          f"(goal < {START_GOAL_S:g} s: {met[result['start_kiosk_s'] < START_GOAL_S]})")
    print(f"resident memory: kiosk {result['rss_kiosk_mb']:.0f} MB, bare pygame {result['rss_bare_mb']:.0f} MB "
          f"(goal < {RSS_GOAL_MB:g} MB: {met[result['rss_kiosk_mb'] < RSS_GOAL_MB]})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

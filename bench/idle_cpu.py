"""Idle CPU of the kiosk against a naive 30 fps loop drawing the same screen.

    .venv/bin/python bench/idle_cpu.py [--seconds 60] [--runs 1] [--size 800x480] [--json FILE]

Runs the real :class:`device.kiosk.Kiosk` loop (``Kiosk.step``, as ``run`` does)
on SDL's dummy driver with nobody touching it, then a loop that redraws the same
attract screen 30 times a second (``--runs`` pairs, interleaved; the medians
count), and prints the process CPU time each used
(``time.process_time``) as a share of one core and their ratio. The goal is
under 1 % of a core for the idle kiosk. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pygame  # noqa: E402

from device.config import from_dict  # noqa: E402
from device.kiosk import Kiosk  # noqa: E402


def measure(fn: Callable[[float], object], seconds: float) -> tuple[float, float]:
    """CPU seconds and wall seconds ``fn`` used while looping for ``seconds``."""
    cpu0, wall0 = time.process_time(), time.monotonic()
    fn(wall0 + seconds)
    return time.process_time() - cpu0, time.monotonic() - wall0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each run (default 60)")
    parser.add_argument("--runs", type=int, default=1, help="interleaved pairs of runs (default 1; the median "
                        "counts)")
    parser.add_argument("--size", default="800x480", help="surface size (default 800x480)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures to FILE as JSON")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    pygame.display.init()
    pygame.font.init()
    surface = pygame.display.set_mode(size)
    with tempfile.TemporaryDirectory() as tmp:
        config = from_dict({"device": {"site": "bench", "name": "desk", "data_dir": tmp},
                            "screen": {"size": list(size), "fullscreen": False}}, source="bench")
        kiosk = Kiosk(config, surface, flip=pygame.display.flip)
        try:
            kiosk.redraw(force=True)

            def idle(until: float) -> None:
                while time.monotonic() < until:
                    kiosk.step()

            def naive(until: float) -> None:
                clock = pygame.time.Clock()
                view = kiosk.view
                while time.monotonic() < until:
                    pygame.event.get()
                    kiosk.display.render(view)
                    pygame.display.flip()
                    clock.tick(30)

            pairs = [(measure(idle, args.seconds), measure(naive, args.seconds)) for _ in range(args.runs)]
        finally:
            kiosk.close()
    k_shares = [100 * cpu / wall for (cpu, wall), _ in pairs]
    n_shares = [100 * cpu / wall for _, (cpu, wall) in pairs]
    k_share, n_share = statistics.median(k_shares), statistics.median(n_shares)
    kiosk_cpu, naive_cpu = k_share * args.seconds / 100, n_share * args.seconds / 100
    print(f"surface {size[0]}x{size[1]}, {args.seconds:g} s each, {args.runs} run(s) (median), "
          f"SDL driver {pygame.display.get_driver()}")
    print(f"idle kiosk (redraw on change): {kiosk_cpu:.3f} s CPU = {k_share:.3f} % of a core")
    print(f"naive 30 fps loop:             {naive_cpu:.3f} s CPU = {n_share:.2f} % of a core")
    print(f"ratio naive/kiosk: {naive_cpu / max(kiosk_cpu, 1e-9):.0f}x"
          f"  (goal: kiosk under 1 % of a core: {'met' if k_share < 1 else 'NOT met'})")
    if args.json:
        args.json.write_text(json.dumps({"seconds": args.seconds, "kiosk_core_pct": k_share,
                                         "naive_core_pct": n_share, "goal_core_pct": 1.0}, indent=2) + "\n")
    pygame.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``make demo``: a private Mosquitto, central and a kiosk on this machine.

    python -m dev.demo                 # kiosk in a window (needs a desktop)
    python -m dev.demo --headless      # no window: taps a scripted set of answers

Everything lives under ``.demo/`` (broker, central's SQLite file, the kiosk's
outbox); ``--fresh`` starts from empty. Ctrl-C stops all three processes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from dev.broker import Mosquitto, find_mosquitto, free_port

DEFAULT_SCRIPT = "5,4,5,3,2,5,4,1,5,4"


class DemoError(Exception):
    """A part of the demo did not start or stopped."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dev.demo",
        description="Run the whole DeskPulse path on this machine: a private Mosquitto on a free "
        "loopback port, deskpulse-central with a SQLite file, and a kiosk. Prints the "
        "dashboard's URL; Ctrl-C stops everything.",
        epilog="make demo passes DEMO_ARGS, e.g. make demo DEMO_ARGS='--headless --script 5,1,3'",
    )
    parser.add_argument("--headless", action="store_true",
                        help="run the kiosk on SDL's dummy driver and tap --script (the default "
                        "when there is no desktop)")
    parser.add_argument("--script", default=None, metavar="RATINGS",
                        help=f"ratings the headless kiosk taps (default {DEFAULT_SCRIPT})")
    parser.add_argument("--port", type=int, default=8080,
                        help="dashboard port on 127.0.0.1 (default 8080; a free one if taken)")
    parser.add_argument("--dir", type=Path, default=Path(".demo"),
                        help="where the demo keeps its files (default .demo)")
    parser.add_argument("--fresh", action="store_true", help="delete earlier demo data first")
    parser.add_argument("--exit-when-stored", type=int, metavar="N", default=None,
                        help="exit 0 once central has stored N answers (used by the tests)")
    parser.add_argument("--timeout", type=float, default=None, metavar="S",
                        help="give up after S seconds (exit 1)")
    return parser


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _has_desktop() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _kiosk_toml(data_dir: Path, broker_url: str) -> str:
    return f"""\
# Written by the demo; see docs/configuration.md for every key.
[device]
site = "demo-site"
name = "front-desk"
data_dir = "{data_dir}"

[broker]
url = "{broker_url}"
keepalive = 10

[screen]
size = [800, 480]
mm = [154, 86]
fullscreen = false

[survey]
thank_you_s = 2
# The scripted customer taps every few seconds; a real desk keeps the 5 s default.
repeat_interval_s = 1

[sync]
resend_after_s = 5
"""


def _stored(url: str) -> int | None:
    import json

    try:
        with urllib.request.urlopen(url + "healthz", timeout=1) as reply:
            return int(json.load(reply)["events"])
    except (OSError, ValueError, KeyError):
        return None


class Demo:
    """The three processes, started in order and stopped in reverse."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.root = args.dir.resolve()
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.broker: Mosquitto | None = None

    def start(self) -> str:
        if self.args.fresh and self.root.exists():
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        find_mosquitto()  # a clear message if it is missing
        self.broker = Mosquitto(self.root / "mosquitto").start()
        print(f"demo: Mosquitto on {self.broker.url} (log {self.broker.log_path})", flush=True)

        port = self.args.port if _port_free(self.args.port) else free_port()
        url = f"http://127.0.0.1:{port}/"
        self._spawn("central", [sys.executable, "-m", "central.cli", "--broker", self.broker.url,
                                "--db", f"sqlite:///{self.root / 'central.sqlite3'}",
                                "--bind", f"127.0.0.1:{port}"])
        deadline = time.monotonic() + 60
        while _stored(url) is None:
            self._check_alive()
            if time.monotonic() > deadline:
                raise DemoError("central did not answer within 60 s; see its log above")
            time.sleep(0.2)

        config = self.root / "kiosk.toml"
        config.write_text(_kiosk_toml(self.root / "kiosk-data", self.broker.url))
        headless = self.args.headless or not _has_desktop()
        if headless and not self.args.headless:
            print("demo: no desktop found (DISPLAY/WAYLAND_DISPLAY unset): running the kiosk headless",
                  flush=True)
        kiosk = [sys.executable, "-m", "device.cli", "run", "-c", str(config)]
        if headless:
            kiosk += ["--headless", "--script", self.args.script or DEFAULT_SCRIPT]
        else:
            kiosk += ["--windowed"] + (["--script", self.args.script] if self.args.script else [])
        self._spawn("kiosk", kiosk)
        print(f"\ndemo: dashboard at {url}\n"
              f"demo: the kiosk {'taps scripted answers headless' if headless else 'is in a window: tap a face'};"
              " Ctrl-C stops everything.\n", flush=True)
        return url

    def _spawn(self, name: str, argv: list[str]) -> None:
        # Children share our terminal; they ignore SIGINT so Ctrl-C reaches only
        # us, and we stop them in order.
        proc = subprocess.Popen(argv, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
        self.procs.append((name, proc))

    def _check_alive(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise DemoError(f"{name} exited with code {proc.returncode}")

    def wait(self, url: str) -> int:
        deadline = None if self.args.timeout is None else time.monotonic() + self.args.timeout
        while True:
            self._check_alive()
            if self.args.exit_when_stored is not None:
                stored = _stored(url)
                if stored is not None and stored >= self.args.exit_when_stored:
                    print(f"demo: central stored {stored} answers", flush=True)
                    return 0
            if deadline is not None and time.monotonic() > deadline:
                print(f"demo: gave up after {self.args.timeout:g} s", file=sys.stderr)
                return 1
            time.sleep(0.5)

    def stop(self) -> None:
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    print(f"demo: {name} did not stop in 10 s; killing it", file=sys.stderr)
                    proc.kill()
                    proc.wait()
        if self.broker is not None:
            self.broker.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the demo like Ctrl-C


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m dev.demo``."""
    args = _parser().parse_args(argv)
    demo = Demo(args)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        url = demo.start()
        return demo.wait(url)
    except KeyboardInterrupt:
        print("\ndemo: stopping", flush=True)
        return 0
    except (DemoError, RuntimeError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    finally:
        demo.stop()


if __name__ == "__main__":
    sys.exit(main())

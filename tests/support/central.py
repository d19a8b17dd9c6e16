"""``deskpulse-central`` as a real subprocess, for end-to-end tests.

    with CentralProcess(broker, tmp_path) as central:
        central.wait_for_count(1)
        events = central.events()
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Self

from dev.broker import Mosquitto, free_port

REPO = Path(__file__).resolve().parents[2]


class CentralProcess:
    """One central (collector + web) process with its own SQLite file."""

    def __init__(self, broker: Mosquitto, workdir: Path, *, db_url: str | None = None) -> None:
        self.broker = broker
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.db_url = db_url or f"sqlite:///{self.workdir / 'central.sqlite3'}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = self.workdir / "central.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def entry(self) -> list[str]:
        """The module ``python -m`` runs, and any arguments of its own before central's options."""
        return ["central.cli"]

    def command(self) -> list[str]:
        """The command line that runs this central."""
        return [sys.executable, "-m", *self.entry(), "--broker", self.broker.url, "--db", self.db_url,
                "--bind", f"127.0.0.1:{self.port}"]

    def start(self, timeout: float = 30.0) -> Self:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=log, cwd=REPO,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"central exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            if self.health() is not None and "online" in self.central_state():
                return self
            time.sleep(0.1)
        raise RuntimeError(f"central did not come up in {timeout}s:\n{self.log()[-3000:]}")

    def central_state(self) -> str:
        """What the retained ``_central/status`` says (read from the broker)."""
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        from sync import protocol

        got: list[bytes] = []
        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.on_message = lambda c, u, m: got.append(m.payload)
        try:
            client.connect(self.broker.host, self.broker.port)
        except OSError:
            return "unknown"
        client.subscribe(protocol.CENTRAL_STATUS_TOPIC, qos=1)
        deadline = time.monotonic() + 1.0
        while not got and time.monotonic() < deadline:
            client.loop(0.05)
        client.disconnect()
        return json.loads(got[-1])["state"] if got else "unknown"

    def health(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(self.url + "healthz", timeout=1) as reply:
                return json.load(reply)
        except (OSError, ValueError):
            return None

    def events(self) -> list[dict[str, Any]]:
        """Every stored event, read through the JSON API."""
        out: list[dict[str, Any]] = []
        after = 0
        while True:
            with urllib.request.urlopen(f"{self.url}api/events?after={after}&limit=500", timeout=5) as reply:
                page = json.load(reply)
            if not page:
                return out
            out += page
            after = page[-1]["ingest_id"]

    def wait_for_count(self, n: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        count = None
        while time.monotonic() < deadline:
            health = self.health()
            count = None if health is None else health["events"]
            if count is not None and count >= n:
                return
            time.sleep(0.1)
        raise AssertionError(f"central stored {count} events, not {n}, within {timeout}s:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> CentralProcess:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

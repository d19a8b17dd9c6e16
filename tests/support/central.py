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
import urllib.request
from pathlib import Path
from typing import Any, Self

from dev.broker import Mosquitto, free_port
from tests.support.wait import wait_for

REPO = Path(__file__).resolve().parents[2]


class CentralProcess:
    """One central (collector + web) process with its own SQLite file."""

    def __init__(self, broker: Mosquitto, workdir: Path, *, db_url: str | None = None,
                 config: str | None = None, bind_host: str = "127.0.0.1") -> None:
        """Args:
            broker: the Mosquitto central collects from.
            workdir: central's folder (database, log, configuration file).
            db_url: the database (default: a SQLite file in ``workdir``).
            config: TOML text written to ``workdir/central.toml`` and passed with ``--config``.
            bind_host: the web server's address (the port is a free one).
        """
        self.broker = broker
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.db_url = db_url or f"sqlite:///{self.workdir / 'central.sqlite3'}"
        self.port = free_port()
        self.bind_host = bind_host
        self.url = f"http://127.0.0.1:{self.port}/"
        self.config_path: Path | None = None
        if config is not None:
            self.config_path = self.workdir / "central.toml"
            self.config_path.write_text(config)
        self.log_path = self.workdir / "central.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def entry(self) -> list[str]:
        """The module ``python -m`` runs, and any arguments of its own before central's options."""
        return ["central.cli"]

    def command(self) -> list[str]:
        """The command line that runs this central."""
        config = ["--config", str(self.config_path)] if self.config_path is not None else []
        return [sys.executable, "-m", *self.entry(), *config, "--broker", self.broker.url, "--db", self.db_url,
                "--bind", f"{self.bind_host}:{self.port}"]

    def start(self, timeout: float = 30.0) -> Self:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=log, cwd=REPO,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        log.close()
        proc = self.proc

        def up() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"central exited with {proc.returncode}:\n{self.log()[-3000:]}")
            return self.health() is not None and "online" in self.central_state()

        try:
            wait_for(up, timeout, what="central to come up")
        except AssertionError:
            raise RuntimeError(f"central did not come up in {timeout}s:\n{self.log()[-3000:]}") from None
        return self

    def central_state(self) -> str:
        """What the retained ``_central/status`` says ("unknown": nothing, or no broker)."""
        from sync import protocol
        from tests.support.mqtt_client import retained

        try:
            got = retained(self.broker, protocol.CENTRAL_STATUS_TOPIC)
        except OSError:
            return "unknown"
        return str(json.loads(got)["state"]) if got is not None else "unknown"

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
        """Wait until central has stored at least ``n`` events (its ``/healthz`` count)."""
        def count() -> int | None:
            health = self.health()
            return None if health is None else int(health["events"])

        try:
            wait_for(lambda: (count() or 0) >= n, timeout, what=f"{n} events stored")
        except AssertionError:
            raise AssertionError(f"central stored {count()} events, not {n}, within {timeout}s:\n"
                                 f"{self.log()[-3000:]}") from None

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

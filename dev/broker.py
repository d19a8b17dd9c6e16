"""A private Mosquitto on a free loopback port, for the demo and the tests.

It writes its own configuration into a work directory, so it never touches a
system broker. ``kill()`` sends SIGKILL (no clean shutdown), ``restart()``
starts it again on the same port with the same persistence file, and
``extra_config`` adds lines (ACLs, passwords, TLS). With ``dynsec=True`` it
loads Mosquitto's dynamic-security plugin, whose first file holds only the
DeskPulse administrator (``admin_user`` / ``admin_password``); anonymous
clients are refused.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from sync import dynsec

#: Where Debian and Raspberry Pi OS install the dynamic-security plugin.
DYNSEC_PLUGIN_GLOBS = ("/usr/lib/*/mosquitto_dynamic_security.so", "/usr/lib/mosquitto_dynamic_security.so",
                       "/usr/local/lib/mosquitto_dynamic_security.so")


def find_mosquitto() -> str:
    """Path of the mosquitto binary (Debian installs it in /usr/sbin)."""
    found = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.path.exists(p)), None
    )
    if not found:
        raise RuntimeError("mosquitto is not installed: run 'make test' or 'make demo', which install it through apt")
    return found


def find_dynsec_plugin() -> str:
    """Path of Mosquitto's dynamic-security plugin (Debian's mosquitto package ships it)."""
    import glob

    for pattern in DYNSEC_PLUGIN_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    raise RuntimeError("mosquitto_dynamic_security.so is not installed: Debian's 'mosquitto' package ships it "
                       "('make deps' installs mosquitto)")


#: Under pytest-xdist (``make test`` runs two workers) each worker takes ports from its own
#: block below Linux's ephemeral range (32768-60999), so two workers never pick the same port,
#: and a broker restarted on its port does not find it taken by another test's client socket.
_WORKER_PORTS_FROM = 20000
_WORKER_PORTS_EACH = 1500
_next_port: Iterator[int] | None = None


def _worker_ports() -> Iterator[int] | None:
    global _next_port
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw") or not worker[2:].isdigit():
        return None
    if _next_port is None:
        first = _WORKER_PORTS_FROM + int(worker[2:]) * _WORKER_PORTS_EACH
        _next_port = itertools.cycle(range(first, first + _WORKER_PORTS_EACH))
    return _next_port


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now.

    Successive calls in one process return different ports (a port handed out but not yet
    listened on is not handed out again until its worker's block has gone round)."""
    ports = _worker_ports()
    if ports is not None:
        for _ in range(_WORKER_PORTS_EACH):
            port = next(ports)
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
        raise RuntimeError(f"no free port in this test worker's block from {_WORKER_PORTS_FROM}")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Mosquitto:
    """One private Mosquitto process.

    Args:
        workdir: a directory for its config, log and persistence file.
        extra_config: lines appended to the listener's configuration.
        persistence: keep queued messages in a file across restarts.
        dynsec: load the dynamic-security plugin (clients and roles made at run time).
    """

    admin_user = dynsec.DEFAULT_ADMIN
    admin_password = "test-admin-password"

    def __init__(self, workdir: Path, extra_config: str = "", persistence: bool = True,
                 dynsec: bool = False) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.host = "127.0.0.1"
        self.extra_config = extra_config
        self.persistence = persistence
        self.dynsec = dynsec
        self.dynsec_file = self.workdir / "dynamic-security.json"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / "mosquitto.log"

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def write_config(self) -> Path:
        conf = self.workdir / "mosquitto.conf"
        plugin: list[str] = []
        if self.dynsec:
            if not self.dynsec_file.exists():  # kept across restarts: the plugin saves its clients there
                dynsec.write_initial_config(self.dynsec_file, self.admin_user, self.admin_password)
            plugin = [f"plugin {find_dynsec_plugin()}", f"plugin_opt_config_file {self.dynsec_file}"]
        lines = [
            f"listener {self.port} {self.host}",
            *plugin,
            "allow_anonymous true" if "allow_anonymous" not in self.extra_config and not self.dynsec
            else "",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.workdir}/",
            "autosave_interval 1",
            "max_inflight_messages 0",
            # Started as root, Mosquitto drops to the 'mosquitto' user and then
            # cannot read our files or write its persistence file: stay ourselves.
            f"user {pwd.getpwuid(os.getuid()).pw_name}" if os.getuid() == 0 else "",
            "max_queued_messages 100000",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_dest stderr",
            self.extra_config,
        ]
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def start(self, timeout: float = 10.0) -> Mosquitto:
        conf = self.write_config()
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([find_mosquitto(), "-c", str(conf)], stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited at start:\n{self.log_path.read_text()[-2000:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout}s")

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, no final persistence save."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)

    def stop(self) -> None:
        """A clean stop (SIGTERM), which saves persistence."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> Mosquitto:
        self.kill()
        return self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

"""``deskpulse-kiosk`` as a real process on SDL's dummy driver, for kill tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def kiosk_toml(folder: Path, broker_url: str, *, site: str = "test-site", device: str = "desk-1",
               thank_you_s: float = 0.5, resend_after_s: float = 2) -> Path:
    """Write a kiosk configuration for a test and return its path."""
    path = folder / f"{device}.toml"
    path.write_text(f"""
[device]
site = "{site}"
name = "{device}"
data_dir = "{folder / (device + '-data')}"
[broker]
url = "{broker_url}"
keepalive = 5
[screen]
fullscreen = false
[survey]
thank_you_s = {thank_you_s}
repeat_interval_s = 0
[sync]
resend_after_s = {resend_after_s}
""")
    return path


def outbox_of(config: Path) -> Path:
    """The outbox file of a configuration written by :func:`kiosk_toml`."""
    return config.parent / (config.stem + "-data") / "outbox.sqlite3"


def start_kiosk(config: Path, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    """Start the kiosk headless; its output goes to ``log``."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "device.cli", "run", "-c", str(config), "--headless", *extra],
            stdout=out, stderr=out,
        )

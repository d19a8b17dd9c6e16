"""The systemd units and the install script, checked without installing anything."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INSTALL = ROOT / "systemd" / "install.sh"


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # keys are case-sensitive
    parser.read(ROOT / "systemd" / name)
    return parser


def test_kiosk_unit_has_watchdog_restart_and_device_access() -> None:
    text = (ROOT / "systemd" / "deskpulse-kiosk.service").read_text()
    u = unit("deskpulse-kiosk.service")
    service = u["Service"]
    assert service["Type"] == "notify" and service["WatchdogSec"]
    assert service["Restart"] == "always" and u["Unit"]["StartLimitIntervalSec"] == "0"
    assert "Conflicts=getty@tty1.service" in text
    for device in ("char-drm rw", "char-input rw", "char-gpiochip rw"):
        assert f"DeviceAllow={device}" in text
    assert "PrivateDevices" not in service and "ProtectClock" not in service  # they close DeviceAllow
    assert service["ProtectSystem"] == "strict" and service["NoNewPrivileges"] == "true"
    assert "deskpulse-kiosk run --config /etc/deskpulse/kiosk.toml" in service["ExecStart"]


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
@pytest.mark.parametrize("name", ["deskpulse-kiosk.service", "deskpulse-central.service"])
def test_units_pass_systemd_analyze(name: str) -> None:
    out = subprocess.run(["systemd-analyze", "verify", str(ROOT / "systemd" / name)],
                         capture_output=True, text=True, check=False)
    problems = [line for line in (out.stdout + out.stderr).splitlines()
                if line.strip() and "/opt/deskpulse/venv/bin/" not in line]  # not installed here
    assert problems == []


def _offline_security_supported() -> bool:
    if not shutil.which("systemd-analyze"):
        return False
    out = subprocess.run(["systemd-analyze", "security", "--help"], capture_output=True, text=True, check=False)
    return "--offline" in out.stdout


@pytest.mark.skipif(not _offline_security_supported(),
                    reason="systemd-analyze with 'security --offline' (systemd 250 or newer) is not installed")
@pytest.mark.parametrize(("name", "ceiling"), [("deskpulse-kiosk.service", 4.0), ("deskpulse-central.service", 2.5)])
def test_units_are_hardened_to_their_exposure_ceiling(name: str, ceiling: float) -> None:
    out = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager",
                          str(ROOT / "systemd" / name)], capture_output=True, text=True, check=False)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d)", out.stdout)
    assert found, out.stdout + out.stderr
    assert float(found.group(1)) <= ceiling, out.stdout


def test_the_kiosk_keeps_its_devices_and_network_while_central_closes_them() -> None:
    kiosk, central = unit("deskpulse-kiosk.service")["Service"], unit("deskpulse-central.service")["Service"]
    for service in (kiosk, central):
        assert service["CapabilityBoundingSet"] == "" and service["NoNewPrivileges"] == "true"
    assert "PrivateNetwork" not in kiosk and "AF_INET" in kiosk["RestrictAddressFamilies"]
    assert central["PrivateDevices"] == "true" and central["ProtectClock"] == "true"


def test_install_dry_run_shows_every_step_and_needs_no_root() -> None:
    out = subprocess.run([str(INSTALL), "kiosk", "--site", "hotel-berlin", "--device", "front-desk",
                          "--broker", "mqtts://mqtt.example:8883", "--dry-run"],
                         capture_output=True, text=True, check=True)
    for step in ("/opt/deskpulse/src[pi]", "--system-site-packages", "usermod -aG", "/etc/deskpulse/kiosk.toml",
                 "check-config", "systemctl enable deskpulse-kiosk.service"):
        assert step in out.stdout, step


@pytest.mark.parametrize("args", [["kiosk", "--site", "Bad Site", "--device", "d"], ["nonsense"],
                                  ["central", "--broker", "http://x"]])
def test_install_refuses_bad_arguments_with_a_reason(args: list[str]) -> None:
    out = subprocess.run([str(INSTALL), *args, "--dry-run"], capture_output=True, text=True, check=False)
    assert out.returncode == 2
    assert out.stderr.startswith("install.sh: ")

"""``deskpulse-kiosk doctor`` against a good set-up and against each thing that goes wrong on a Pi.

The broker is a real Mosquitto with the dynamic-security plugin and a kiosk made by
``deskpulse-central device add``; the configuration, password and outbox are real files
with real owners and modes (the service's user is ``nobody``). ``/dev``, the outputs of
timedatectl, vcgencmd and systemctl, and disk usage come through ``System``.
"""

from __future__ import annotations

import grp
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from central import fleet
from central.config import from_dict as central_config
from device import cli
from device.doctor import Check, System, diagnose
from sync import provision
from sync.outbox import Outbox
from tests.support.broker import Mosquitto, free_port
from tests.test_outbox import answer

GOOD_COMMANDS = {
    "timedatectl": (0, "yes"),
    "vcgencmd": (0, "throttled=0x0"),
    "systemctl": (0, "ActiveState=active\nSubState=running\nNRestarts=2"),
}


@dataclass
class Pi:
    """A kiosk's files under a root other users may traverse, and the fake machine around them."""

    root: Path
    config: Path
    system: System
    commands: dict[str, tuple[int, str]]

    def diagnose(self) -> dict[str, Check]:
        return {c.name: c for c in diagnose(self.config, user="nobody", system=self.system)}


def _nogroup() -> int:
    return grp.getgrnam("nogroup").gr_gid


def _device_file(path: Path, mode: int = 0o660) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    os.chown(path, 0, _nogroup())
    path.chmod(mode)



@pytest.fixture
def pi(plugin_broker: Mosquitto, tmp_path: Path) -> Iterator[Pi]:
    if os.geteuid() != 0:
        pytest.skip("the Pi's files need root: owners root:nogroup and reads as nobody")
    root = Path(tempfile.mkdtemp(prefix="deskpulse-pi-", dir="/tmp"))
    root.chmod(0o755)
    try:
        (tmp_path / "admin").write_text(plugin_broker.admin_password)
        central = central_config({"broker": {"url": plugin_broker.url},
                                  "database": {"url": f"sqlite:///{tmp_path / 'central.sqlite3'}"},
                                  "fleet": {"admin_password_file": str(tmp_path / "admin")}})
        prov = provision.load(fleet.add_device(central, "test-site", "desk-1", tmp_path / "desk-1.toml"))
        etc = root / "etc"
        etc.mkdir()
        keys = provision.install(prov, etc, group_id=_nogroup())
        data = root / "data"
        Outbox(data / "outbox.sqlite3", "test-site", "desk-1").close()
        config = etc / "kiosk.toml"
        config.write_text(
            f'[device]\nsite = "test-site"\nname = "desk-1"\ndata_dir = "{data}"\n\n'
            f'[broker]\nurl = "{keys["broker"]["url"]}"\nusername = "{keys["broker"]["username"]}"\n'
            f'password_file = "{keys["broker"]["password_file"]}"\n\n[gpio]\nthank_you_led = 17\n')
        os.chown(config, 0, _nogroup())
        config.chmod(0o640)
        dev = root / "dev"
        for name in ("dri/card0", "input/event0", "gpiochip0"):
            _device_file(dev / name)
        commands = dict(GOOD_COMMANDS)
        system = System(dev=dev, run=lambda argv: commands.get(argv[0]),
                        find_library=lambda name: f"lib{name}.so", disk_usage=lambda p: (32 << 30, 8 << 30, 24 << 30),
                        broker_timeout=5, mesa_dri_glob=str(_mesa_dri(root)))
        yield Pi(root, config, system, commands)
    finally:
        shutil.rmtree(root)


def failed(checks: dict[str, Check]) -> dict[str, str]:
    return {name: c.says for name, c in checks.items() if c.status != "ok"}


def test_a_good_set_up_passes_every_check(pi: Pi) -> None:
    checks = pi.diagnose()
    assert failed(checks) == {}
    assert list(checks) == ["configuration", "display", "touch", "gpio", "broker", "clock", "power", "disk",
                            "outbox", "service"]
    assert checks["broker"].says.startswith("logged in to mqtt://127.0.0.1:") and "subscribed" in checks["broker"].says
    assert checks["service"].says == "deskpulse-kiosk.service is active (running), restarted 2 times"


def test_a_wrong_password_fails_the_broker_check(pi: Pi) -> None:
    (pi.root / "etc" / "mqtt-password").write_text("not-the-password\n")
    checks = pi.diagnose()
    assert list(failed(checks)) == ["broker"]
    assert "refused the login as test-site.desk-1 with client id test-site.desk-1: Not authorized" \
        in checks["broker"].says
    assert "deskpulse-central device add" in checks["broker"].todo


def test_no_broker_fails_the_broker_check(pi: Pi) -> None:
    pi.config.write_text(pi.config.read_text().replace(
        pi.config.read_text().split('url = "')[1].split('"')[0], f"mqtt://127.0.0.1:{free_port()}"))
    checks = pi.diagnose()
    assert list(failed(checks)) == ["broker"]
    assert checks["broker"].says.startswith("nothing listens at mqtt://127.0.0.1:")


def test_a_config_the_service_user_cannot_read_fails(pi: Pi) -> None:
    os.chown(pi.config, 0, 0)  # root:root 0640, as the old installer left it
    checks = pi.diagnose()
    assert checks["configuration"].status == "fail"
    assert checks["configuration"].says == f"the service's user nobody cannot read {pi.config}"
    (pi.root / "etc" / "mqtt-password").chmod(0o600)
    assert str(pi.root / "etc" / "mqtt-password") in pi.diagnose()["configuration"].says


def test_an_invalid_config_says_the_key(pi: Pi) -> None:
    pi.config.write_text(pi.config.read_text().replace('name = "desk-1"', 'name = "Desk 1"'))
    checks = pi.diagnose()
    assert checks["configuration"].status == "fail" and "device.name" in checks["configuration"].says
    assert checks["broker"].status == "unknown"


def test_no_drm_device_or_one_the_user_may_not_open_fails_the_display(pi: Pi) -> None:
    card = pi.system.dev / "dri" / "card0"
    card.chmod(0o600)
    assert pi.diagnose()["display"].says == f"the service's user may not open {card}"
    card.unlink()
    checks = pi.diagnose()
    assert list(failed(checks)) == ["display"]
    assert checks["display"].says.startswith("no DRM device")


def _mesa_dri(root: Path) -> Path:
    """A Pi's Mesa DRI drivers (libgl1-mesa-dri), as files where the doctor is told to look."""
    dri = root / "usr/lib/aarch64-linux-gnu/dri"
    dri.mkdir(parents=True)
    for name in ("vc4_dri.so", "v3d_dri.so", "kms_swrast_dri.so"):
        (dri / name).write_bytes(b"\x7fELF")
    return dri / "*_dri.so"


def test_without_mesas_dri_drivers_the_display_check_names_the_package(pi: Pi) -> None:
    # Found on the emulated Pi: libdrm/gbm/EGL/GLES alone leave SDL with "EGL not initialized".
    for driver in (pi.root / "usr/lib/aarch64-linux-gnu/dri").iterdir():
        driver.unlink()
    checks = pi.diagnose()
    assert checks["display"].says == "the KMSDRM display libraries are missing (libgl1-mesa-dri)"
    assert checks["display"].todo == "sudo apt install libgl1-mesa-dri"


def test_missing_kmsdrm_libraries_are_named_with_their_packages(pi: Pi) -> None:
    pi.system = replace(pi.system, find_library=lambda name: None if name == "gbm" else f"lib{name}.so")
    checks = pi.diagnose()
    assert checks["display"].says == "the KMSDRM display libraries are missing (libgbm1)"
    assert checks["display"].todo == "sudo apt install libgbm1"


def test_no_touch_device_and_no_gpio_chip_fail(pi: Pi) -> None:
    (pi.system.dev / "input" / "event0").unlink()
    (pi.system.dev / "gpiochip0").unlink()
    checks = pi.diagnose()
    assert list(failed(checks)) == ["touch", "gpio"]
    assert checks["gpio"].says.startswith("[gpio] pins are configured but there is no GPIO chip")


def test_a_full_disk_fails(pi: Pi) -> None:
    pi.system = replace(pi.system, disk_usage=lambda p: (32 << 30, (32 << 30) - (10 << 20), 10 << 20))
    checks = pi.diagnose()
    assert list(failed(checks)) == ["disk"]
    assert checks["disk"].says == f"only 10 MB free on the disk of {pi.root / 'data'}"


def test_a_corrupt_outbox_fails_and_doctor_changes_nothing(pi: Pi) -> None:
    outbox = pi.root / "data" / "outbox.sqlite3"
    outbox.write_bytes(b"this is no database" * 100)
    checks = pi.diagnose()
    assert list(failed(checks)) == ["outbox"]
    assert checks["outbox"].says.startswith(f"the outbox {outbox} is damaged")
    assert sorted(p.name for p in outbox.parent.iterdir()) == ["outbox.sqlite3"]


def test_a_long_backlog_fails_the_outbox_check(pi: Pi) -> None:
    with Outbox(pi.root / "data" / "outbox.sqlite3", "test-site", "desk-1") as box:
        box.append(answer())
    assert pi.diagnose()["outbox"].says == "sound; 1 answer(s) waiting for central"
    checks = {c.name: c for c in diagnose(pi.config, user="nobody", system=pi.system, now=time.time() + 7200)}
    assert checks["outbox"].status == "fail" and checks["outbox"].says.startswith("1 answers wait for central")


@pytest.mark.parametrize(("command", "answer", "name", "sentence"), [
    ("timedatectl", (0, "no"), "clock", "the clock is not synchronised: answers carry clock_synced=false"),
    ("vcgencmd", (0, "throttled=0x50000"), "power", "under-voltage occurred since boot: the power supply is too weak"),
    ("vcgencmd", (0, "throttled=0x50005"), "power", "under-voltage now: the power supply is too weak"),
    ("systemctl", (0, "ActiveState=failed\nSubState=failed\nNRestarts=5"), "service",
     "deskpulse-kiosk.service is failed (failed), restarted 5 times"),
])
def test_the_system_checks_fail_with_their_sentence(pi: Pi, command: str, answer: tuple[int, str], name: str,
                                                     sentence: str) -> None:
    pi.commands[command] = answer
    checks = pi.diagnose()
    assert failed(checks) == {name: sentence}


def test_the_command_line_exits_1_and_prints_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["doctor", "--json", "-c", str(tmp_path / "missing.toml"), "--user", "nobody"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    assert report["checks"][0] == {"name": "configuration", "status": "fail",
                                   "says": f"{tmp_path / 'missing.toml'}: no such configuration file",
                                   "todo": "fix the file (docs/configuration.md), then run 'deskpulse-kiosk doctor' "
                                           "again"}


def test_check_config_says_it_did_not_contact_the_broker(kiosk_config, tmp_path: Path, capsys) -> None:
    path = tmp_path / "kiosk.toml"
    path.write_text('[device]\nsite = "s"\nname = "d"\ndata_dir = "data"\n[broker]\nurl = "mqtt://127.0.0.1:9"\n')
    assert cli.main(["check-config", "-c", str(path)]) == 0
    assert "checked offline: the broker was not contacted ('deskpulse-kiosk doctor' logs in)" in capsys.readouterr().out


def test_a_wrong_ca_fails_the_broker_check_and_the_right_one_passes(pi: Pi, broker: Mosquitto, tmp_path: Path) -> None:
    from tests.test_sync_security import make_certificates

    (tmp_path / "right").mkdir()
    (tmp_path / "wrong").mkdir()
    certs, other = make_certificates(tmp_path / "right"), make_certificates(tmp_path / "wrong")
    broker.extra_config = f"cafile {certs['ca.crt']}\ncertfile {certs['server.crt']}\nkeyfile {certs['server.key']}"
    broker.restart()
    url = pi.config.read_text().split('url = "')[1].split('"')[0]
    ca = pi.root / "etc" / "ca.crt"
    pi.config.write_text(pi.config.read_text().replace(url, f"mqtts://127.0.0.1:{broker.port}")
                         .replace("[gpio]", f'ca_file = "{ca}"\n\n[gpio]'))
    shutil.copy(other["ca.crt"], ca)
    checks = pi.diagnose()
    assert list(failed(checks)) == ["broker"]
    assert checks["broker"].says.startswith("TLS: the broker's certificate cannot be verified")
    shutil.copy(certs["ca.crt"], ca)
    assert pi.diagnose()["broker"].says == f"logged in to mqtts://127.0.0.1:{broker.port} as test-site.desk-1 " \
                                           "over TLS and subscribed"

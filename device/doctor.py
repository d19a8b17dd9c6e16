"""``deskpulse-kiosk doctor``: is this Pi ready to take answers and deliver them?

Each check says in plain words what it found and, when something is wrong,
what to do. The checks look at the real system: the configuration and who may
read it, the display (KMSDRM's libraries and a DRM device the service's user
may open), a touch input device, the GPIO chip, the broker (a real login with
the configured credentials and TLS, and a subscription), the clock, the power
supply, the disk, the outbox and the systemd unit.

Everything that touches the machine goes through :class:`System`, so tests
hand in a fake ``/dev``, command outputs and disk usage while the checks'
logic stays the real one.
"""

from __future__ import annotations

import ctypes.util
import glob
import grp
import json
import os
import pwd
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from sync import protocol
from sync.errors import DeskPulseError
from sync.outbox import inspect

Status = Literal["ok", "fail", "unknown"]

#: The unit's SupplementaryGroups (systemd/deskpulse-kiosk.service): the service has them whatever /etc/group says.
UNIT_GROUPS = ("video", "render", "input", "gpio")
#: KMSDRM's libraries (pygame-ce's SDL loads them at run time) and the Debian package of each.
DISPLAY_LIBRARIES = {"drm": "libdrm2", "gbm": "libgbm1", "EGL": "libegl1", "GLESv2": "libgles2"}
#: Mesa's DRI drivers (libgl1-mesa-dri): without them EGL cannot start and SDL says "EGL not initialized".
MESA_DRI_GLOB = "/usr/lib/*/dri/*_dri.so"
MIN_FREE_BYTES = 200 * 1024 * 1024
MAX_WAITING_S = 3600.0


@dataclass(frozen=True, slots=True)
class Check:
    """One check's outcome: a plain sentence, and what to do when it is not ok."""

    name: str
    status: Status
    says: str
    todo: str = ""


def _run(argv: list[str]) -> tuple[int, str] | None:
    """Run a command; its exit status and output, or None when it is not installed."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.returncode, (done.stdout + done.stderr).strip()


@dataclass(frozen=True)
class System:
    """The machine the checks look at (the real one by default)."""

    dev: Path = Path("/dev")
    run: Callable[[list[str]], tuple[int, str] | None] = _run
    find_library: Callable[[str], str | None] = ctypes.util.find_library
    disk_usage: Callable[[Path], tuple[int, int, int]] = field(
        default=lambda p: tuple(shutil.disk_usage(p)))  # type: ignore[assignment]
    unit: str = "deskpulse-kiosk.service"
    broker_timeout: float = 8.0
    mesa_dri_glob: str = MESA_DRI_GLOB


# ---------------------------------------------------------------------- who may open what


@dataclass(frozen=True, slots=True)
class Account:
    """The service's user: its uid and every group the service runs with."""

    name: str
    uid: int
    gids: frozenset[int]


def account(name: str) -> Account | None:
    """The user ``name`` with its primary, listed and the unit's supplementary groups; None if unknown."""
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        return None
    gids = {pw.pw_gid} | {g.gr_gid for g in grp.getgrall() if name in g.gr_mem}
    for group in UNIT_GROUPS:
        try:
            gids.add(grp.getgrnam(group).gr_gid)
        except KeyError:
            pass
    return Account(name, pw.pw_uid, frozenset(gids))


def may(who: Account, path: Path, *, read: bool = True, write: bool = False) -> bool:
    """Whether ``who`` may open ``path`` (permission bits of the file and search on each parent)."""
    if who.uid == 0:
        return path.exists()

    def allowed(st: os.stat_result, r: int, w: int, x: int) -> bool:
        if st.st_uid == who.uid:
            shift = 6
        elif st.st_gid in who.gids:
            shift = 3
        else:
            shift = 0
        bits = (st.st_mode >> shift) & 0o7
        return (not r or bits & 4 != 0) and (not w or bits & 2 != 0) and (not x or bits & 1 != 0)

    try:
        for parent in reversed(path.absolute().parents):
            if not allowed(parent.stat(), 0, 0, 1):
                return False
        return allowed(path.stat(), int(read), int(write), 0)
    except OSError:
        return False


# ---------------------------------------------------------------------- the checks


def check_config(path: Path, who: Account | None) -> tuple[Check, Any]:
    """The configuration is valid, and the service's user may read it and its secrets."""
    from device.config import load

    try:
        config = load(path)
    except DeskPulseError as exc:
        return Check("configuration", "fail", str(exc),
                     "fix the file (docs/configuration.md), then run 'deskpulse-kiosk doctor' again"), None
    if who is None:
        return Check("configuration", "fail", f"{path} is valid, but the service's user does not exist",
                     "run systemd/install.sh kiosk, which creates it"), config
    secrets = [p for p in (path, _password_file(path), config.broker.ca_file, config.broker.cert_file,
                           config.broker.key_file) if p is not None]
    unreadable = [str(p) for p in secrets if not may(who, p)]
    if unreadable:
        return Check("configuration", "fail",
                     f"the service's user {who.name} cannot read {', '.join(unreadable)}",
                     f"chgrp {who.name} FILE && chmod 0640 FILE (or run systemd/install.sh kiosk again, "
                     "which puts owners and modes right)"), config
    return Check("configuration", "ok", f"{path} is valid ({config.site}/{config.device}) and {who.name} "
                 "can read it and its secrets"), config


def _password_file(path: Path) -> Path | None:
    import tomllib

    try:
        value = tomllib.loads(path.read_text("utf-8")).get("broker", {}).get("password_file")
    except (OSError, ValueError):
        return None
    if not isinstance(value, str):
        return None
    p = Path(value)
    return p if p.is_absolute() else path.parent / p


def _devices(system: System, pattern: str) -> list[Path]:
    return sorted(system.dev.glob(pattern))


def check_display(system: System, who: Account | None) -> Check:
    """KMSDRM's libraries are installed and a DRM device exists the service's user may open."""
    missing = [pkg for lib, pkg in DISPLAY_LIBRARIES.items() if system.find_library(lib) is None]
    if not glob.glob(system.mesa_dri_glob):
        missing.append("libgl1-mesa-dri")
    if missing:
        return Check("display", "fail", f"the KMSDRM display libraries are missing ({', '.join(missing)})",
                     f"sudo apt install {' '.join(missing)}")
    cards = _devices(system, "dri/card*")
    if not cards:
        return Check("display", "fail", f"no DRM device ({system.dev}/dri/card*): the kernel sees no display",
                     "check the display cable and that dtoverlay=vc4-kms-v3d is in /boot/firmware/config.txt")
    usable = [c for c in cards if who is not None and may(who, c, read=True, write=True)]
    if not usable:
        return Check("display", "fail", f"the service's user may not open {', '.join(map(str, cards))}",
                     "add the user to group video (sudo usermod -aG video deskpulse) or run the installer again")
    return Check("display", "ok", f"KMSDRM libraries present; {usable[0]} can be opened")


def check_touch(system: System, who: Account | None) -> Check:
    """An input event device exists that the service's user may read."""
    events = _devices(system, "input/event*")
    if not events:
        return Check("touch", "fail", f"no input device ({system.dev}/input/event*): the touchscreen is not seen",
                     "check the touch cable (DSI panels: the ribbon; USB panels: the USB cable)")
    if not any(who is not None and may(who, e) for e in events):
        return Check("touch", "fail", "the service's user may not read any input device",
                     "add the user to group input (sudo usermod -aG input deskpulse)")
    return Check("touch", "ok", f"{len(events)} input device(s) readable")


def check_gpio(system: System, who: Account | None, used: bool) -> Check:
    """The GPIO chip exists and may be opened, when buttons or LEDs are configured."""
    if not used:
        return Check("gpio", "ok", "no buttons or LEDs configured ([gpio]): nothing to check")
    chips = _devices(system, "gpiochip*")
    if not chips:
        return Check("gpio", "fail", f"[gpio] pins are configured but there is no GPIO chip ({system.dev}/gpiochip*)",
                     "this is not a Raspberry Pi, or the kernel lacks the GPIO driver")
    if not any(who is not None and may(who, c, read=True, write=True) for c in chips):
        return Check("gpio", "fail", "the service's user may not open the GPIO chip",
                     "add the user to group gpio (sudo usermod -aG gpio deskpulse)")
    return Check("gpio", "ok", f"{chips[0]} can be opened")


def check_broker(config: Any, timeout: float) -> Check:
    """A real login with the configured credentials and TLS, then a subscription to central's status."""
    from paho.mqtt.reasoncodes import ReasonCode

    from sync.broker import make_client

    b = config.broker
    client_id = f"{config.site}.{config.device}"
    try:
        client = make_client(client_id, b)
    except (OSError, ssl.SSLError, ValueError) as exc:
        return Check("broker", "fail", f"the TLS settings cannot be used: {exc}",
                     "check broker.ca_file, cert_file and key_file")
    done = threading.Event()
    outcome: dict[str, Any] = {}

    def on_connect(c: Any, u: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        outcome["connack"] = reason
        if reason.is_failure:
            done.set()
        else:
            c.subscribe(protocol.CENTRAL_STATUS_TOPIC, qos=1)

    def on_subscribe(c: Any, u: Any, mid: int, reasons: list[ReasonCode], props: Any) -> None:
        outcome["suback"] = reasons[0]
        done.set()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    try:
        client.connect(b.host, b.port, keepalive=10)
    except ssl.SSLCertVerificationError as exc:
        return Check("broker", "fail", f"TLS: the broker's certificate cannot be verified ({exc.verify_message})",
                     "broker.ca_file must be the CA that signed the broker's certificate")
    except ssl.SSLError as exc:
        return Check("broker", "fail", f"TLS handshake with {b.url} failed: {exc}",
                     "check broker.ca_file and that the broker speaks TLS on that port")
    except ConnectionRefusedError:
        return Check("broker", "fail", f"nothing listens at {b.url} (connection refused)",
                     "check broker.url, and that Mosquitto runs there")
    except OSError as exc:
        return Check("broker", "fail", f"cannot reach {b.url}: {exc}", "check the network and broker.url")
    client.loop_start()
    try:
        done.wait(timeout)
    finally:
        client.disconnect()
        client.loop_stop()
    connack = outcome.get("connack")
    if connack is None:
        return Check("broker", "fail", f"{b.url} did not answer the login within {timeout:g} s",
                     "check that broker.url is an MQTT port (and mqtts:// for a TLS one)")
    if connack.is_failure:
        return Check("broker", "fail", f"{b.url} refused the login as {b.username or '(no user)'} with client id "
                     f"{client_id}: {connack}",
                     "check broker.username and the password in broker.password_file; on central, "
                     "'deskpulse-central device add' makes new credentials")
    suback = outcome.get("suback")
    if suback is None or suback.is_failure:
        return Check("broker", "fail", f"{b.url} accepted the login but refused the subscription to "
                     f"{protocol.CENTRAL_STATUS_TOPIC}: {suback}", "the device's role or ACL lacks its topics")
    return Check("broker", "ok", f"logged in to {b.url} as {b.username or '(no user)'}"
                 f"{' over TLS' if b.tls else ''} and subscribed")


def check_clock(system: System) -> Check:
    """The system clock is synchronised (systemd-timesyncd, chrony: timedatectl says so)."""
    got = system.run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"])
    if got is None or got[0] != 0:
        return Check("clock", "unknown", "cannot ask timedatectl whether the clock is synchronised")
    if got[1].strip() == "yes":
        return Check("clock", "ok", "the clock is synchronised")
    return Check("clock", "fail", "the clock is not synchronised: answers carry clock_synced=false",
                 "check the network and 'timedatectl timesync-status'; answers are re-timed once it is set")


def check_power(system: System) -> Check:
    """No under-voltage now or since boot (``vcgencmd get_throttled``)."""
    got = system.run(["vcgencmd", "get_throttled"])
    if got is None or got[0] != 0 or "=" not in got[1]:
        return Check("power", "unknown", "cannot ask vcgencmd about under-voltage (not a Raspberry Pi?)")
    try:
        bits = int(got[1].split("=", 1)[1], 16)
    except ValueError:
        return Check("power", "unknown", f"vcgencmd answered {got[1]!r}")
    if bits & 0x1:
        return Check("power", "fail", "under-voltage now: the power supply is too weak",
                     "use the official Raspberry Pi power supply (5.1 V, 3 A or more) and a short cable")
    if bits & 0x10000:
        return Check("power", "fail", "under-voltage occurred since boot: the power supply is too weak",
                     "use the official Raspberry Pi power supply (5.1 V, 3 A or more) and a short cable")
    return Check("power", "ok", "no under-voltage since boot")


def check_disk(system: System, data_dir: Path) -> Check:
    """At least 200 MB free where the outbox lives."""
    probe = data_dir if data_dir.exists() else data_dir.parent
    try:
        total, used, free = system.disk_usage(probe)
    except OSError as exc:
        return Check("disk", "fail", f"cannot see the disk of {data_dir}: {exc}", "check the SD card")
    if free < MIN_FREE_BYTES:
        return Check("disk", "fail", f"only {free // (1024 * 1024)} MB free on the disk of {data_dir}",
                     "free space (sudo journalctl --vacuum-size=100M; apt clean) or use a larger SD card")
    return Check("disk", "ok", f"{free // (1024 * 1024)} MB free on the disk of {data_dir}")


def check_outbox(path: Path, now: float) -> Check:
    """The outbox is sound and its oldest unconfirmed answer is less than an hour old."""
    found = inspect(path)
    if found.problem is not None:
        return Check("outbox", "fail", f"the outbox {path} {found.problem}",
                     "restart the kiosk (sudo systemctl restart deskpulse-kiosk): it moves a damaged outbox "
                     "aside, keeping it, and starts a new one")
    assert found.stats is not None
    backlog = found.stats.backlog
    oldest = found.stats.oldest_unconfirmed_at
    if backlog and oldest is not None and now - oldest > MAX_WAITING_S:
        return Check("outbox", "fail", f"{backlog} answers wait for central, the oldest for "
                     f"{(now - oldest) / 3600:.1f} h", "see the broker check; central must be up to confirm them")
    return Check("outbox", "ok", f"sound; {backlog} answer(s) waiting for central" if backlog
                 else "sound; nothing waiting for central")


def check_unit(system: System) -> Check:
    """The systemd unit runs (and how often it restarted)."""
    got = system.run(["systemctl", "show", system.unit, "-p", "ActiveState,SubState,NRestarts"])
    if got is None or got[0] != 0:
        return Check("service", "unknown", f"cannot ask systemctl about {system.unit}")
    props = dict(line.split("=", 1) for line in got[1].splitlines() if "=" in line)
    state = f"{props.get('ActiveState', '?')} ({props.get('SubState', '?')})"
    restarts = props.get("NRestarts", "0")
    if props.get("ActiveState") != "active":
        return Check("service", "fail", f"{system.unit} is {state}, restarted {restarts} times",
                     f"sudo journalctl -u {system.unit} -e shows why")
    return Check("service", "ok", f"{system.unit} is {state}, restarted {restarts} times")


def diagnose(path: Path, *, user: str = "deskpulse", system: System | None = None,
             now: float | None = None) -> list[Check]:
    """Every check, in the order a person fixes things."""
    system = system or System()
    who = account(user)
    config_check, config = check_config(path, who)
    checks = [config_check, check_display(system, who), check_touch(system, who)]
    if config is None:
        checks.append(Check("gpio", "unknown", "not checked: the configuration is not valid"))
        checks.append(Check("broker", "unknown", "not checked: the configuration is not valid"))
    else:
        checks.append(check_gpio(system, who, config.gpio.used))
        checks.append(check_broker(config, system.broker_timeout))
    checks += [check_clock(system), check_power(system)]
    if config is not None:
        checks.append(check_disk(system, config.data_dir))
        checks.append(check_outbox(config.outbox_path, time.time() if now is None else now))
    checks.append(check_unit(system))
    return checks


def report(checks: list[Check], *, as_json: bool) -> str:
    """The checks as text for a person, or as JSON."""
    if as_json:
        return json.dumps({"ok": all(c.status == "ok" for c in checks),
                           "checks": [asdict(c) for c in checks]}, indent=2)
    marks = {"ok": "ok  ", "fail": "FAIL", "unknown": "??  "}
    lines = []
    for c in checks:
        lines.append(f"{marks[c.status]} {c.name}: {c.says}")
        if c.todo and c.status != "ok":
            lines.append(f"     what to do: {c.todo}")
    failed = sum(c.status == "fail" for c in checks)
    unknown = sum(c.status == "unknown" for c in checks)
    if failed or unknown:
        lines.append(f"{failed} check(s) failed, {unknown} could not tell")
    else:
        lines.append("all checks passed")
    return "\n".join(lines)

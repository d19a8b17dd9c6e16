"""systemd/install.sh run for real into a target root (``--root``): files, owners, modes, re-runs.

apt-get, useradd, the venv, pip and systemctl are recorded under ``--root``, not run; every
file the installer writes is real. The service user is ``nobody`` (group ``nogroup``),
which exists on every Debian; the owner checks need root (skipped otherwise).
"""

from __future__ import annotations

import grp
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sync import provision
from sync.installconf import InstallError, edit

ROOT = Path(__file__).resolve().parent.parent
INSTALL = ROOT / "systemd" / "install.sh"
CA = "-----BEGIN CERTIFICATE-----\nMIIBtest\n-----END CERTIFICATE-----\n"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="owners and another user's reads need root")



def install(target: Path, *args: str, stdin: str = "", check: bool = True) -> subprocess.CompletedProcess[str]:
    role, *rest = args
    out = subprocess.run([str(INSTALL), role, "--root", str(target), "--user", "nobody", "--no-start", *rest],
                         input=stdin, capture_output=True, text=True, check=False)
    if check:
        assert out.returncode == 0, out.stdout + out.stderr
    return out


def provision_file(folder: Path, password: str = "s3cret-password", url: str = "mqtts://mqtt.example:8883") -> Path:
    path = folder / "desk.provision.toml"
    path.unlink(missing_ok=True)
    provision.write(provision.Provision(site="hotel-berlin", device="front-desk", broker_url=url,
                                        username="hotel-berlin.front-desk", password=password, ca_pem=CA), path)
    return path


def owner(path: Path) -> tuple[str, str, int]:
    st = path.stat()
    import pwd

    return pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name, stat.S_IMODE(st.st_mode)


def reads_as(user: str, path: Path) -> bool:
    return subprocess.run(["runuser", "-u", user, "--", "cat", str(path)], capture_output=True,
                          check=False).returncode == 0


@needs_root
def test_a_provisioned_kiosk_install_writes_its_files_with_the_right_owners(target: Path, tmp_path: Path) -> None:
    out = install(target, "kiosk", "--provision", str(provision_file(tmp_path)))
    etc = target / "etc/deskpulse"
    assert owner(etc / "kiosk.toml") == ("root", "nogroup", 0o640)
    assert owner(etc / "mqtt-password") == ("root", "nogroup", 0o640)
    assert owner(etc / "ca.crt") == ("root", "root", 0o644)
    assert owner(target / "var/lib/deskpulse") == ("nobody", "nogroup", 0o750)
    assert (etc / "mqtt-password").read_text() == "s3cret-password\n"
    assert (etc / "ca.crt").read_text() == CA
    assert (etc / "kiosk.toml").read_text() == (
        '[device]\nsite = "hotel-berlin"\nname = "front-desk"\ndata_dir = "/var/lib/deskpulse"\n\n'
        '[broker]\nurl = "mqtts://mqtt.example:8883"\nusername = "hotel-berlin.front-desk"\n'
        'password_file = "/etc/deskpulse/mqtt-password"\nca_file = "/etc/deskpulse/ca.crt"\n')
    assert "s3cret-password" not in out.stdout + out.stderr

    # The service's user reads its configuration and password; another user reads neither.
    for name in ("kiosk.toml", "mqtt-password"):
        assert reads_as("nobody", etc / name), name
        assert not reads_as("daemon", etc / name), name

    unit = (target / "etc/systemd/system/deskpulse-kiosk.service").read_text()
    assert "\nUser=nobody\n" in unit and "\nGroup=nogroup\n" in unit
    recorded = (target / "var/log/deskpulse-install.log").read_text().splitlines()
    assert recorded[0] == "apt-get update -q" and "libgl1-mesa-dri" in recorded[1]
    assert "python3-lgpio" not in recorded[1]  # Debian has none: lgpio is a wheel (the [pi] extra)
    assert "/opt/deskpulse/venv/bin/pip install -q --upgrade /opt/deskpulse/src[pi]" in recorded
    assert "runuser -u nobody -- /opt/deskpulse/venv/bin/deskpulse-kiosk check-config " \
           "--config /etc/deskpulse/kiosk.toml" in recorded
    assert recorded[-2:] == ["systemctl daemon-reload", "systemctl enable deskpulse-kiosk.service"]
    assert (target / "opt/deskpulse/src/device/cli.py").exists()


@needs_root
def test_a_second_run_changes_the_named_key_only_and_says_so(target: Path, tmp_path: Path) -> None:
    install(target, "kiosk", "--provision", str(provision_file(tmp_path)))
    etc = target / "etc/deskpulse"
    conf = etc / "kiosk.toml"
    conf.write_text(conf.read_text() + "\n# hand-written: the portrait panel\n[screen]\nrotation = 90\n")
    before = conf.read_text()
    password_mtime = (etc / "mqtt-password").stat().st_mtime_ns
    unit = target / "etc/systemd/system/deskpulse-kiosk.service"
    unit_mtime = unit.stat().st_mtime_ns
    data = target / "var/lib/deskpulse"
    (data / "outbox.sqlite3").write_text("the customers' answers")
    data.chmod(0o700)

    out = install(target, "kiosk", "--broker", "mqtts://mqtt2.example:8883")
    assert f"{conf}: broker.url changed from 'mqtts://mqtt.example:8883' to 'mqtts://mqtt2.example:8883'" \
        in out.stdout
    assert conf.read_text() == before.replace("mqtt.example", "mqtt2.example")
    assert owner(conf) == ("root", "nogroup", 0o640)
    assert (etc / "mqtt-password").stat().st_mtime_ns == password_mtime
    assert f"{unit} unchanged" in out.stdout and unit.stat().st_mtime_ns == unit_mtime
    assert "systemctl daemon-reload" not in out.stdout
    assert f"{data} exists: not touched" in out.stdout
    assert owner(data) == ("nobody", "nogroup", 0o700)
    assert (data / "outbox.sqlite3").read_text() == "the customers' answers"

    again = install(target, "kiosk", "--broker", "mqtts://mqtt2.example:8883")
    assert f"{conf}: broker.url unchanged ('mqtts://mqtt2.example:8883')" in again.stdout
    assert conf.read_text() == before.replace("mqtt.example", "mqtt2.example")


@needs_root
def test_a_new_password_on_stdin_replaces_the_file_and_a_wrong_mode_is_put_right(target: Path) -> None:
    install(target, "kiosk", "--site", "s", "--device", "d", "--username", "s.d", stdin="first-password\n")
    etc = target / "etc/deskpulse"
    (etc / "kiosk.toml").chmod(0o644)  # as an older installer left it
    out = install(target, "kiosk", "--username", "s.d", stdin="second-password\n")
    assert f"{etc / 'mqtt-password'}: MQTT password replaced" in out.stdout
    assert (etc / "mqtt-password").read_text() == "second-password\n"
    assert f"{etc / 'kiosk.toml'}: put right: mode 0644 -> 0640" in out.stdout
    assert f"{etc / 'kiosk.toml'}: broker.username unchanged ('s.d')" in out.stdout
    assert owner(etc / "kiosk.toml") == ("root", "nogroup", 0o640)


@needs_root
def test_central_config_is_readable_by_the_service_only(target: Path) -> None:
    install(target, "central", "--broker", "mqtt://127.0.0.1:1883")
    conf = target / "etc/deskpulse/central.toml"
    assert owner(conf) == ("root", "nogroup", 0o640)
    assert reads_as("nobody", conf) and not reads_as("daemon", conf)
    assert 'url = "sqlite:////var/lib/deskpulse/central.sqlite3"' in conf.read_text()


@pytest.mark.parametrize(("args", "sentence"), [
    (["kiosk"], "a new kiosk needs --provision FILE, or --site and --device"),
    (["kiosk", "--provision", "/nonexistent.toml"], "--provision /nonexistent.toml: no such readable file"),
    (["central", "--provision", "/etc/hostname"], "--provision is for a kiosk"),
    (["kiosk", "--site", "s", "--device"], "--device needs a value"),
    (["kiosk", "--site", "s", "--device", "d", "--user", "Bad User"], "--user must be a user name"),
])
def test_the_installer_refuses_bad_options_with_a_reason(target: Path, args: list[str], sentence: str) -> None:
    out = install(target, *args, check=False)
    assert out.returncode == 2 and sentence in out.stderr, out.stderr
    assert not (target / "etc").exists()


def test_a_bad_provisioning_file_stops_the_install_with_its_reason(target: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[device]\nsite = "s"\n')
    out = install(target, "kiosk", "--provision", str(bad), check=False)
    assert out.returncode == 2
    assert f"{bad}: device.name is missing" in out.stderr


def test_edit_changes_one_line_and_keeps_the_rest() -> None:
    text = '# mine\n[device]\nsite = "a"  # old\n\n[broker]\nurl = "mqtt://x"\n\n[screen]\nrotation = 90\n'
    assert edit(text, "broker", "url", "mqtts://y") == text.replace('"mqtt://x"', '"mqtts://y"')
    assert edit(text, "broker", "username", "u") == text.replace('url = "mqtt://x"\n',
                                                                 'url = "mqtt://x"\nusername = "u"\n')
    assert edit(text, "sync", "x", "1") == text + '\n[sync]\nx = "1"\n'
    with pytest.raises(InstallError, match="spans several lines"):
        edit('[broker]\nurl = """\nmqtt://x"""\n', "broker", "url", "y")


def test_the_configuration_step_needs_only_the_standard_library() -> None:
    # install.sh runs it with the system's python3, before the venv exists.
    code = ("import sys\nfor name in ('paho', 'jsonschema', 'sqlalchemy', 'pygame', 'referencing'):\n"
            "    sys.modules[name] = None\nimport sync.installconf, sync.provision\n")
    subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r})\n{code}"],
                   check=True, capture_output=True)


# ---------------------------------------------------------------------- found on the emulated Pi (make pi-vm-test)


def installer_packages() -> list[str]:
    text = INSTALL.read_text()
    lines = [re.search(rf'^{name}="([^"]*)"', text, re.MULTILINE) for name in ("PACKAGES", "KIOSK_PACKAGES")]
    return [p for m in lines if m for p in m.group(1).split()]


def dpkg_status(target: Path, installed: list[str]) -> None:
    """The target's dpkg database, listing these packages as installed (what dpkg-query reads)."""
    db = target / "var/lib/dpkg"
    for sub in ("info", "updates"):
        (db / sub).mkdir(parents=True, exist_ok=True)
    (db / "status").write_text("".join(
        f"Package: {p}\nStatus: install ok installed\nPriority: optional\nSection: misc\n"
        f"Architecture: all\nVersion: 1.0\nDescription: {p}\n\n" for p in installed))


@needs_root
def test_packages_already_installed_need_no_apt_so_an_offline_install_works(target: Path, tmp_path: Path) -> None:
    wanted = installer_packages()
    assert "libgl1-mesa-dri" in wanted and "python3-lgpio" not in wanted
    dpkg_status(target, wanted)
    out = install(target, "kiosk", "--provision", str(provision_file(tmp_path)))
    assert "installed already: " in out.stdout
    assert not any(line.startswith("apt-get") for line in (target / "var/log/deskpulse-install.log")
                   .read_text().splitlines())

    dpkg_status(target, [p for p in wanted if p != "libgl1-mesa-dri"])
    install(target, "kiosk")
    recorded = (target / "var/log/deskpulse-install.log").read_text().splitlines()
    assert recorded.count("apt-get install -y -q --no-install-recommends libgl1-mesa-dri") == 1


@needs_root
def test_the_groups_the_unit_asks_for_are_created_where_missing(target: Path, tmp_path: Path) -> None:
    # Plain Debian: video exists, render and input come with udev, gpio only on Raspberry Pi OS.
    (target / "etc").mkdir()
    (target / "etc/group").write_text("root:x:0:\nvideo:x:44:\ninput:x:105:\nnogroup:x:65534:\n")
    install(target, "kiosk", "--provision", str(provision_file(tmp_path)))
    recorded = (target / "var/log/deskpulse-install.log").read_text().splitlines()
    assert [line for line in recorded if line.startswith("groupadd")] == [
        "groupadd --system render", "groupadd --system gpio"]
    unit = (target / "etc/systemd/system/deskpulse-kiosk.service").read_text()
    wanted = re.search(r"^SupplementaryGroups=(.*)$", unit, re.MULTILINE)
    assert wanted is not None
    for group in wanted.group(1).split():
        assert f"usermod -aG {group} nobody" in recorded, group


def dry_run_with_systemd(running: bool) -> str:
    """The installer's dry run in a mount namespace where /run/systemd/system is (or is not) there."""
    make = "mkdir /run/systemd/system" if running else "true"
    script = (f"mount -t tmpfs none /run/systemd && {make} && "
              f"{INSTALL} kiosk --site s --device d --dry-run")
    out = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


@needs_root
@pytest.mark.skipif(not Path("/run/systemd").is_dir() or not shutil.which("unshare"),
                    reason="needs /run/systemd and unshare for a mount namespace")
def test_in_a_chroot_without_systemd_the_unit_is_enabled_but_not_reloaded_or_started() -> None:
    chroot = dry_run_with_systemd(running=False)
    assert "systemd is not running here" in chroot
    assert "+ systemctl enable deskpulse-kiosk.service" in chroot
    assert "daemon-reload" not in chroot and "systemctl restart" not in chroot
    booted = dry_run_with_systemd(running=True)
    assert "systemd is not running here" not in booted
    assert "+ systemctl daemon-reload" in booted and "+ systemctl restart deskpulse-kiosk.service" in booted

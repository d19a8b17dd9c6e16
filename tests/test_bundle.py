"""Release bundles (``make bundle``): what an archive holds, and installing from it with no PyPI and no git.

PyPI is out of reach here, so the archive is built with the project's wheel only
(``with_dependencies=False``) and the installer runs under ``--root``, which records
the venv and pip steps instead of running them: the test reads what pip would be told.
The dependency download is checked as the command it is.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from dev.bundle import TARGETS, build, download_command, version
from sync import provision

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the installer's owners need root")


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(TARGETS["kiosk-bookworm-arm64"], tmp_path_factory.mktemp("dist"), with_dependencies=False)


@pytest.fixture
def bundle(archive: Path, tmp_path: Path) -> Path:
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path, filter="data")
    return tmp_path / archive.name.removesuffix(".tar.gz")



def install(bundle: Path, target: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([str(bundle / "systemd" / "install.sh"), "kiosk", "--root", str(target), "--user", "nobody",
                          "--no-start", *args], capture_output=True, text=True, check=False)
    if check:
        assert out.returncode == 0, out.stdout + out.stderr
    return out


def provision_file(folder: Path) -> Path:
    path = folder / "desk.provision.toml"
    provision.write(provision.Provision(site="s", device="d", broker_url="mqtt://mqtt.example", username="s.d",
                                        password="pw"), path)
    return path


def release_as(bundle: Path, new_version: str) -> Path:
    """The same bundle relabelled as another version, with its manifest's checksums made right."""
    manifest = json.loads((bundle / "bundle.json").read_text())
    (wheel,) = (bundle / "wheels").glob(f"deskpulse-{manifest['version']}-*.whl")
    wheel.rename(wheel.with_name(wheel.name.replace(manifest["version"], new_version)))
    manifest["version"] = new_version
    manifest["files"] = {str(p.relative_to(bundle)): hashlib.sha256(p.read_bytes()).hexdigest()
                         for p in sorted(bundle.rglob("*")) if p.is_file() and p.name != "bundle.json"}
    (bundle / "bundle.json").write_text(json.dumps(manifest))
    return bundle


def test_the_archive_holds_the_wheel_the_installer_the_units_and_their_checksums(archive: Path, bundle: Path) -> None:
    assert archive.name == f"deskpulse-{version()}-kiosk-bookworm-arm64.tar.gz"
    manifest = json.loads((bundle / "bundle.json").read_text())
    assert manifest["role"] == "kiosk" and manifest["python"] == "3.11" and manifest["version"] == version()
    assert {"systemd/install.sh", "systemd/deskpulse-kiosk.service", "systemd/mosquitto/deskpulse-dynsec.conf",
            f"wheels/deskpulse-{version()}-py3-none-any.whl"} <= set(manifest["files"])
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((bundle / name).read_bytes()).hexdigest() == digest, name
    assert not (bundle / ".git").exists() and not (bundle / "sync").exists()  # no source tree, no git
    assert os.access(bundle / "systemd" / "install.sh", os.X_OK)


def test_the_dependency_download_is_binary_only_for_the_targets_platform_and_python() -> None:
    kiosk = download_command(TARGETS["kiosk-bookworm-arm64"], Path("w"))
    assert "--only-binary=:all:" in kiosk and kiosk[kiosk.index("--python-version") + 1] == "3.11"
    assert "manylinux2014_aarch64" in kiosk and any(r.startswith("pygame-ce") for r in kiosk)
    # lgpio (gpiozero's pins; Debian has no python3-lgpio) has manylinux_2_34 aarch64 wheels only.
    assert "manylinux_2_34_aarch64" in kiosk and "lgpio>=0.2" in kiosk
    assert not any(r.startswith("fastapi") for r in kiosk)
    central = download_command(TARGETS["central-trixie-amd64"], Path("w"), Path("mirror"))
    assert central[central.index("--python-version") + 1] == "3.13" and "manylinux2014_x86_64" in central
    assert any(r.startswith("fastapi") for r in central) and "--no-index" in central


@needs_root
def test_installing_from_the_bundle_needs_no_pypi_and_no_git(bundle: Path, target: Path, tmp_path: Path) -> None:
    out = install(bundle, target, "--provision", str(provision_file(tmp_path)))
    assert "bundle.json: " in out.stdout and "files verified" in out.stdout
    recorded = (target / "var/log/deskpulse-install.log").read_text()
    rel = f"/opt/deskpulse/releases/{version()}"
    assert f"{rel}/venv/bin/pip install -q --no-index --find-links {rel}/wheels deskpulse[pi]=={version()}" \
        in recorded
    assert "git" not in recorded and "pypi" not in recorded.lower()
    assert os.readlink(target / "opt/deskpulse/venv") == f"releases/{version()}/venv"
    assert (target / f"opt/deskpulse/releases/{version()}/wheels").is_dir()
    # The configuration step ran from the wheel (the bundle has no source tree).
    assert 'site = "s"' in (target / "etc/deskpulse/kiosk.toml").read_text()


@needs_root
def test_a_new_release_then_rollback_switches_back_and_keeps_the_configuration(
        bundle: Path, target: Path, tmp_path: Path) -> None:
    install(bundle, target, "--provision", str(provision_file(tmp_path)))
    conf = target / "etc/deskpulse/kiosk.toml"
    newer = release_as(bundle, "9.9.9")
    out = install(newer, target)
    assert f"release 9.9.9 is current (was {version()})" in out.stdout
    assert os.readlink(target / "opt/deskpulse/venv") == "releases/9.9.9/venv"
    before = conf.read_text()

    out = install(newer, target, "--rollback")
    assert f"release {version()} is current (was 9.9.9)" in out.stdout
    assert os.readlink(target / "opt/deskpulse/venv") == f"releases/{version()}/venv"
    assert conf.read_text() == before
    back = install(newer, target, "--rollback")  # and forth again
    assert os.readlink(target / "opt/deskpulse/venv") == "releases/9.9.9/venv", back.stdout


def test_rollback_with_no_release_before_says_so(bundle: Path, target: Path) -> None:
    out = install(bundle, target, "--rollback", check=False)
    assert out.returncode == 2 and "no release before the current one is recorded" in out.stderr


def test_a_damaged_or_foreign_bundle_is_refused(bundle: Path, target: Path) -> None:
    unit = bundle / "systemd" / "deskpulse-kiosk.service"
    unit.write_text(unit.read_text() + "\n# changed\n")
    out = install(bundle, target, "--site", "s", "--device", "d", check=False)
    assert out.returncode == 2 and "the bundle is damaged: systemd/deskpulse-kiosk.service" in out.stderr
    central = subprocess.run([str(bundle / "systemd" / "install.sh"), "central", "--root", str(target), "--no-start"],
                             capture_output=True, text=True, check=False)
    assert central.returncode == 2 and "is for a kiosk, not a central" in central.stderr
    assert not (target / "etc").exists()

"""Release bundles: one archive per target that installs with no PyPI and no git.

    python -m dev.bundle                       # every target into dist/
    python -m dev.bundle --target kiosk-bookworm-arm64 --out dist

Each archive ``deskpulse-VERSION-TARGET.tar.gz`` holds:

* ``wheels/``: the project's wheel and every dependency's wheel for the target's
  platform and Python (``pip download --only-binary=:all: --platform …``);
* ``systemd/``: ``install.sh``, the units and the Mosquitto examples;
* ``bundle.json``: version, target, role, Python, platforms, and each file's SHA-256.

On the Pi: ``tar xzf deskpulse-….tar.gz && sudo deskpulse-…/systemd/install.sh kiosk
--provision FILE``. The installer sees ``bundle.json``, installs from ``wheels/`` with
``pip --no-index`` into ``/opt/deskpulse/releases/VERSION/venv`` and points
``/opt/deskpulse/venv`` at it; ``install.sh kiosk --rollback`` points it back at the
release before. Building needs PyPI (to download the wheels); installing does not.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class Target:
    """Where a bundle installs: the role, the Debian release's Python and the machine."""

    name: str
    role: str
    python: str
    platforms: tuple[str, ...]

    @property
    def extras(self) -> str:
        """The project's extras this role installs (as install.sh names them)."""
        return "central,postgres" if self.role == "central" else "pi"


def _platforms(arch: str, glibc_minor: int = 36) -> tuple[str, ...]:
    """Every manylinux tag a glibc 2.``glibc_minor`` system runs (pip does not widen ``--platform`` itself:
    lgpio's aarch64 wheel is manylinux_2_34 only)."""
    return (*(f"manylinux_2_{m}_{arch}" for m in range(glibc_minor, 16, -1)), f"manylinux2014_{arch}")


#: Raspberry Pi OS / Debian Bookworm has Python 3.11, Trixie 3.13; the kiosk is 64-bit only.
TARGETS = {t.name: t for t in (
    Target("kiosk-bookworm-arm64", "kiosk", "3.11", _platforms("aarch64")),
    Target("kiosk-trixie-arm64", "kiosk", "3.13", _platforms("aarch64", 41)),
    Target("central-bookworm-amd64", "central", "3.11", _platforms("x86_64")),
    Target("central-bookworm-arm64", "central", "3.11", _platforms("aarch64")),
    Target("central-trixie-amd64", "central", "3.13", _platforms("x86_64", 41)),
)}


def version() -> str:
    """The project's version, from pyproject.toml."""
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


def requirements(target: Target) -> list[str]:
    """The dependencies the target installs, from pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in filter(None, target.extras.split(",")):
        wanted += project["optional-dependencies"][extra]
    return wanted


def download_command(target: Target, dest: Path, wheelhouse: Path | None = None) -> list[str]:
    """``pip download`` of every dependency wheel for the target (binary only: no build on the Pi)."""
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--implementation", "cp",
           "--python-version", target.python, "--dest", str(dest)]
    for platform in target.platforms:
        cmd += ["--platform", platform]
    if wheelhouse is not None:
        cmd += ["--no-index", "--find-links", str(wheelhouse)]
    return cmd + requirements(target)


def project_wheel(dest: Path) -> Path:
    """Build the project's wheel into ``dest`` (pure Python: one wheel fits every target)."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(dest), str(ROOT)], check=True)
    (wheel,) = dest.glob(f"deskpulse-{version()}-*.whl")
    return wheel


def build(target: Target, out: Path, *, wheelhouse: Path | None = None, with_dependencies: bool = True) -> Path:
    """Build one target's archive into ``out`` and return its path.

    Args:
        target: where it installs.
        out: the folder for the archive.
        wheelhouse: download from this folder instead of PyPI (an offline mirror).
        with_dependencies: False only for the installer's tests, which cannot reach PyPI.
    """
    name = f"deskpulse-{version()}-{target.name}"
    with tempfile.TemporaryDirectory() as tmp:
        top = Path(tmp) / name
        wheels = top / "wheels"
        wheels.mkdir(parents=True)
        project_wheel(wheels)
        if with_dependencies:
            subprocess.run(download_command(target, wheels, wheelhouse), check=True)
        (top / "systemd" / "mosquitto").mkdir(parents=True)
        for source in ("install.sh", "deskpulse-kiosk.service", "deskpulse-central.service"):
            shutil.copy2(ROOT / "systemd" / source, top / "systemd" / source)
        for conf in (ROOT / "systemd" / "mosquitto").glob("*.conf"):
            shutil.copy2(conf, top / "systemd" / "mosquitto" / conf.name)
        shutil.copytree(ROOT / "docs", top / "docs", ignore=shutil.ignore_patterns("img"))
        files = {str(p.relative_to(top)): hashlib.sha256(p.read_bytes()).hexdigest()
                 for p in sorted(top.rglob("*")) if p.is_file()}
        manifest = {"version": version(), "target": target.name, "role": target.role, "extras": target.extras,
                    "python": target.python, "platforms": list(target.platforms), "files": files}
        (top / "bundle.json").write_text(json.dumps(manifest, indent=2) + "\n")
        out.mkdir(parents=True, exist_ok=True)
        archive = out / f"{name}.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(top, arcname=name)
    return archive


def main(argv: list[str] | None = None) -> int:
    """Build the bundles the options name; print each archive's path."""
    p = argparse.ArgumentParser(prog="python -m dev.bundle", description=__doc__.split("\n\n")[0],
                                epilog=f"targets: {', '.join(TARGETS)}")
    p.add_argument("--target", action="append", choices=list(TARGETS), help="a target (default: every one)")
    p.add_argument("--out", type=Path, default=ROOT / "dist", help="where the archives go (default dist/)")
    p.add_argument("--wheelhouse", type=Path, help="take the dependency wheels from this folder, not PyPI")
    args = p.parse_args(argv)
    for name in args.target or list(TARGETS):
        print(build(TARGETS[name], args.out, wheelhouse=args.wheelhouse))
    return 0


if __name__ == "__main__":
    sys.exit(main())

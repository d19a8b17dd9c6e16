"""``make pi-vm-test`` from pytest: an emulated 64-bit Pi boots, installs the bundle, takes a tap, syncs.

It takes minutes (the first run builds the image, 10-25 minutes on 2 cores), needs root
and QEMU, so it runs only when asked: ``DESKPULSE_PI_VM=1 pytest tests/test_pi_vm.py -s``.
Every step is the harness's (dev/pivm.py); this only runs it and reads its verdict.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    os.environ.get("DESKPULSE_PI_VM") != "1",
    reason="the emulated Pi (QEMU, minutes; the first run builds a 25-minute image) runs only with "
           "DESKPULSE_PI_VM=1, or as make pi-vm-test")


def test_the_emulated_pi_installs_from_the_bundle_takes_a_tap_and_syncs(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "dev.pivm", "--out", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=3600, check=False)
    print(out.stdout[-8000:], out.stderr[-4000:])
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "pi-vm-test passed" in out.stdout
    (run,) = tmp_path.iterdir()
    assert (run / "serial.log").stat().st_size > 0 and (run / "captures" / "vm-rest-800x480.png").is_file()

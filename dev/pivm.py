"""``make pi-vm-test``: boot an emulated 64-bit Pi system, install from the bundle, tap, sync.

    python -m dev.pivm                 # build the image once (cached), then boot and test it
    python -m dev.pivm --build-only    # only build (or find) the cached image
    python -m dev.pivm --keep-going    # run every step even after one failed

There is no Raspberry Pi here, so this is the next best thing: an ARM64 Debian
bookworm system close to Raspberry Pi OS Lite 64-bit (same Debian release,
Python 3.11, systemd, the apt packages ``systemd/install.sh`` asks for, Debian's
``linux-image-arm64``), booted in ``qemu-system-aarch64 -M virt -cpu cortex-a72``
with a virtio GPU at 800x480 (a real DRM/KMS device) and a virtio tablet (an
absolute evdev pointer, like a touch panel).

The image is built once with ``debootstrap --arch=arm64`` under
``qemu-user-static`` and cached in ``~/.cache/deskpulse-pi-vm/KEY/``, KEY being
a hash of everything that went into it (packages, files, this recipe's
version). Every run boots a fresh copy-on-write overlay of it, so runs never
see each other's state.

Each run (folder ``build/pi-vm/TIMESTAMP/``: serial log, screen captures, the
guest's outputs):

1. copies the release bundle (``dev/bundle.py``, target kiosk-bookworm-arm64) and
   a provisioning file from a private Mosquitto (``dev/broker.py``, dynamic
   security) into the guest on a second disk, and runs ``systemd/install.sh kiosk
   --provision FILE`` there, offline, as an ops person would;
2. checks the unit reaches READY (Type=notify) on its first start and that
   ``deskpulse-kiosk doctor`` passes, except what a VM cannot have (a GPIO chip,
   the Pi's undervoltage flags), which it reports as such;
3. captures the screen through QMP and compares it with the kiosk's own
   ``screenshot`` of the same view at 800x480;
4. taps a face through the virtual tablet (QMP ``input-send-event``) and sees
   the answer stored once in a ``deskpulse-central`` on the host and confirmed
   in the guest's outbox;
5. cuts the power right after a thank-you, boots again, and sees that answer
   delivered once; stops the kiosk's main loop (SIGSTOP) and sees the watchdog
   restart the unit;
6. prints ``systemd-analyze security deskpulse-kiosk`` from the guest.

Networking is QEMU's user mode with ``restrict=on``: the guest reaches only the
host's private broker, through one ``guestfwd`` (10.0.2.100:1883).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("DESKPULSE_PI_VM_CACHE", Path.home() / ".cache" / "deskpulse-pi-vm"))
#: Change when the recipe changes in a way the key below does not see.
RECIPE = "3"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
#: Host tools and the Debian package of each (installed through apt when missing).
HOST_TOOLS = {"qemu-system-aarch64": "qemu-system-arm", "qemu-img": "qemu-utils", "debootstrap": "debootstrap",
              "mkfs.ext4": "e2fsprogs", "/usr/bin/qemu-aarch64-static": "qemu-user-static",
              "update-binfmts": "binfmt-support", "mosquitto": "mosquitto"}
#: What Raspberry Pi OS Lite has and the VM needs besides what the installer asks for.
BASE_PACKAGES = ("systemd", "systemd-sysv", "udev", "dbus", "kmod", "iproute2", "procps", "python3",
                 "ca-certificates", "less")
#: Installed after the initramfs configuration is in place (see _initramfs_config).
KERNEL_PACKAGES = ("initramfs-tools", "linux-image-arm64")
#: The initramfs needs only the root disk: virtio over PCI and ext4 (the rest loads from the root).
INITRAMFS_MODULES = ("virtio_pci", "virtio_blk", "ext4")
IMAGE_SIZE = "3G"
KERNEL_CMDLINE = "root=/dev/vda rw console=ttyAMA0 net.ifnames=0 systemd.show_status=1"
GUEST_BROKER = ("10.0.2.100", 1883)

#: Files written into the image: VM plumbing only, nothing of DeskPulse.
IMAGE_FILES = {
    "etc/hostname": "deskpulse-pi\n",
    "etc/hosts": "127.0.0.1 localhost\n127.0.1.1 deskpulse-pi\n",
    "etc/fstab": "/dev/vda / ext4 defaults,noatime 0 1\n",
    # A root shell on the serial console for the harness (the VM's only way in).
    "etc/systemd/system/serial-getty@ttyAMA0.service.d/autologin.conf":
        "[Service]\nExecStart=\nExecStart=-/sbin/agetty --autologin root --noclear --keep-baud 115200,57600,9600 "
        "%I $TERM\n",
    # QEMU's user network, static: the host's broker is 10.0.2.100 (guestfwd).
    "etc/systemd/network/10-eth0.network":
        "[Match]\nName=eth0\n\n[Network]\nAddress=10.0.2.15/24\nGateway=10.0.2.2\nLinkLocalAddressing=no\n",
    "etc/initramfs-tools/conf.d/deskpulse-vm.conf": "MODULES=list\nCOMPRESS=gzip\n",
    "etc/initramfs-tools/modules": "".join(f"{m}\n" for m in INITRAMFS_MODULES),
    "etc/dpkg/dpkg.cfg.d/01-no-docs": "path-exclude=/usr/share/doc/*\npath-include=/usr/share/doc/*/copyright\n"
                                      "path-exclude=/usr/share/man/*\npath-exclude=/usr/share/locale/*\n",
    "etc/apt/apt.conf.d/90-no-recommends": 'APT::Install-Recommends "false";\n',
}
#: Units the VM does without (they would only slow the boot or reach the network).
MASKED_UNITS = ("apt-daily.timer", "apt-daily-upgrade.timer", "systemd-networkd-wait-online.service",
                "e2scrub_all.timer", "fstrim.timer", "systemd-timesyncd.service")


class Failed(Exception):
    """A step did not do what it should; the message says what was seen."""


def log(msg: str) -> None:
    print(f"[pi-vm {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------------- host tools


def ensure_host_tools() -> None:
    """Install the host tools that are missing through apt (as ``make test`` does for Mosquitto)."""
    missing = sorted({pkg for tool, pkg in HOST_TOOLS.items()
                      if not (shutil.which(tool) or os.path.exists(tool) or os.path.exists(f"/usr/sbin/{tool}"))})
    if missing:
        log(f"installing through apt: {' '.join(missing)}")
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run([*sudo, "apt-get", "update", "-q"], check=True, env=env)
        subprocess.run([*sudo, "apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
                       check=True, env=env)
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    if not (binfmt / "register").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt)], check=False)
    if not (binfmt / "qemu-aarch64").exists():
        subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], check=False)
    if not Path("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists():
        raise Failed("binfmt_misc has no qemu-aarch64 entry: ARM64 programs cannot run under emulation "
                     "(is binfmt_misc mounted? 'update-binfmts --enable qemu-aarch64')")


# ---------------------------------------------------------------------- the image


def installer_packages() -> list[str]:
    """The apt packages systemd/install.sh asks for on a kiosk (read from the script itself)."""
    text = (ROOT / "systemd" / "install.sh").read_text()
    found = re.search(r'^KIOSK_PACKAGES="([^"]*)"', text, re.MULTILINE)
    base = re.search(r'^PACKAGES="([^"]*)"', text, re.MULTILINE)
    if not found or not base:
        raise Failed("systemd/install.sh: no PACKAGES=\"…\" / KIOSK_PACKAGES=\"…\" line to read the packages from")
    return base.group(1).split() + found.group(1).split()


def image_recipe() -> dict[str, object]:
    """Everything that goes into the image: its hash is the cache key."""
    return {"recipe": RECIPE, "suite": SUITE, "mirror": MIRROR, "base": BASE_PACKAGES,
            "installer": installer_packages(), "kernel": KERNEL_PACKAGES, "files": IMAGE_FILES,
            "masked": MASKED_UNITS, "size": IMAGE_SIZE}


def image_key() -> str:
    return hashlib.sha256(json.dumps(image_recipe(), sort_keys=True).encode()).hexdigest()[:16]


def _chroot(root: Path, *argv: str, timeout: float = 1800) -> None:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C.UTF-8",
           "HOME": "/root"}
    subprocess.run(["chroot", str(root), *argv], check=True, env=env, timeout=timeout)


def build_image() -> Path:
    """The cached image's folder (base.qcow2, vmlinuz, initrd.img), built when missing."""
    key = image_key()
    folder = CACHE / key
    if (folder / "done.json").is_file():
        log(f"image {key} from the cache ({folder})")
        return folder
    started = time.monotonic()
    log(f"building image {key} (once; about 10-25 minutes on 2 cores without KVM)")
    work = CACHE / f"{key}.partial"
    shutil.rmtree(work, ignore_errors=True)
    rootfs = work / "root"
    rootfs.mkdir(parents=True)
    try:
        steps: dict[str, float] = {}
        t = time.monotonic()
        packages = sorted(set(BASE_PACKAGES) | set(installer_packages()))
        subprocess.run(["debootstrap", "--arch=arm64", "--variant=minbase", f"--include={','.join(packages)}",
                        SUITE, str(rootfs), MIRROR], check=True, timeout=3600)
        steps["debootstrap"] = time.monotonic() - t
        for rel, text in IMAGE_FILES.items():
            path = rootfs / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        t = time.monotonic()
        _chroot(rootfs, "apt-get", "install", "-y", "-q", "--no-install-recommends", *KERNEL_PACKAGES)
        steps["kernel and initramfs"] = time.monotonic() - t
        _chroot(rootfs, "systemctl", "enable", "systemd-networkd.service")
        _chroot(rootfs, "systemctl", "mask", *MASKED_UNITS)
        _chroot(rootfs, "passwd", "-d", "root")
        _chroot(rootfs, "apt-get", "clean")
        boot = rootfs / "boot"
        (kernel,) = sorted(boot.glob("vmlinuz-*"))
        (initrd,) = sorted(boot.glob("initrd.img-*"))
        shutil.copy2(kernel, work / "vmlinuz")
        shutil.copy2(initrd, work / "initrd.img")
        t = time.monotonic()
        raw = work / "root.ext4"
        subprocess.run(["mkfs.ext4", "-q", "-L", "rootfs", "-d", str(rootfs), str(raw), IMAGE_SIZE], check=True)
        subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(work / "base.qcow2")], check=True)
        raw.unlink()
        steps["disk image"] = time.monotonic() - t
        shutil.rmtree(rootfs)
        (work / "done.json").write_text(json.dumps(
            {"key": key, "recipe": image_recipe(), "kernel": kernel.name, "seconds": round(time.monotonic() - started),
             "steps": {k: round(v, 1) for k, v in steps.items()}}, indent=2, default=list) + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        work.rename(folder)
    except BaseException:
        log(f"image build failed; the partial build stays in {work} for a look (the next run starts it afresh)")
        raise
    log(f"image {key} built in {time.monotonic() - started:.0f} s: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in steps.items()))
    return folder


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dev.pivm", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build-only", action="store_true", help="only build (or find) the cached image")
    args = p.parse_args(argv)
    ensure_host_tools()
    build_image()
    if args.build_only:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())

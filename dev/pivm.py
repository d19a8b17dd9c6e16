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
   ``deskpulse-kiosk doctor`` passes, except what a VM cannot have (the Pi's GPIO
   header, its under-voltage flags, NTP), which it reports as such;
3. captures the screen through QMP and compares it with the kiosk's own
   ``screenshot`` of the same view at 800x480;
4. taps a face through the virtual tablet (QMP ``input-send-event``) and sees
   the answer stored once in a ``deskpulse-central`` on the host and confirmed
   in the guest's outbox;
5. with the host's broker frozen, cuts the power right after a thank-you, boots
   again, and sees that answer delivered once; stops the kiosk's main loop (SIGSTOP) and sees the watchdog
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
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
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
              "update-binfmts": "binfmt-support", "mosquitto": "mosquitto", "socat": "socat"}
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



# ---------------------------------------------------------------------- talking to the VM


class Serial:
    """The guest's serial console on a unix socket, read all the time (a console nobody reads stalls the
    guest for tens of seconds), logged to a file and kept for :meth:`wait_for`."""

    def __init__(self, path: Path, log_path: Path) -> None:
        self.sock = _connect_unix(path)
        self.log = open(log_path, "ab", buffering=0)
        self.text = ""
        self.cond = threading.Condition()
        self.closed = False
        threading.Thread(target=self._drain, name="serial-drain", daemon=True).start()

    def _drain(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            self.log.write(data)
            with self.cond:
                self.text += data.decode("utf-8", "replace").replace("\r", "")
                self.cond.notify_all()
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def mark(self) -> int:
        with self.cond:
            return len(self.text)

    def wait_for(self, pattern: str, timeout: float, since: int = 0) -> re.Match[str]:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                found = regex.search(self.text, since)
                if found:
                    return found
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    tail = self.text[-600:]
                    raise Failed(f"the serial console did not show {pattern!r} within {timeout:.0f} s; "
                                 f"its last lines:\n{tail}")
                self.cond.wait(min(left, 1.0))

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode())


class Shell:
    """The root shell on the serial console (autologin): commands with their output and exit status."""

    PROMPT = r"root@deskpulse-pi:[^\n]*# "

    def __init__(self, serial: Serial) -> None:
        self.serial = serial

    def login(self, timeout: float, since: int = 0) -> None:
        self.serial.wait_for(self.PROMPT, timeout, since)
        # Quiet: no echo, no prompt, no kernel lines and no systemd status lines in the outputs.
        self.serial.send("stty -echo -onlcr cols 500; export PS1='' TERM=dumb SYSTEMD_PAGER='' SYSTEMD_COLORS=0; "
                         "dmesg -n 1; kill -SIGRTMIN+21 1\n")
        self.run("true", timeout=30)

    def run(self, command: str, timeout: float = 120, check: bool = False) -> tuple[int, str]:
        token = uuid.uuid4().hex[:10]
        since = self.serial.mark()
        self.serial.send(f"{command}\nprintf '\\n__RC_%s_%s__\\n' {token} $?\n")
        found = self.serial.wait_for(rf"__RC_{token}_(\d+)__", timeout, since)
        out = self.serial.text[since:found.start()].strip("\n")
        rc = int(found.group(1))
        if check and rc != 0:
            raise Failed(f"in the guest, {command!r} exited {rc}:\n{out[-3000:]}")
        return rc, out

    def read_file(self, path: str, timeout: float = 120) -> bytes:
        """A file of the guest, through base64 on the console."""
        import base64

        rc, out = self.run(f"base64 -w 100 {path}", timeout=timeout)
        if rc != 0:
            raise Failed(f"cannot read {path} in the guest: {out}")
        lines = [line.strip() for line in out.splitlines()]
        return base64.b64decode("".join(x for x in lines if re.fullmatch(r"[A-Za-z0-9+/=]+", x)))


class Qmp:
    """QEMU's machine protocol on a unix socket: screen captures, input events, reset, quit."""

    def __init__(self, path: Path) -> None:
        self.sock = _connect_unix(path)
        self.file = self.sock.makefile("rwb", buffering=0)
        self._read()  # the greeting
        self.execute("qmp_capabilities")

    def _read(self) -> dict[str, object]:
        while True:
            line = self.file.readline()
            if not line:
                raise Failed("QEMU closed its QMP socket")
            msg = json.loads(line)
            if "event" not in msg:
                return dict(msg)

    def execute(self, command: str, **arguments: object) -> object:
        self.file.write(json.dumps({"execute": command, "arguments": arguments}).encode() + b"\n")
        reply = self._read()
        if "error" in reply:
            raise Failed(f"QMP {command}: {reply['error']}")
        return reply.get("return")

    def screendump(self, path: Path) -> Path:
        self.execute("screendump", filename=str(path), format="png")
        return path

    def tap(self, x: int, y: int, size: tuple[int, int]) -> None:
        """A touch at (x, y) of the screen, on the virtual tablet (absolute axes 0..32767)."""
        ax = round(x * 32767 / (size[0] - 1))
        ay = round(y * 32767 / (size[1] - 1))
        move = [{"type": "abs", "data": {"axis": "x", "value": ax}},
                {"type": "abs", "data": {"axis": "y", "value": ay}}]
        self.execute("input-send-event", events=move)
        self.execute("input-send-event", events=[{"type": "btn", "data": {"down": True, "button": "left"}}])
        time.sleep(0.15)  # a finger rests a moment (QEMU's events are not a test's synchronisation)
        self.execute("input-send-event", events=[{"type": "btn", "data": {"down": False, "button": "left"}}])


def _connect_unix(path: Path, timeout: float = 30) -> socket.socket:
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(path))
            return sock
        except OSError:
            sock.close()
            if time.monotonic() > deadline:
                raise Failed(f"QEMU's socket {path} did not open within {timeout:.0f} s") from None
            time.sleep(0.1)


# ---------------------------------------------------------------------- the host side


class Host:
    """A private Mosquitto (dynamic security) and deskpulse-central on this machine's loopback."""

    SITE, DEVICE = "pi-vm", "front-desk"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.procs: list[subprocess.Popen[bytes]] = []
        self.broker: object = None

    def start(self) -> Path:
        """Start both; return the kiosk's provisioning file (made by ``deskpulse-central device add``)."""
        from dev.broker import Mosquitto, free_port

        broker = Mosquitto(self.folder / "mosquitto", dynsec=True).start()
        self.broker = broker
        self.port = broker.port
        (self.folder / "admin.password").write_text(broker.admin_password + "\n")
        self.db = self.folder / "central.sqlite3"
        self.web = f"127.0.0.1:{free_port()}"
        conf = self.folder / "central.toml"

        def write_conf(credentials: str) -> None:
            conf.write_text(
                f'[broker]\nurl = "{broker.url}"\n{credentials}\n'
                f'[database]\nurl = "sqlite:///{self.db}"\n\n[web]\nbind = "{self.web}"\n\n'
                f'[fleet]\nadmin_password_file = "{self.folder}/admin.password"\n'
                f'device_broker_url = "mqtt://{GUEST_BROKER[0]}:{GUEST_BROKER[1]}"\n')

        central = [sys.executable, "-m", "central.cli"]
        env = dict(os.environ, PYTHONPATH=str(ROOT))

        def cli(*args: str) -> None:
            done = subprocess.run(central + list(args), env=env, cwd=self.folder, capture_output=True, text=True,
                                  check=False)
            if done.returncode != 0:
                raise Failed(f"deskpulse-central {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")

        # As docs/security.md has it: the collectors' clients first, then central runs as one of them.
        write_conf("")
        (self.folder / "secrets").mkdir(mode=0o750, exist_ok=True)
        cli("broker", "setup", "-c", str(conf), "--secrets-dir", str(self.folder / "secrets"))
        cli("migrate", "-c", str(conf))
        secret = self.folder / "secrets" / "deskpulse-central.password"
        write_conf(f'username = "deskpulse-central"\npassword_file = "{secret}"\n')
        log_file = open(self.folder / "central.log", "ab")
        self.procs.append(subprocess.Popen(central + ["run", "-c", str(conf)], env=env, cwd=self.folder,
                                           stdout=log_file, stderr=log_file))
        log_file.close()
        provision = self.folder / f"{self.SITE}.{self.DEVICE}.provision.toml"
        cli("device", "add", f"{self.SITE}/{self.DEVICE}", "-c", str(conf), "--out", str(provision))
        return provision

    def freeze_broker(self, frozen: bool) -> None:
        """SIGSTOP (or SIGCONT) the private Mosquitto: connections stay open, nothing is answered."""
        import signal

        proc = getattr(self.broker, "proc", None)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGSTOP if frozen else signal.SIGCONT)

    def stored(self) -> list[tuple[str, int]]:
        """The answers central stored from the VM's kiosk: (id, rating), oldest first."""
        if not self.db.exists():
            return []
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5) as conn:
            try:
                return [(str(i), int(r)) for i, r in conn.execute(
                    "SELECT id, rating FROM events WHERE site = ? AND device = ? ORDER BY ingest_id",
                    (self.SITE, self.DEVICE))]
            except sqlite3.OperationalError:
                return []

    def wait_stored(self, count: int, timeout: float) -> list[tuple[str, int]]:
        deadline = time.monotonic() + timeout
        while True:
            got = self.stored()
            if len(got) >= count or time.monotonic() > deadline:
                return got
            time.sleep(0.25)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        if self.broker is not None:
            self.broker.stop()  # type: ignore[attr-defined]


# ---------------------------------------------------------------------- the machine


class Machine:
    """One QEMU process booting a copy-on-write overlay of the cached image."""

    SIZE = (800, 480)

    def __init__(self, image: Path, folder: Path, media: Path, broker_port: int) -> None:
        self.folder = folder
        self.overlay = folder / "overlay.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image / "base.qcow2"), "-F", "qcow2",
                        str(self.overlay)], check=True)
        sockets = Path(tempfile.mkdtemp(prefix="pivm-"))  # unix socket paths must be short
        self.serial_sock, self.qmp_sock = sockets / "serial", sockets / "qmp"
        relay = f"cmd:socat - TCP:127.0.0.1:{broker_port}"
        self.argv = [
            "qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a72", "-smp", "2", "-m", "2048",
            "-accel", "tcg,thread=multi", "-nodefaults", "-display", "none",
            "-kernel", str(image / "vmlinuz"), "-initrd", str(image / "initrd.img"), "-append", KERNEL_CMDLINE,
            "-drive", f"file={self.overlay},if=none,id=root,format=qcow2",
            "-device", "virtio-blk-pci,drive=root",
            "-drive", f"file={media},if=none,id=media,format=raw",
            "-device", "virtio-blk-pci,drive=media",
            "-device", f"virtio-gpu-pci,xres={self.SIZE[0]},yres={self.SIZE[1]}",
            "-device", "virtio-tablet-pci",
            "-netdev", f"user,id=net0,restrict=on,guestfwd=tcp:{GUEST_BROKER[0]}:{GUEST_BROKER[1]}-{relay}",
            "-device", "virtio-net-pci,netdev=net0,romfile=",  # no PXE ROM: the kernel is given
            "-chardev", f"socket,id=ser0,path={self.serial_sock},server=on,wait=off",
            "-serial", "chardev:ser0",
            "-qmp", f"unix:{self.qmp_sock},server=on,wait=off",
        ]
        (folder / "qemu-command.txt").write_text(" ".join(self.argv) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> tuple[Serial, Shell, Qmp]:
        out = open(self.folder / "qemu.log", "ab")
        self.proc = subprocess.Popen(self.argv, stdout=out, stderr=out, stdin=subprocess.DEVNULL)
        out.close()
        try:
            serial = Serial(self.serial_sock, self.folder / "serial.log")
            return serial, Shell(serial), Qmp(self.qmp_sock)
        except (OSError, Failed) as exc:
            self.proc.wait(10)
            raise Failed(f"QEMU did not start ({exc}): {(self.folder / 'qemu.log').read_text()[-1000:]}") from None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.serial_sock.parent, ignore_errors=True)


def screen_difference(a: Path, b: Path, threshold: int = 40) -> float:
    """The share of pixels whose colour differs by more than ``threshold`` in a channel (0: the same picture)."""
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    import pygame

    one, two = pygame.image.load(str(a)), pygame.image.load(str(b))
    if one.get_size() != two.get_size():
        return 1.0
    x, y = pygame.image.tobytes(one, "RGB"), pygame.image.tobytes(two, "RGB")
    differ = sum(1 for i in range(0, len(x), 3)
                 if max(abs(x[i] - y[i]), abs(x[i + 1] - y[i + 1]), abs(x[i + 2] - y[i + 2])) > threshold)
    return differ / (len(x) // 3)


def face_centres(size: tuple[int, int]) -> list[tuple[int, int]]:
    """Where the kiosk draws its faces on the resting screen (the kiosk's own layout code)."""
    from device.screenshot import PANEL_MM, view_of
    from display.layout import Geometry, rating_layout

    view = view_of("attract", "en", 5)
    layout = rating_layout(Geometry(size, PANEL_MM[size], 0), 5, hint=bool(getattr(view, "hint", None)),
                           lang_button=bool(getattr(view, "lang_button", None)))
    return [t.center for t in layout.targets]


# ---------------------------------------------------------------------- the run


class Run:
    """The steps of one run, each timed; a failed step ends the run unless ``keep_going``."""

    OUTBOX_SQL = ("import sqlite3; c = sqlite3.connect('file:/var/lib/deskpulse/outbox.sqlite3?mode=ro', uri=True); "
                  "print('OUTBOX', [tuple(r) for r in c.execute('SELECT id, state FROM outbox ORDER BY seq')])")

    def __init__(self, folder: Path, keep_going: bool) -> None:
        self.folder = folder
        self.keep_going = keep_going
        self.results: list[tuple[str, str, float, str]] = []

    def step(self, name: str, fn, *args):  # type: ignore[no-untyped-def]
        log(f"step: {name}")
        t = time.monotonic()
        try:
            said = fn(*args)
        except (Failed, OSError, subprocess.SubprocessError) as exc:
            took = time.monotonic() - t
            self.results.append((name, "FAIL", took, str(exc)))
            log(f"FAIL {name} ({took:.1f} s): {exc}")
            if not self.keep_going:
                raise
            return None
        took = time.monotonic() - t
        self.results.append((name, "ok", took, str(said or "")))
        log(f"ok   {name} ({took:.1f} s){': ' + str(said) if said else ''}")
        return said

    def summary(self) -> str:
        lines = [f"{'step':50} {'result':6} {'seconds':>8}  notes"]
        for name, result, took, said in self.results:
            first = said.splitlines()[0] if said else ""
            lines.append(f"{name:50} {result:6} {took:8.1f}  {first[:140]}")
        return "\n".join(lines)


def guest_outbox(shell: Shell) -> list[tuple[str, int]]:
    rc, out = shell.run(f'runuser -u deskpulse -- /opt/deskpulse/venv/bin/python -c "{Run.OUTBOX_SQL}"')
    found = re.search(r"OUTBOX (\[.*\])", out)
    if rc != 0 or not found:
        raise Failed(f"cannot read the guest's outbox: {out[-800:]}")
    import ast

    return [(str(i), int(s)) for i, s in ast.literal_eval(found.group(1))]


def unit_state(shell: Shell) -> dict[str, str]:
    _, out = shell.run("systemctl show deskpulse-kiosk -p ActiveState -p SubState -p NRestarts -p MainPID "
                       "-p ExecMainStartTimestampMonotonic -p ActiveEnterTimestampMonotonic -p Result")
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def wait_active(shell: Shell, timeout: float, restarts_above: int = -1) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        state = unit_state(shell)
        if (state.get("ActiveState") == "active" and state.get("SubState") == "running"
                and int(state.get("NRestarts", "0")) > restarts_above):
            return state
        if time.monotonic() > deadline:
            _, journal = shell.run("journalctl -u deskpulse-kiosk -n 40 --no-pager")
            raise Failed(f"deskpulse-kiosk is not active (running) after {timeout:.0f} s: {state}\n{journal}")
        time.sleep(1)


def wait_screen(qmp: Qmp, reference: Path, out: Path, timeout: float, what: str, share: float = 0.02) -> float:
    """Capture the screen until it shows ``reference`` (at most ``share`` of pixels differ); the seconds taken."""
    t = time.monotonic()
    while True:
        qmp.screendump(out)
        if screen_difference(reference, out) <= share:
            return time.monotonic() - t
        if time.monotonic() - t > timeout:
            raise Failed(f"the screen did not show {what} within {timeout:.0f} s (see {out} and {reference})")
        time.sleep(0.2)


def probe_acceleration(shell: Shell, qmp: Qmp, hint: str, captures: Path) -> str:
    """Restart the unit with SDL_FRAMEBUFFER_ACCELERATION set to ``hint`` ("unset": the product's own
    default; "1": SDL's own choice, the first renderer that says it is accelerated): is the screen drawn?"""
    drop_in = "/run/systemd/system/deskpulse-kiosk.service.d"
    line = ("UnsetEnvironment=SDL_FRAMEBUFFER_ACCELERATION" if hint == "unset"
            else f"Environment=SDL_FRAMEBUFFER_ACCELERATION={hint}")
    shell.run(f"mkdir -p {drop_in} && printf '[Service]\\n{line}\\n' > {drop_in}/probe.conf && "
              "systemctl daemon-reload && systemctl restart deskpulse-kiosk", timeout=120)
    try:
        wait_active(shell, timeout=60)
    except Failed:
        return "the kiosk did not start"
    out = captures / f"probe-{hint}.png"
    deadline = time.monotonic() + 20
    while True:
        qmp.screendump(out)
        if not is_black(out):
            return "drawn"
        if time.monotonic() > deadline:
            return "black"
        time.sleep(0.5)


def is_black(path: Path) -> bool:
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    import pygame

    data = pygame.image.tobytes(pygame.image.load(str(path)), "RGB")
    return max(data) < 16


def run_vm(image: Path, folder: Path, keep_going: bool, probe: bool = False) -> int:
    """Boot the image, install, tap, cut the power, hang the loop; print the timed summary."""
    import dev.bundle as bundle

    run = Run(folder, keep_going)
    host = Host(folder / "host")
    machine: Machine | None = None
    started = time.monotonic()
    try:
        media = folder / "media"
        media.mkdir()

        def prepare() -> str:
            archive = bundle.build(bundle.TARGETS["kiosk-bookworm-arm64"], folder / "dist")
            shutil.copy2(archive, media / archive.name)
            provision = host.start()
            shutil.copy2(provision, media / "kiosk.provision.toml")
            subprocess.run(["mkfs.ext4", "-q", "-L", "media", "-d", str(media), str(folder / "media.ext4"), "256M"],
                           check=True)
            return f"{archive.name}; Mosquitto on 127.0.0.1:{host.port}, central on {host.web}"
        run.step("bundle, host broker and central, provisioning", prepare)
        machine = Machine(image, folder, folder / "media.ext4", host.port)
        serial, shell, qmp = machine.start()

        def boot() -> str:
            assert machine is not None and machine.proc is not None
            try:
                shell.login(timeout=240)
            except Failed:
                if machine.proc.poll() is not None:
                    raise Failed(f"QEMU exited {machine.proc.returncode}: "
                                 f"{(folder / 'qemu.log').read_text()[-1000:]}") from None
                raise
            _, kernel = shell.run("uname -rm; python3 --version; . /etc/os-release; echo $PRETTY_NAME")
            return " / ".join(kernel.splitlines())
        run.step("boot to a root shell", boot)

        def install() -> str:
            shell.run("mkdir -p /media/usb && mount -o ro /dev/vdb /media/usb && tar -C /root -xzf "
                      "/media/usb/deskpulse-*.tar.gz", check=True, timeout=120)
            # As an ops person would, offline: the guest has no route but the broker's.
            rc, out = shell.run("/root/deskpulse-*/systemd/install.sh kiosk --provision "
                                "/media/usb/kiosk.provision.toml > /root/install.log 2>&1; rc=$?; "
                                "tail -n 25 /root/install.log; exit_code=$rc; (exit $rc)", timeout=900)
            (folder / "install.log").write_text(out + "\n")
            if rc != 0:
                raise Failed(f"install.sh exited {rc}:\n{out}")
            return out.splitlines()[-1] if out else ""
        run.step("install from the bundle (install.sh --provision)", install)

        def ready() -> str:
            state = wait_active(shell, timeout=180)
            if state.get("NRestarts") != "0":
                _, journal = shell.run("journalctl -u deskpulse-kiosk -n 60 --no-pager")
                raise Failed(f"the unit needed {state['NRestarts']} restarts to get going:\n{journal}")
            took = (int(state["ActiveEnterTimestampMonotonic"]) - int(state["ExecMainStartTimestampMonotonic"])) / 1e6
            _, notify = shell.run("journalctl -u deskpulse-kiosk -o cat --no-pager | grep -m1 'kiosk ' ")
            return f"READY (Type=notify) {took:.1f} s after start, first start; {notify.strip()[:100]}"
        run.step("unit READY on its first start", ready)

        def doctor() -> str:
            rc, out = shell.run("/opt/deskpulse/venv/bin/deskpulse-kiosk doctor --json", timeout=120)
            (folder / "doctor.json").write_text(out + "\n")
            found = re.search(r"\{.*\}", out, re.DOTALL)
            if not found:
                raise Failed(f"doctor printed no JSON (rc {rc}):\n{out}")
            checks = {c["name"]: c for c in json.loads(found.group(0))["checks"]}
            # What a VM cannot have: the Pi's GPIO header (nothing configured here), the firmware's
            # under-voltage flags (vcgencmd), and NTP (the guest's network reaches only the broker).
            vm_cannot = {"gpio", "power", "clock"}
            bad = {n: c for n, c in checks.items() if c["status"] != "ok" and n not in vm_cannot}
            if bad:
                raise Failed("doctor: " + "; ".join(f"{n}: {c['status']}: {c['says']}" for n, c in bad.items()))
            rc, lg = shell.run("/opt/deskpulse/venv/bin/python -c 'import lgpio, gpiozero; print(lgpio.__file__)'")
            if rc != 0:
                raise Failed(f"the bundle's lgpio wheel does not import on aarch64: {lg}")
            notes = [f"{n}: {c['status']} ({c['says']})" for n, c in checks.items() if n in vm_cannot]
            return "all ok but what a VM cannot have: " + "; ".join(notes) + "; lgpio wheel imports"
        run.step("deskpulse-kiosk doctor", doctor)

        captures = folder / "captures"
        captures.mkdir()
        rest = captures / "vm-rest-800x480.png"

        thanks = captures / "kiosk-own-screenshot-thanks-800x480.png"

        def screen() -> str:
            qmp.screendump(rest)
            own = captures / "kiosk-own-screenshot-attract-800x480.png"
            for name, path in (("attract", own), ("thanks", thanks)):
                shell.run(f"rm -f /tmp/own.png; SDL_VIDEODRIVER=kmsdrm /opt/deskpulse/venv/bin/deskpulse-kiosk "
                          f"screenshot --screen {name} --size 800x480 --out /tmp/own.png", check=True, timeout=120)
                path.write_bytes(shell.read_file("/tmp/own.png"))
            difference = screen_difference(rest, own)
            if difference > 0.02:
                raise Failed(f"the screen differs from the kiosk's own screenshot in {difference:.1%} of its "
                             f"pixels (see {rest} and {own})")
            return f"the VM's screen matches the kiosk's own screenshot ({difference:.2%} of pixels differ)"
        run.step("screen shows the rating screen (QMP screendump)", screen)

        faces = face_centres(Machine.SIZE)

        def tap() -> str:
            t = time.monotonic()
            qmp.tap(*faces[4], Machine.SIZE)  # Very good
            wait_screen(qmp, thanks, captures / "vm-thanks-800x480.png", 30, "the thank-you")
            got = host.wait_stored(1, timeout=60)
            stored_s = time.monotonic() - t
            if [r for _, r in got] != [5]:
                raise Failed(f"central stored {got}, not the one answer 5")
            deadline = time.monotonic() + 60
            while (outbox := guest_outbox(shell)) != [(got[0][0], 2)]:
                if time.monotonic() > deadline:
                    raise Failed(f"the guest's outbox is {outbox}, not the stored answer confirmed (state 2)")
                time.sleep(1)
            return f"rating 5 stored once in central {stored_s:.1f} s after the tap; confirmed in the guest's outbox"
        run.step("tap a face: stored once, confirmed", tap)

        def power_cut() -> str:
            # The faces again (the thank-you ends by itself), then a tap, and the power goes at its thank-you.
            wait_screen(qmp, rest, captures / "vm-rest-again-800x480.png", 30, "the faces again")
            # The broker is frozen first, so the answer is still only in the outbox when the power goes
            # (the kiosk delivers in about a second otherwise, before the cut).
            host.freeze_broker(True)
            try:
                since = serial.mark()
                qmp.tap(*faces[3], Machine.SIZE)  # Good
                wait_screen(qmp, thanks, captures / "vm-thanks-before-cut-800x480.png", 30, "the thank-you")
                before = len(host.stored())
                qmp.execute("system_reset")  # the power goes at the thank-you
            finally:
                host.freeze_broker(False)
            shell.login(timeout=240, since=since)
            wait_active(shell, timeout=180)
            got = host.wait_stored(2, timeout=120)
            time.sleep(3)  # a duplicate would follow within the kiosk's resend interval
            got = host.stored()
            if sorted(r for _, r in got) != [4, 5] or len({i for i, _ in got}) != 2:
                raise Failed(f"after the power cut central has {got}, not the answers 5 and 4 once each")
            outbox = guest_outbox(shell)
            if sorted(outbox) != sorted((i, 2) for i, _ in got):
                raise Failed(f"after the power cut the guest's outbox is {outbox}")
            when = "before the cut" if before == 2 else "after the cut"
            return (f"the answer reached central {when} (broker frozen at the tap); stored once; "
                    "the outbox kept it through the cut and confirmed it")
        run.step("power cut at the thank-you, boot again", power_cut)

        def watchdog() -> str:
            state = unit_state(shell)
            pid, restarts = state["MainPID"], int(state["NRestarts"])
            t = time.monotonic()
            shell.run(f"kill -STOP {pid}", check=True)
            new = wait_active(shell, timeout=120, restarts_above=restarts)
            _, journal = shell.run("journalctl -u deskpulse-kiosk --no-pager | grep -i -m1 watchdog")
            if "watchdog" not in journal.lower():
                raise Failed(f"the unit restarted, but the journal names no watchdog: {journal}")
            return f"stopped PID {pid}; watchdog restarted it as PID {new['MainPID']} in {time.monotonic() - t:.0f} s"
        run.step("SIGSTOP: the watchdog restarts the unit", watchdog)

        def security() -> str:
            _, out = shell.run("systemd-analyze security --no-pager deskpulse-kiosk.service", timeout=120)
            (folder / "systemd-analyze-security.txt").write_text(out + "\n")
            print(out, flush=True)
            overall = re.search(r"Overall exposure level for \S+: (.*)", out)
            if not overall:
                raise Failed(f"systemd-analyze security printed no overall level:\n{out[-1000:]}")
            return overall.group(1)
        run.step("systemd-analyze security deskpulse-kiosk", security)
        if probe:
            def acceleration() -> str:
                seen = []
                for hint in ("unset", "1", "opengl", "opengles2", "software"):
                    seen.append(f"{hint}: {probe_acceleration(shell, qmp, hint, captures)}")
                shell.run("rm -rf /run/systemd/system/deskpulse-kiosk.service.d; systemctl daemon-reload; "
                          "systemctl restart deskpulse-kiosk", timeout=120)
                return "; ".join(seen)
            run.step("SDL_FRAMEBUFFER_ACCELERATION probe", acceleration)
        qmp.screendump(captures / "vm-end-800x480.png")
        shell.serial.send("systemctl poweroff\n")
    except (Failed, OSError) as exc:
        if not run.results or run.results[-1][1] == "ok":  # failed between steps: say so
            run.results.append(("(between steps)", "FAIL", 0.0, str(exc)))
    finally:
        if machine is not None:
            machine.stop()
        host.stop()
    total = time.monotonic() - started
    print("\n" + run.summary(), flush=True)
    ok = bool(run.results) and all(r == "ok" for _, r, _, _ in run.results)
    print(f"\npi-vm-test {'passed' if ok else 'FAILED'} in {total:.0f} s; serial log, captures and outputs in "
          f"{folder}", flush=True)
    (folder / "summary.txt").write_text(run.summary() + f"\ntotal {total:.0f} s\n")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dev.pivm", description=__doc__.split("\n\n")[0],
                                epilog="The first run builds the image (10-25 minutes); later runs reuse it.")
    p.add_argument("--build-only", action="store_true", help="only build (or find) the cached image")
    p.add_argument("--keep-going", action="store_true", help="run every step even after one failed")
    p.add_argument("--probe-acceleration", action="store_true",
                   help="also restart the kiosk with each SDL_FRAMEBUFFER_ACCELERATION value and say which draw")
    p.add_argument("--out", type=Path, default=ROOT / "build" / "pi-vm",
                   help="where each run's folder goes (default build/pi-vm/)")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("pi-vm-test needs root (debootstrap, chroot, mkfs): run it with sudo", file=sys.stderr)
        return 2
    t = time.monotonic()
    try:
        ensure_host_tools()
        image = build_image()
    except (Failed, subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        print(f"pi-vm-test: {exc}", file=sys.stderr)
        return 1
    log(f"image ready after {time.monotonic() - t:.0f} s")
    if args.build_only:
        return 0
    folder = args.out / time.strftime("%Y%m%d-%H%M%S")
    folder.mkdir(parents=True)
    return run_vm(image, folder, args.keep_going, args.probe_acceleration)


if __name__ == "__main__":
    sys.exit(main())

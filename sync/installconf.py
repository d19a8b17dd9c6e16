"""The installer's configuration step: ``kiosk.toml`` / ``central.toml`` and their secrets.

``systemd/install.sh`` runs it with the system's ``python3`` (it imports only the
standard library and :mod:`sync.provision`, :mod:`sync.slugs`), before or without
the venv::

    python3 -m sync.installconf kiosk --group deskpulse --set broker.url=mqtts://mqtt.example:8883

What it promises:

* a new file gets the defaults (``--default``) and the given keys (``--set``);
* an existing file changes exactly the keys given, line by line (comments and
  every other key stay as they are), and says for each whether it changed;
* the file is ``0640 root:GROUP`` (the service's group reads it, nobody else);
  a wrong owner or mode is put right and said;
* the MQTT password (``--password-stdin`` or the provisioning file) goes to
  ``mqtt-password`` (``0640 root:GROUP``), written only when it differs;
* ``--provision FILE`` (from ``deskpulse-central device add``) gives the site,
  device, broker URL, user, password and CA;
* ``--root DIR`` puts every file under DIR (paths inside the files stay the target's).
"""

from __future__ import annotations

import argparse
import grp
import json
import os
import re
import stat
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sync import provision as provisioning
from sync.errors import ConfigError

ETC = Path("/etc/deskpulse")
CONFIG_MODE = 0o640

#: The keys the installer may set, per role (everything else is edited by hand).
KEYS: dict[str, frozenset[str]] = {
    "kiosk": frozenset({"device.site", "device.name", "device.data_dir", "broker.url", "broker.username",
                        "broker.password_file", "broker.ca_file"}),
    "central": frozenset({"broker.url", "broker.username", "broker.password_file", "broker.ca_file",
                          "database.url", "web.bind"}),
}


#: The order of keys in a new file.
_ORDER = ("device.site", "device.name", "device.data_dir", "broker.url", "broker.username", "broker.password_file",
          "broker.ca_file", "database.url", "web.bind")


class InstallError(Exception):
    """A value or an existing file the installer cannot work with; the message says which."""


@dataclass
class Report:
    """What the step did, one line each, in order."""

    lines: list[str] = field(default_factory=list)

    def say(self, line: str) -> None:
        self.lines.append(line)
        print(line, flush=True)


def toml_value(value: str) -> str:
    """A string as a TOML basic string."""
    return json.dumps(value, ensure_ascii=False)


_HEADER = re.compile(r"^\s*\[\s*([A-Za-z0-9_.-]+)\s*\]\s*(#.*)?$")
_ARRAY_HEADER = re.compile(r"^\s*\[\[")


def _key_line(key: str) -> re.Pattern[str]:
    return re.compile(rf"^\s*{re.escape(key)}\s*=")


def edit(text: str, section: str, key: str, value: str) -> str:
    """``text`` with ``section.key`` set to the string ``value``; every other line unchanged.

    Raises:
        InstallError: the key's current value spans several lines (edit it by hand).
    """
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    new_line = f"{key} = {toml_value(value)}\n"
    start = None
    for i, line in enumerate(lines):
        m = _HEADER.match(line)
        if m and m.group(1) == section and not _ARRAY_HEADER.match(line):
            start = i
            break
    if start is None:
        tail = [] if not lines or lines[-1].strip() == "" else ["\n"]
        return "".join(lines + tail + [f"[{section}]\n", new_line])
    end = len(lines)
    for i in range(start + 1, len(lines)):
        if _HEADER.match(lines[i]) or _ARRAY_HEADER.match(lines[i]):
            end = i
            break
    pattern = _key_line(key)
    for i in range(start + 1, end):
        if pattern.match(lines[i]):
            rest = lines[i].split("=", 1)[1].strip()
            if rest.startswith(('"""', "'''", "[", "{")) and not _single_line_value(rest):
                raise InstallError(f"{section}.{key} spans several lines: change it by hand")
            lines[i] = new_line
            return "".join(lines)
    last = start
    for i in range(start + 1, end):
        if lines[i].strip():
            last = i
    lines.insert(last + 1, new_line)
    return "".join(lines)


def _single_line_value(rest: str) -> bool:
    try:
        tomllib.loads(f"v = {rest}")
    except tomllib.TOMLDecodeError:
        return False
    return True


def current(data: dict[str, Any], dotted: str) -> Any:
    """The value at ``section.key`` in parsed TOML, or None."""
    section, key = dotted.split(".", 1)
    table = data.get(section)
    return table.get(key) if isinstance(table, dict) else None


def _parse(text: str, where: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InstallError(f"{where}: not valid TOML ({exc}): fix it or move it away, then run again") from None


def write_config(path: Path, changes: list[tuple[str, str]], defaults: list[tuple[str, str]],
                 report: Report) -> bool:
    """Create ``path`` with defaults and changes, or change exactly ``changes`` in it.

    Returns:
        Whether the file is new.
    """
    if not path.exists():
        text = ""
        values = dict(_unique([*defaults, *changes]))
        order = [k for k in _ORDER if k in values] + [k for k in values if k not in _ORDER]
        for dotted, value in ((k, values[k]) for k in order):
            section, key = dotted.split(".", 1)
            text = edit(text, section, key, value)
        _write_atomic(path, text)
        report.say(f"{path}: written ({', '.join(order)})")
        return True
    text = path.read_text("utf-8")
    data = _parse(text, path)
    before = text
    for dotted, value in changes:
        old = current(data, dotted)
        if old == value:
            report.say(f"{path}: {dotted} unchanged ({value!r})")
            continue
        section, key = dotted.split(".", 1)
        text = edit(text, section, key, value)
        data = _parse(text, path)
        report.say(f"{path}: {dotted} {'set to' if old is None else f'changed from {old!r} to'} {value!r}")
    if text != before:
        _write_atomic(path, text)
    elif not changes:
        report.say(f"{path}: kept as it is (no option changes it)")
    return False


def _unique(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    seen: dict[str, str] = {}
    for k, v in pairs:
        seen[k] = v
    return list(seen.items())


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    st = path.stat() if path.exists() else None
    if st is not None:  # keep the owner; the mode is put right by ensure_owner
        try:
            os.chown(tmp, st.st_uid, st.st_gid)
        except PermissionError:
            pass
        tmp.chmod(stat.S_IMODE(st.st_mode))
    tmp.replace(path)


def ensure_owner(path: Path, gid: int | None, mode: int, report: Report | None) -> None:
    """Give ``path`` owner root (when we are root), group ``gid`` and ``mode``; say what was put right.

    Args:
        path: the file.
        gid: its group; None: keep the group it has.
        mode: its permission bits.
        report: where to say what was put right; None for a file just written.
    """
    st = path.stat()
    want_uid = 0 if os.geteuid() == 0 else st.st_uid
    want_gid = st.st_gid if gid is None else gid
    fixed = []
    if (st.st_uid, st.st_gid) != (want_uid, want_gid):
        os.chown(path, want_uid, want_gid)
        fixed.append(f"owner {st.st_uid}:{st.st_gid} -> {want_uid}:{want_gid}")
    if stat.S_IMODE(st.st_mode) != mode:
        path.chmod(mode)
        fixed.append(f"mode {stat.S_IMODE(st.st_mode):04o} -> {mode:04o}")
    if fixed and report is not None:
        report.say(f"{path}: put right: {', '.join(fixed)}")


def write_secret(path: Path, text: str, gid: int | None, what: str, report: Report) -> None:
    """Write a secret file (0640 root:GROUP) only when its content differs."""
    old = path.read_text("utf-8") if path.exists() else None
    if old == text:
        report.say(f"{path}: {what} unchanged")
        ensure_owner(path, gid, CONFIG_MODE, report)
        return
    provisioning.write_private(path, text, gid)
    ensure_owner(path, gid, CONFIG_MODE, None)
    report.say(f"{path}: {what} {'written' if old is None else 'replaced'}")


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or "." not in key:
        raise argparse.ArgumentTypeError(f"{text!r}: write SECTION.KEY=VALUE")
    return key.strip(), value


def main(argv: list[str] | None = None) -> int:
    """Run the configuration step; returns the exit status (0 done, 2 a bad value or file)."""
    p = argparse.ArgumentParser(prog="python3 -m sync.installconf",
                                description="The installer's configuration step (see systemd/install.sh).")
    p.add_argument("role", choices=sorted(KEYS))
    p.add_argument("--root", type=Path, default=Path("/"), help="the target's root (default /)")
    p.add_argument("--group", required=True, help="the service's group, which may read the files")
    p.add_argument("--set", dest="changes", type=_pair, action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="a key to set (created or changed)")
    p.add_argument("--default", dest="defaults", type=_pair, action="append", default=[],
                   metavar="SECTION.KEY=VALUE", help="a key for a new file only")
    p.add_argument("--provision", type=Path, metavar="FILE", help="a provisioning file (kiosk)")
    p.add_argument("--password-stdin", action="store_true", help="read the MQTT password as one line on stdin")
    args = p.parse_args(argv)
    report = Report()
    try:
        return run(args, report)
    except (InstallError, ConfigError) as exc:
        print(f"install.sh: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"install.sh: {exc}", file=sys.stderr)
        return 1


def run(args: argparse.Namespace, report: Report) -> int:
    """The step itself (see the module's docstring)."""
    etc = args.root / ETC.relative_to("/")
    conf = etc / f"{args.role}.toml"
    try:
        gid: int | None = grp.getgrnam(args.group).gr_gid
    except KeyError:
        if args.root == Path("/"):
            raise InstallError(f"group {args.group!r} does not exist (the user step should have made it)") from None
        gid = None
        report.say(f"group {args.group!r} does not exist here: files keep this user's group "
                   "(a --root install for another machine)")
    for dotted, _ in [*args.changes, *args.defaults]:
        if dotted not in KEYS[args.role]:
            raise InstallError(f"the installer does not set {dotted} (it sets {', '.join(sorted(KEYS[args.role]))})")
    changes: list[tuple[str, str]] = []  # the provisioning file's, then the options' (which win)
    password: str | None = None
    if args.provision is not None:
        prov = provisioning.load(args.provision)
        changes += [("device.site", prov.site), ("device.name", prov.device), ("broker.url", prov.broker_url),
                    ("broker.username", prov.username)]
        password = prov.password
        if prov.ca_pem is not None:
            etc.mkdir(parents=True, exist_ok=True)
            ca = etc / "ca.crt"
            pem = prov.ca_pem if prov.ca_pem.endswith("\n") else prov.ca_pem + "\n"
            if not ca.exists() or ca.read_text("utf-8") != pem:
                ca.write_text(pem, "utf-8")
                report.say(f"{ca}: CA certificate written")
            ensure_owner(ca, 0 if os.geteuid() == 0 else None, 0o644, None)
            changes.append(("broker.ca_file", str(ETC / "ca.crt")))
    elif args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise InstallError("no MQTT password on standard input")
    if password is not None:
        changes.append(("broker.password_file", str(ETC / "mqtt-password")))
    changes += args.changes
    etc.mkdir(parents=True, exist_ok=True)
    if password is not None:
        write_secret(etc / "mqtt-password", password + "\n", gid, "MQTT password", report)
    new = write_config(conf, _unique(changes), list(args.defaults), report)
    ensure_owner(conf, gid, CONFIG_MODE, None if new else report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

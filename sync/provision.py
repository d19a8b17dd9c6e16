"""The provisioning file: what ``deskpulse-central device add`` hands to a kiosk's installer.

One small TOML file per device, mode 0600, carried to the Pi (a USB stick, scp)
and given to ``systemd/install.sh kiosk --provision FILE``::

    # DeskPulse provisioning for hotel-berlin/front-desk (secret: it holds the MQTT password)
    [device]
    site = "hotel-berlin"
    name = "front-desk"

    [broker]
    url = "mqtts://mqtt.example:8883"
    username = "hotel-berlin.front-desk"
    password = "…"
    ca = \"\"\"-----BEGIN CERTIFICATE-----…\"\"\"   # optional: the CA the broker's certificate is signed by

Central writes it (:func:`render`); the kiosk's side reads it (:func:`load`)
and turns it into files and configuration keys (:func:`install`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sync.broker import parse_broker_url
from sync.configfile import TableReader, read_toml
from sync.slugs import SLUG_RE


@dataclass(frozen=True, slots=True)
class Provision:
    """One device's identity and broker credentials."""

    site: str
    device: str
    broker_url: str
    username: str
    password: str
    ca_pem: str | None = None
    source: str = "<provision>"


def _toml_string(value: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    import json

    return json.dumps(value, ensure_ascii=False)


def render(p: Provision) -> str:
    """The provisioning file's text."""
    lines = [
        f"# DeskPulse provisioning for {p.site}/{p.device}, made by deskpulse-central device add.",
        "# Secret: it holds the device's MQTT password. Install it with",
        "#   sudo systemd/install.sh kiosk --provision THIS-FILE",
        "# then delete it.",
        "[device]",
        f"site = {_toml_string(p.site)}",
        f"name = {_toml_string(p.device)}",
        "",
        "[broker]",
        f"url = {_toml_string(p.broker_url)}",
        f"username = {_toml_string(p.username)}",
        f"password = {_toml_string(p.password)}",
    ]
    if p.ca_pem is not None:
        lines.append(f"ca = {_toml_string(p.ca_pem)}")
    return "\n".join(lines) + "\n"


def write(p: Provision, path: Path) -> None:
    """Write the file with mode 0600; an existing file is never overwritten.

    Raises:
        FileExistsError: ``path`` exists.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(render(p))


def load(path: Path) -> Provision:
    """Read and check a provisioning file.

    Raises:
        ConfigError: naming the file, the key and what is wrong.
    """
    source = str(path)
    data = read_toml(path)
    top = TableReader(source, data, "", {"device", "broker"})
    dev = TableReader(source, top.get("device", dict, {}), "device.", {"site", "name"})
    br = TableReader(source, top.get("broker", dict, {}), "broker.", {"url", "username", "password", "ca"})

    def required(reader: TableReader, key: str) -> str:
        value: str | None = reader.get(key, str, None)
        if not value:
            raise reader.fail(key, "is missing (is this a file from 'deskpulse-central device add'?)")
        return value

    site, device = required(dev, "site"), required(dev, "name")
    for key, value in (("site", site), ("name", device)):
        if not SLUG_RE.fullmatch(value):
            raise dev.fail(key, f"must be a slug of a-z, 0-9 and '-' (1 to 64), got {value!r}")
    url = required(br, "url")
    parse_broker_url(url, where=f"{source}: broker.url")
    ca = br.get("ca", str, None)
    if ca is not None and "-----BEGIN CERTIFICATE-----" not in ca:
        raise br.fail("ca", "is not a PEM certificate (no BEGIN CERTIFICATE line)")
    return Provision(site=site, device=device, broker_url=url, username=required(br, "username"),
                     password=required(br, "password"), ca_pem=ca, source=source)


def install(p: Provision, etc: Path, *, group_id: int | None = None) -> dict[str, dict[str, Any]]:
    """Write the password (and the CA) next to the kiosk's configuration; return its keys.

    Args:
        p: the provisioning.
        etc: the configuration folder (``/etc/deskpulse``).
        group_id: the group that may read the password file (the service's); None: keep the caller's.

    Returns:
        ``{"device": {...}, "broker": {...}}``: the keys ``kiosk.toml`` needs.
    """
    password_file = etc / "mqtt-password"
    write_private(password_file, p.password + "\n", group_id)
    broker: dict[str, Any] = {"url": p.broker_url, "username": p.username, "password_file": str(password_file)}
    if p.ca_pem is not None:
        ca_file = etc / "ca.crt"
        ca_file.write_text(p.ca_pem if p.ca_pem.endswith("\n") else p.ca_pem + "\n", "utf-8")
        ca_file.chmod(0o644)
        broker["ca_file"] = str(ca_file)
    return {"device": {"site": p.site, "name": p.device}, "broker": broker}


def write_private(path: Path, text: str, group_id: int | None = None) -> None:
    """Write ``text`` to ``path`` as 0640 (group ``group_id``), replacing it atomically."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    if group_id is not None:
        os.chown(tmp, -1, group_id)
    tmp.chmod(0o640)
    tmp.replace(path)


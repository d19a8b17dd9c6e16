"""Mosquitto's dynamic-security plugin for a DeskPulse fleet: roles from the protocol's topics.

Where :mod:`sync.acl` writes a static ``acl_file``, a broker with the
dynamic-security plugin (shipped with Debian's mosquitto 2.0) keeps clients,
roles and passwords itself and changes them at run time through the
``$CONTROL/dynamic-security/v1`` topic. This module says *what* to create,
from the protocol's own topic names; ``central.fleet`` sends it to the broker.

* a device: client ``{site}.{device}`` with its client id bound to the same
  name (another device's password cannot take it over), and a role of its
  own with exactly its topics;
* the collectors: client ``deskpulse-central`` (several processes, each with
  its own client id, so none is bound), role ``deskpulse-collector``;
* the dashboard: client ``deskpulse-dashboard``, role ``deskpulse-dashboard``
  (survey configurations and alerts out, statuses in);
* the administrator: client ``deskpulse-admin`` (the name is configurable),
  role ``deskpulse-admin``: the plugin's control topics, and clearing a retired
  device's retained status and configuration.

The plugin's defaults deny publishing and subscribing and allow receiving,
so a client gets only what its role grants. :func:`initial_config` writes the
plugin's first file with the administrator in it, so nobody has to pass a
password to ``mosquitto_ctrl`` on a command line.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from pathlib import Path
from typing import Any, Final

from sync import protocol

#: The plugin's control topic and the topic it answers on.
CONTROL_TOPIC: Final = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC: Final = "$CONTROL/dynamic-security/v1/response"

ADMIN_ROLE: Final = "deskpulse-admin"
COLLECTOR_ROLE: Final = "deskpulse-collector"
DASHBOARD_ROLE: Final = "deskpulse-dashboard"
COLLECTOR_CLIENT: Final = "deskpulse-central"
DASHBOARD_CLIENT: Final = "deskpulse-dashboard"
DEFAULT_ADMIN: Final = "deskpulse-admin"

#: The plugin's password hash: PBKDF2-HMAC-SHA512, 64 bytes, 12-byte salt, 101 rounds (its defaults).
_ITERATIONS: Final = 101
_SALT_BYTES: Final = 12

Acl = dict[str, Any]


def device_name(site: str, device: str) -> str:
    """A device's MQTT user name, client id and role name: ``{site}.{device}``."""
    return f"{protocol.check_slug(site, 'site')}.{protocol.check_slug(device, 'device')}"


def device_role(site: str, device: str) -> str:
    """The role holding one device's topics."""
    return f"deskpulse-device.{device_name(site, device)}"


def _acl(kind: str, topic: str) -> Acl:
    return {"acltype": kind, "topic": topic, "priority": 0, "allow": True}


def device_acls(site: str, device: str) -> list[Acl]:
    """Exactly the topics of one device: publish feedback and status, read receipts and configs."""
    return [
        _acl("publishClientSend", protocol.feedback_topic(site, device)),
        _acl("publishClientSend", protocol.status_topic(site, device)),
        *(_acl("subscribeLiteral", topic) for topic in (
            protocol.receipt_topic(site, device),
            protocol.device_config_topic(site, device),
            protocol.site_config_topic(site),
            protocol.CENTRAL_STATUS_TOPIC,
        )),
    ]


def collector_acls() -> list[Acl]:
    """Central's collectors: every feedback and status in; receipts, configs, alerts, central status out."""
    root = protocol.TOPIC_ROOT
    return [
        _acl("subscribePattern", protocol.FEEDBACK_FILTER),
        # Mosquitto checks a shared subscription with its $share/GROUP/ prefix; any group.
        _acl("subscribePattern", protocol.shared(protocol.FEEDBACK_FILTER, "+")),
        _acl("subscribePattern", protocol.STATUS_FILTER),
        _acl("subscribeLiteral", protocol.CENTRAL_STATUS_TOPIC),
        _acl("publishClientSend", f"{root}/+/+/receipt"),
        _acl("publishClientSend", f"{root}/+/config"),
        _acl("publishClientSend", f"{root}/+/+/config"),
        _acl("publishClientSend", f"{root}/+/alerts"),
        _acl("publishClientSend", protocol.CENTRAL_STATUS_TOPIC),
    ]


def dashboard_acls() -> list[Acl]:
    """The dashboard: survey configurations and alerts out; statuses and alerts in."""
    root = protocol.TOPIC_ROOT
    return [
        _acl("publishClientSend", f"{root}/+/config"),
        _acl("publishClientSend", f"{root}/+/+/config"),
        _acl("publishClientSend", f"{root}/+/alerts"),
        _acl("subscribePattern", protocol.STATUS_FILTER),
        _acl("subscribePattern", f"{root}/+/alerts"),
        _acl("subscribeLiteral", protocol.CENTRAL_STATUS_TOPIC),
    ]


def admin_acls() -> list[Acl]:
    """The administrator: the plugin's control topics, and clearing retained device topics."""
    root = protocol.TOPIC_ROOT
    return [
        _acl("publishClientSend", "$CONTROL/dynamic-security/#"),
        _acl("publishClientReceive", "$CONTROL/dynamic-security/#"),
        _acl("subscribePattern", "$CONTROL/dynamic-security/#"),
        _acl("publishClientSend", f"{root}/+/+/status"),
        _acl("publishClientSend", f"{root}/+/+/config"),
    ]


def new_password() -> str:
    """A random MQTT password (32 URL-safe characters, 192 bits)."""
    return secrets.token_urlsafe(24)


def password_hash(password: str, salt: bytes | None = None) -> dict[str, Any]:
    """The plugin's stored form of a password: base64 hash and salt, and the iteration count."""
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _ITERATIONS, 64)
    return {"password": base64.b64encode(digest).decode(), "salt": base64.b64encode(salt).decode(),
            "iterations": _ITERATIONS}


def initial_config(admin: str, password: str) -> dict[str, Any]:
    """The plugin's first configuration file: the administrator alone, everything else denied.

    Args:
        admin: the administrator's user name.
        password: its password (stored hashed).
    """
    return {
        "defaultACLAccess": {"publishClientSend": False, "publishClientReceive": True,
                             "subscribe": False, "unsubscribe": True},
        "clients": [{"username": admin, "textName": "DeskPulse broker administrator",
                     **password_hash(password), "roles": [{"rolename": ADMIN_ROLE}]}],
        "groups": [],
        "roles": [{"rolename": ADMIN_ROLE, "acls": admin_acls()}],
    }


def write_initial_config(path: Path, admin: str, password: str) -> None:
    """Write :func:`initial_config` to ``path`` (mode 0600: it holds a password hash).

    Raises:
        FileExistsError: ``path`` exists (the broker's clients would be lost).
    """
    text = json.dumps(initial_config(admin, password), indent=2) + "\n"
    with open(path, "x", encoding="utf-8") as out:
        path.chmod(0o600)
        out.write(text)

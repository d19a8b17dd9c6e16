"""Mosquitto ACL for a DeskPulse fleet, generated from the protocol's own topic names.

Each device gets its own user (``{site}.{device}``, the same as its client id)
that may only publish its own ``feedback`` and ``status`` and only read its own
``receipt`` and ``config``, its site's ``config`` and ``_central/status``.
Central's user reads every feedback and status and writes receipts, configs,
alerts and ``_central/status``.

    python -m sync.acl --central deskpulse-central hotel-berlin/front-desk hotel-berlin/bar > deskpulse.acl

See docs/security.md for the whole broker setup (TLS, passwords, this ACL).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable

from sync import protocol


def device_user(site: str, device: str) -> str:
    """The MQTT user name (and client id) of a device."""
    return f"{protocol.check_slug(site, 'site')}.{protocol.check_slug(device, 'device')}"


def device_rules(site: str, device: str) -> list[str]:
    """ACL lines for one device."""
    return [
        f"user {device_user(site, device)}",
        f"topic write {protocol.feedback_topic(site, device)}",
        f"topic write {protocol.status_topic(site, device)}",
        f"topic read {protocol.receipt_topic(site, device)}",
        f"topic read {protocol.device_config_topic(site, device)}",
        f"topic read {protocol.site_config_topic(site)}",
        f"topic read {protocol.CENTRAL_STATUS_TOPIC}",
    ]


def central_rules(user: str) -> list[str]:
    """ACL lines for central's collectors (all of them share one user)."""
    root = protocol.TOPIC_ROOT
    return [
        f"user {user}",
        f"topic read {protocol.FEEDBACK_FILTER}",
        f"topic read {protocol.STATUS_FILTER}",
        f"topic write {root}/+/+/receipt",
        f"topic write {root}/+/config",
        f"topic write {root}/+/+/config",
        f"topic write {root}/+/alerts",
        f"topic readwrite {protocol.CENTRAL_STATUS_TOPIC}",
    ]


def acl_text(devices: Iterable[tuple[str, str]], central_user: str = "deskpulse-central") -> str:
    """A whole ACL file: central's user, then one block per device."""
    blocks = [central_rules(central_user)] + [device_rules(site, device) for site, device in devices]
    header = "# DeskPulse ACL, made by `python -m sync.acl`; regenerate it when devices change.\n"
    return header + "\n\n".join("\n".join(block) for block in blocks) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sync.acl",
        description="Print a Mosquitto acl_file that confines each DeskPulse device to its own topics.",
    )
    parser.add_argument("devices", nargs="+", metavar="SITE/DEVICE", help="e.g. hotel-berlin/front-desk")
    parser.add_argument("--central", default="deskpulse-central", metavar="USER",
                        help="central's MQTT user (default deskpulse-central)")
    args = parser.parse_args(argv)
    pairs = []
    for item in args.devices:
        site, sep, device = item.partition("/")
        if not sep:
            parser.error(f"{item!r}: write devices as SITE/DEVICE")
        try:
            pairs.append((protocol.check_slug(site, "site"), protocol.check_slug(device, "device")))
        except ValueError as exc:
            parser.error(str(exc))
    sys.stdout.write(acl_text(pairs, args.central))
    return 0


if __name__ == "__main__":
    sys.exit(main())

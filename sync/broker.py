"""Broker connection settings shared by the device sender and central's collector.

A broker is named by URL: ``mqtt://host:port`` (plain) or ``mqtts://host:port``
(TLS). Credentials and certificate paths come from the configuration files,
never from the command line.
"""

from __future__ import annotations

import random
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from sync.errors import ConfigError

if TYPE_CHECKING:  # paho is imported when a client is made: the installer reads configs with bare python3
    import paho.mqtt.client as mqtt


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    """Where and how to connect to the MQTT broker."""

    host: str = "127.0.0.1"
    port: int = 1883
    tls: bool = False
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    keepalive: int = 30

    @property
    def url(self) -> str:
        """The broker URL without credentials (safe to log)."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def parse_broker_url(url: str, *, where: str = "broker.url") -> tuple[str, int, bool]:
    """Split ``mqtt://host:port`` or ``mqtts://host:port`` into host, port and TLS.

    Raises:
        ConfigError: naming ``where`` and what is wrong.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ConfigError(f"{where}: {url!r} must start with mqtt:// or mqtts://")
    if parts.username or parts.password:
        raise ConfigError(f"{where}: put credentials in broker.username/password_file, not the URL")
    if not parts.hostname:
        raise ConfigError(f"{where}: {url!r} names no host")
    tls = parts.scheme == "mqtts"
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        raise ConfigError(f"{where}: {url!r} has an invalid port") from None
    return parts.hostname, port, tls


def make_client(client_id: str, settings: BrokerSettings, *, lean_read: bool = False) -> mqtt.Client:
    """A paho client for MQTT 5 with VERSION2 callbacks, TLS and credentials applied.

    The caller sets its callbacks, last will and ``manual_ack`` before connecting.
    ``lean_read``: a :class:`sync.leanread.LeanReadClient`, which receives QoS 1
    messages without properties at about two thirds of paho's cost (the collector).
    """
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    if lean_read:
        from sync.leanread import LeanReadClient

    client = (LeanReadClient if lean_read else mqtt.Client)(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
    )
    if settings.username is not None:
        client.username_pw_set(settings.username, settings.password)
    if settings.tls:
        client.tls_set(
            ca_certs=str(settings.ca_file) if settings.ca_file else None,
            certfile=str(settings.cert_file) if settings.cert_file else None,
            keyfile=str(settings.key_file) if settings.key_file else None,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
    return client


def backoff_delay(attempt: int, *, base: float = 1.0, cap: float = 60.0, jitter: bool = True) -> float:
    """Exponential reconnect delay with full jitter.

    paho's ``reconnect_delay_set`` only doubles; a fleet that reconnects on the
    same schedule stampedes a restarted broker, so each device draws a random
    delay in ``[base/2, min(cap, base * 2**attempt)]``. ``jitter=False`` gives
    the ceiling itself: only the reconnect-storm bench asks for it, to show the
    stampede jitter prevents (no configuration file can turn jitter off).
    """
    ceiling = min(cap, base * (2 ** max(0, attempt)))
    if not jitter:
        return float(ceiling)
    return random.uniform(min(base / 2, ceiling), ceiling)

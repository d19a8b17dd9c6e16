"""A device's retained status reports, read from the broker as central's health view reads them."""

from __future__ import annotations

import json
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from dev.broker import Mosquitto
from sync import protocol


class StatusWatcher:
    """Collects the device's retained status reports, as central's health view would."""

    def __init__(self, broker: Mosquitto, site: str, device: str) -> None:
        self.reports: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="status-watcher", protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(protocol.status_topic(site, device), qos=1)
        self.client.loop_start()
        assert subscribed.wait(10), "no SUBACK for the status topic"

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.reports.append(json.loads(message.payload))

    def alarms(self) -> list[set[str]]:
        """The alarm codes of each online report so far, oldest first."""
        with self.lock:
            return [{a["code"] for a in r["health"]["alarms"]} for r in self.reports if r["state"] == "online"]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

"""A device's retained status reports, read from the broker as central's health view reads them."""

from __future__ import annotations

import json

from dev.broker import Mosquitto
from sync import protocol
from tests.support.mqtt_client import MqttClient


class StatusWatcher(MqttClient):
    """Subscribed (SUBACK seen) to one device's status topic; keeps every report.

    Args:
        broker: the test's Mosquitto.
        site: the device's site slug.
        device: the device slug.
    """

    def __init__(self, broker: Mosquitto, site: str, device: str) -> None:
        self.topic = protocol.status_topic(site, device)
        super().__init__(broker, subscribe=[self.topic])

    def alarms(self) -> list[set[str]]:
        """The alarm codes of each online report so far, oldest first."""
        reports = [json.loads(p) for p in self.payloads(self.topic)]
        return [{a["code"] for a in r["health"]["alarms"]} for r in reports if r["state"] == "online"]

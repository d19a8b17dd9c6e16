"""Device health in the store, from retained status messages and last wills, through a real Mosquitto.

Runs on SQLite, and on PostgreSQL when DESKPULSE_TEST_PG_URL is set.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from central import reads
from central.config import from_dict
from central.ingest import Collector
from central.store import Store
from sync import protocol
from tests.support.broker import Mosquitto
from tests.support.central_rows import dead_letter_rows, get_event
from tests.support.events import feedback_event, raw
from tests.support.mqtt_client import FakeDevice
from tests.support.wait import until, wait_for

SITE = "test-site"


def status(device: str, state: str = "online", *, site: str = SITE, **health: Any) -> dict[str, Any]:
    """A status as a kiosk sends it (validated), with ``health`` when given."""
    body: dict[str, Any] = {"schema": 1, "site": site, "device": device, "state": state,
                            "ts": protocol.utc_timestamp(), "version": "0.9.1"}
    if health:
        body["health"] = health
    protocol.validate("status", body)
    return body



def start_collector(broker: Mosquitto, store: Store, client_id: str = "collector-1") -> Collector:
    config = from_dict({"broker": {"url": broker.url, "keepalive": 5, "client_id": client_id},
                        "ingest": {"batch_ms": 20}})
    collector = Collector(config, store).start()
    assert collector.wait_subscribed(10), "the collector did not subscribe"
    return collector


def health_of(store: Store, device: str) -> dict[str, Any] | None:
    return next((r for r in reads.device_rows(store) if r["device"] == device), None)


def test_a_retained_status_sent_before_central_started_becomes_the_devices_health(
        broker: Mosquitto, store: Store) -> None:
    client = FakeDevice(broker, "desk-1")
    health = {"backlog": 7, "oldest_pending_age_s": 42.5, "clock_synced": False, "last_error": "broker refused",
              "config_error": {"version": 3, "reason": "scale 7 is not 3, 4 or 5"}, "epoch": protocol.uuid7()}
    client.publish(client.status_topic, json.dumps(status("desk-1", **health)).encode(), retain=True)
    collector = start_collector(broker, store)  # retained: a plain subscription gets it at once
    try:
        row = until(lambda: health_of(store, "desk-1"), what="the device's health in the store")
        assert row["state"] == "online" and row["version"] == "0.9.1"
        assert row["backlog"] == 7 and row["oldest_pending_age_s"] == 42.5
        assert row["clock_synced"] is False and row["last_error"] == "broker refused"
        assert row["config_error"] == {"version": 3, "reason": "scale 7 is not 3, 4 or 5"}
        assert row["health"] == health
        assert protocol.parse_timestamp(row["last_seen"]).tzinfo is not None
    finally:
        collector.stop()
        client.close()


def test_the_last_will_marks_a_device_offline_and_keeps_its_last_health(broker: Mosquitto, store: Store) -> None:
    collector = start_collector(broker, store)
    client = FakeDevice(broker, "desk-2", will=True)
    try:
        client.publish(client.status_topic, json.dumps(status("desk-2", backlog=3, clock_synced=True)).encode(),
                       retain=True)
        wait_for(lambda: (health_of(store, "desk-2") or {}).get("state") == "online", what="desk-2 online")
        # The device vanishes without a DISCONNECT (power cut): the broker sends its will.
        client.vanish()
        row = until(lambda: (r := health_of(store, "desk-2")) and r["state"] == "offline" and r,
                       timeout=15, what="the last will to mark desk-2 offline")
        assert row["backlog"] == 3 and row["clock_synced"] is True  # the last known health stays
        assert row["version"] == "0.9.1"
    finally:
        collector.stop()


@pytest.mark.parametrize(("name", "topic_device", "payload", "reason"), [
    ("body names another device", "desk-3", json.dumps(status("desk-9")).encode(), "topic"),
    ("bool backlog", "desk-3", json.dumps(status("desk-3") | {"health": {"backlog": True}}).encode(), "backlog"),
    ("unknown state", "desk-3", json.dumps(status("desk-3") | {"state": "sleeping"}).encode(), "state"),
    ("NaN age", "desk-3", json.dumps(status("desk-3") | {"health": {"oldest_pending_age_s": float("nan")}}).encode(),
     "NaN"),
    ("bad UTF-8", "desk-3", b'{"schema":1,"site":"test-site","device":"desk-3","state":"\xff"}', "UTF-8"),
    ("duplicate keys", "desk-3", b'{"schema":1,"site":"test-site","device":"desk-3","state":"online",'
                                 b'"state":"offline"}', "duplicate"),
])
def test_an_invalid_status_is_dead_lettered_and_ingest_goes_on(
        broker: Mosquitto, store: Store, name: str, topic_device: str, payload: bytes, reason: str) -> None:
    collector = start_collector(broker, store)
    client = FakeDevice(broker, topic_device)
    try:
        topic = client.status_topic
        client.publish(topic, payload)
        letters = until(lambda: dead_letter_rows(store), what=f"the {name} status dead-lettered")
        assert letters[0]["topic"] == topic and letters[0]["raw"] == payload
        assert reason.lower() in letters[0]["reason"].lower(), letters[0]["reason"]
        assert health_of(store, topic_device) is None and health_of(store, "desk-9") is None
        # The collector goes on: a valid status and a valid answer after it are kept.
        client.publish(topic, json.dumps(status(topic_device, backlog=1)).encode())
        event = feedback_event(device=topic_device)
        client.send(raw(event))
        wait_for(lambda: get_event(store, event["id"]), what="the next valid answer stored")
        wait_for(lambda: health_of(store, topic_device), what="the next valid status kept")
        assert collector.stats.statuses_refused == 1
    finally:
        collector.stop()
        client.close()


def test_two_collectors_keep_one_row_per_device(broker: Mosquitto, store: Store) -> None:
    first, second = start_collector(broker, store, "collector-1"), start_collector(broker, store, "collector-2")
    client = FakeDevice(broker, "desk-4")
    try:
        for backlog in (1, 2, 3):
            client.publish(client.status_topic, json.dumps(status("desk-4", backlog=backlog)).encode(), retain=True)
        wait_for(lambda: first.stats.statuses >= 3 and second.stats.statuses >= 3, what="both collectors")
        rows = [r for r in reads.device_rows(store) if r["device"] == "desk-4"]
        assert len(rows) == 1 and rows[0]["backlog"] == 3
    finally:
        first.stop()
        second.stop()
        client.close()

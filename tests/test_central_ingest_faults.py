"""The collector under faults, against a real Mosquitto and a real SQLite file.

An impossible date, a database that is gone for a while, and one of two
collectors going away: nothing is lost, nothing is confirmed too early, and
central stays announced online.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from central import reads
from central.config import CentralConfig, from_dict
from central.ingest import Collector, receipt_payloads
from central.store import Store
from sync import protocol
from tests.support.broker import Mosquitto
from tests.support.central_rows import dead_letter_rows, get_event
from tests.support.events import feedback_event, raw
from tests.support.wait import wait_for

SITE, DEVICE = "test-site", "desk-1"


class Listener:
    """A raw paho client: publishes as a device, records its receipts and central's status."""

    def __init__(self, broker: Mosquitto, name: str) -> None:
        self.receipts: list[dict] = []
        self.central: list[str] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.subscribe([(protocol.receipt_topic(SITE, DEVICE), 1), (protocol.CENTRAL_STATUS_TOPIC, 1)])
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self.lock:
            if message.topic == protocol.CENTRAL_STATUS_TOPIC:
                self.central.append(json.loads(message.payload)["state"])
            else:
                self.receipts.extend(protocol.decode("receipt", message.payload))

    def publish(self, payload: bytes) -> None:
        self.client.publish(protocol.feedback_topic(SITE, DEVICE), payload, qos=1).wait_for_publish(5)

    def outcomes(self, id_: str) -> list[str]:
        with self.lock:
            return [r["outcome"] for r in self.receipts if r["id"] == id_]

    def close(self) -> None:
        self.client.disconnect()  # wakes the network thread, so loop_stop() returns at once
        self.client.loop_stop()


def config_for(broker: Mosquitto, client_id: str) -> CentralConfig:
    return from_dict({"broker": {"url": broker.url, "keepalive": 5, "client_id": client_id},
                      "ingest": {"batch_ms": 20}})


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "central.sqlite3"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    with Store(f"sqlite:///{db_path}") as s:
        s.migrate()
        yield s


@pytest.fixture
def collector(broker: Mosquitto, store: Store) -> Iterator[Collector]:
    with Collector(config_for(broker, "collector-faults"), store) as c:
        assert c.wait_subscribed(5)
        yield c


@pytest.fixture
def device(broker: Mosquitto) -> Iterator[Listener]:
    d = Listener(broker, f"{SITE}.{DEVICE}")
    yield d
    d.close()


def test_an_impossible_date_is_rejected_and_does_not_spoil_its_batch(collector, store, device) -> None:
    bad = feedback_event(ts="2026-02-30T09:41:07.000Z", check=False)  # the right shape, but no such day
    good = feedback_event(seq=2)
    device.publish(raw(bad))
    device.publish(protocol.encode("feedback", good))
    wait_for(lambda: device.outcomes(good["id"]) == ["stored"], what="the good event's receipt")
    wait_for(lambda: device.outcomes(bad["id"]) == ["rejected"], what="the bad event's rejection")
    (letter,) = dead_letter_rows(store)
    assert "ts" in letter["reason"]
    assert reads.count_events(store) == 1


def test_a_database_outage_confirms_nothing_until_the_commit(collector, store, device, db_path) -> None:
    with sqlite3.connect(db_path) as db:
        db.execute("ALTER TABLE events RENAME TO events_away")  # the store fails for real
    event = feedback_event()
    device.publish(protocol.encode("feedback", event))
    wait_for(lambda: collector.stats.db_errors >= 1, what="the failed commit")
    assert device.outcomes(event["id"]) == []  # no receipt for an answer that is not stored
    with sqlite3.connect(db_path) as db:
        db.execute("ALTER TABLE events_away RENAME TO events")
    wait_for(lambda: device.outcomes(event["id"]) == ["stored"], what="the receipt after the retry")
    assert reads.count_events(store) == 1
    assert collector.stats.connected


def test_when_one_of_two_collectors_stops_central_stays_online(broker: Mosquitto, store: Store) -> None:
    first = Collector(config_for(broker, "collector-a"), store).start()
    second = Collector(config_for(broker, "collector-b"), store).start()
    watcher = Listener(broker, "watcher")
    try:
        assert first.wait_subscribed(5) and second.wait_subscribed(5)
        first.stop()  # says offline (retained) ...
        wait_for(lambda: "offline" in watcher.central, what="the first collector's offline")
        # ... and the one still running says online again.
        wait_for(lambda: watcher.central[-1] == "online", what="the second collector's online")
        event = feedback_event()
        watcher.client.publish(protocol.feedback_topic(SITE, DEVICE), protocol.encode("feedback", event), qos=1)
        wait_for(lambda: get_event(store, event["id"]) is not None, what="the survivor to store")
    finally:
        first.stop()
        second.stop()
        watcher.close()


def test_receipts_split_by_count_and_size() -> None:
    ids = [protocol.uuid7() for _ in range(2500)]
    chunks = [protocol.decode("receipt", raw) for raw in receipt_payloads({"id": i, "outcome": "stored"} for i in ids)]
    assert [len(c) for c in chunks] == [1000, 1000, 500]
    long = [{"id": i, "outcome": "rejected", "reason": "x" * 500} for i in ids[:1000]]
    payloads = list(receipt_payloads(long))
    assert len(payloads) > 1 and all(len(p) <= protocol.MAX_PAYLOAD["receipt"] for p in payloads)
    assert sum(len(protocol.decode("receipt", p)) for p in payloads) == 1000

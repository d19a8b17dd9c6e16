"""The collector against a real Mosquitto: store once, receipts, dead letters, status."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from central import reads
from central.config import from_dict
from central.ingest import Collector
from central.store import Store
from sync import protocol
from tests.support.broker import Mosquitto
from tests.support.central_rows import dead_letter_rows, get_event
from tests.support.events import feedback_event
from tests.support.wait import wait_for

SITE, DEVICE = "test-site", "desk-1"



class Device:
    """A raw paho client publishing as one device and collecting its receipts."""

    def __init__(self, broker: Mosquitto, site: str = SITE, device: str = DEVICE) -> None:
        self.site, self.device = site, device
        self.receipts: list[dict] = []
        self.central: list[dict] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{site}.{device}", protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.subscribe([(protocol.receipt_topic(site, device), 1), (protocol.CENTRAL_STATUS_TOPIC, 1)])
        self.client.loop_start()
        time.sleep(0.2)

    def _on_message(self, client, userdata, message) -> None:
        with self.lock:
            if message.topic == protocol.CENTRAL_STATUS_TOPIC:
                self.central.append(json.loads(message.payload))
            else:
                self.receipts.extend(protocol.decode("receipt", message.payload))

    def publish(self, payload: bytes, topic: str | None = None) -> None:
        topic = topic or protocol.feedback_topic(self.site, self.device)
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def outcomes(self, id_: str) -> list[str]:
        with self.lock:
            return [r["outcome"] for r in self.receipts if r["id"] == id_]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def store(tmp_path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'central.sqlite3'}")
    store.migrate()
    yield store
    store.close()


@pytest.fixture
def collector(broker: Mosquitto, store: Store) -> Iterator[Collector]:
    config = from_dict({"broker": {"url": broker.url, "keepalive": 5, "client_id": "collector-1"},
                        "ingest": {"batch_ms": 20}})
    with Collector(config, store) as c:
        wait_for(lambda: c.stats.connected, what="the collector to connect")
        yield c


@pytest.fixture
def device(broker: Mosquitto) -> Iterator[Device]:
    d = Device(broker)
    yield d
    d.close()


def test_an_event_is_stored_and_confirmed_and_replays_are_duplicates(collector, store, device) -> None:
    event = feedback_event()
    raw = protocol.encode("feedback", event)
    device.publish(raw)
    wait_for(lambda: device.outcomes(event["id"]) == ["stored"], what="a 'stored' receipt")
    for _ in range(3):
        device.publish(raw)
    wait_for(lambda: len(device.outcomes(event["id"])) == 4, what="three more receipts")
    assert device.outcomes(event["id"]) == ["stored", "duplicate", "duplicate", "duplicate"]
    assert reads.count_events(store) == 1
    assert get_event(store, event["id"])["rating"] == event["rating"]


@pytest.mark.parametrize(("name", "mangle"), [
    ("bool rating", lambda e: protocol.encode("feedback", e).replace(b'"rating":4', b'"rating":true')),
    ("float rating", lambda e: protocol.encode("feedback", e).replace(b'"rating":4', b'"rating":4.0')),
    ("not json", lambda e: b"{nope"),
    ("bad utf-8", lambda e: protocol.encode("feedback", e).replace(b'"en"', b'"\xff\xfe"')),
    ("NaN", lambda e: protocol.encode("feedback", e).replace(b'"mono_ms":123456', b'"mono_ms":NaN')),
    ("duplicate key", lambda e: protocol.encode("feedback", e).replace(b'"rating":4', b'"rating":4,"rating":5')),
    ("body names another desk", lambda e: protocol.encode("feedback", dict(e, device="desk-2"))),
    ("too large", lambda e: b" " * (protocol.MAX_PAYLOAD["feedback"] + 1)),
])
def test_invalid_payloads_are_dead_lettered_and_the_next_event_is_stored(
        collector, store, device, name, mangle) -> None:
    bad = feedback_event()
    device.publish(mangle(bad))
    good = feedback_event(seq=2)
    device.publish(protocol.encode("feedback", good))
    wait_for(lambda: device.outcomes(good["id"]) == ["stored"], what="the valid event after the bad one")
    (row,) = dead_letter_rows(store)
    assert row["reason"] and row["topic"] == protocol.feedback_topic(SITE, DEVICE)
    assert row["raw"] == mangle(bad) if name != "not json" else row["raw"] == b"{nope"
    assert get_event(store, bad["id"]) is None
    assert collector.stats.rejected == 1


def test_a_rejected_event_with_a_readable_id_gets_a_rejected_receipt(collector, device) -> None:
    bad = feedback_event()
    device.publish(protocol.encode("feedback", bad).replace(b'"rating":4', b'"rating":9'))
    wait_for(lambda: device.outcomes(bad["id"]) == ["rejected"], what="a 'rejected' receipt")
    (receipt,) = [r for r in device.receipts if r["id"] == bad["id"]]
    assert "rating" in receipt["reason"]


def test_central_status_is_retained_online_and_offline_after_stop(broker, store) -> None:
    config = from_dict({"broker": {"url": broker.url, "keepalive": 5, "client_id": "collector-2"}})
    collector = Collector(config, store).start()
    wait_for(lambda: collector.stats.connected, what="the collector to connect")
    late = Device(broker, device="desk-9")  # joins after central: sees the retained status
    try:
        wait_for(lambda: late.central and late.central[-1]["state"] == "online", what="retained online")
        collector.stop()
        wait_for(lambda: late.central[-1]["state"] == "offline", what="offline after stop")
    finally:
        collector.stop()
        late.close()


def test_a_collector_that_dies_is_marked_offline_by_its_will(broker, store, tmp_path) -> None:
    import subprocess
    import sys

    from dev.broker import free_port

    proc = subprocess.Popen([sys.executable, "-m", "central.cli", "--broker", broker.url,
                             "--db", f"sqlite:///{tmp_path / 'c2.sqlite3'}", "--bind", f"127.0.0.1:{free_port()}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    watcher = Device(broker, device="desk-8")
    try:
        wait_for(lambda: watcher.central and watcher.central[-1]["state"] == "online", timeout=30,
                 what="central online")
        proc.kill()
        proc.wait()
        wait_for(lambda: watcher.central[-1]["state"] == "offline", timeout=15, what="the will: offline")
    finally:
        if proc.poll() is None:
            proc.kill()
        watcher.close()

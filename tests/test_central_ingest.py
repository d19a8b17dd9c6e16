"""The collector against a real Mosquitto: store once, receipts, dead letters, status."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from central import reads
from central.config import from_dict
from central.ingest import Collector
from central.store import Store
from sync import protocol
from tests.support.broker import Mosquitto
from tests.support.central_rows import dead_letter_rows, get_event
from tests.support.events import feedback_event
from tests.support.mqtt_client import FakeDevice
from tests.support.wait import wait_for

SITE, DEVICE = "test-site", "desk-1"


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
        assert c.wait_subscribed(10), "the collector did not subscribe"
        yield c


@pytest.fixture
def device(broker: Mosquitto) -> Iterator[FakeDevice]:
    with FakeDevice(broker, DEVICE) as d:
        yield d


def test_an_event_is_stored_and_confirmed_and_replays_are_duplicates(collector, store, device) -> None:
    event = feedback_event()
    raw = protocol.encode("feedback", event)
    device.send(raw)
    wait_for(lambda: device.outcomes(event["id"]) == ["stored"], what="a 'stored' receipt")
    for _ in range(3):
        device.send(raw)
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
    device.send(mangle(bad))
    good = feedback_event(seq=2)
    device.send(protocol.encode("feedback", good))
    wait_for(lambda: device.outcomes(good["id"]) == ["stored"], what="the valid event after the bad one")
    (row,) = dead_letter_rows(store)
    assert row["reason"] and row["topic"] == protocol.feedback_topic(SITE, DEVICE)
    assert row["raw"] == mangle(bad) if name != "not json" else row["raw"] == b"{nope"
    assert get_event(store, bad["id"]) is None
    assert collector.stats.rejected == 1


def test_a_rejected_event_with_a_readable_id_gets_a_rejected_receipt(collector, device) -> None:
    bad = feedback_event()
    device.send(protocol.encode("feedback", bad).replace(b'"rating":4', b'"rating":9'))
    wait_for(lambda: device.outcomes(bad["id"]) == ["rejected"], what="a 'rejected' receipt")
    (receipt,) = device.receipts_for(bad["id"])
    assert "rating" in receipt["reason"]


def test_central_status_is_retained_online_and_offline_after_stop(broker, store) -> None:
    config = from_dict({"broker": {"url": broker.url, "keepalive": 5, "client_id": "collector-2"}})
    collector = Collector(config, store).start()
    wait_for(lambda: collector.stats.connected, what="the collector to connect")
    late = FakeDevice(broker, "desk-9")  # joins after central: sees the retained status
    try:
        late.wait_for(lambda: late.central_states()[-1:] == ["online"], what="retained online")
        collector.stop()
        late.wait_for(lambda: late.central_states()[-1] == "offline", what="offline after stop")
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
    watcher = FakeDevice(broker, "desk-8")
    try:
        watcher.wait_for(lambda: watcher.central_states()[-1:] == ["online"], timeout=30, what="central online")
        proc.kill()
        proc.wait()
        watcher.wait_for(lambda: watcher.central_states()[-1] == "offline", timeout=15, what="the will: offline")
    finally:
        if proc.poll() is None:
            proc.kill()
        watcher.close()

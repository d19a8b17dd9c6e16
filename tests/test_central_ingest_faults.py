"""The collector under faults, against a real Mosquitto and a real SQLite file.

An impossible date, a database that is gone for a while, and one of two
collectors going away: nothing is lost, nothing is confirmed too early, and
central stays announced online.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from central import reads
from central.config import CentralConfig, from_dict
from central.ingest import Collector, receipt_payloads
from central.store import Store
from sync import protocol
from sync.errors import ProtocolError
from tests.support.broker import Mosquitto
from tests.support.central_rows import dead_letter_rows, get_event
from tests.support.events import feedback_event, raw
from tests.support.mqtt_client import FakeDevice
from tests.support.wait import wait_for

SITE, DEVICE = "test-site", "desk-1"


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
def device(broker: Mosquitto) -> Iterator[FakeDevice]:
    with FakeDevice(broker, DEVICE, site=SITE) as d:
        yield d


def test_an_impossible_date_is_rejected_and_does_not_spoil_its_batch(collector, store, device) -> None:
    bad = feedback_event(ts="2026-02-30T09:41:07.000Z", check=False)  # the right shape, but no such day
    good = feedback_event(seq=2)
    device.send(raw(bad))
    device.send(protocol.encode("feedback", good))
    wait_for(lambda: device.outcomes(good["id"]) == ["stored"], what="the good event's receipt")
    wait_for(lambda: device.outcomes(bad["id"]) == ["rejected"], what="the bad event's rejection")
    (letter,) = dead_letter_rows(store)
    assert "ts" in letter["reason"]
    assert reads.count_events(store) == 1


def test_a_database_outage_confirms_nothing_until_the_commit(collector, store, device, db_path) -> None:
    with sqlite3.connect(db_path) as db:
        db.execute("ALTER TABLE events RENAME TO events_away")  # the store fails for real
    event = feedback_event()
    device.send(protocol.encode("feedback", event))
    wait_for(lambda: collector.stats.db_errors >= 1, what="the failed commit")
    assert device.outcomes(event["id"]) == []  # no receipt for an answer that is not stored
    with sqlite3.connect(db_path) as db:
        db.execute("ALTER TABLE events_away RENAME TO events")
    wait_for(lambda: device.outcomes(event["id"]) == ["stored"], what="the receipt after the retry")
    # A later answer's receipt comes after any other receipt for the first: there was just the one.
    later = feedback_event(seq=2)
    device.send(protocol.encode("feedback", later))
    wait_for(lambda: device.outcomes(later["id"]) == ["stored"], what="the next answer's receipt")
    assert device.outcomes(event["id"]) == ["stored"]
    assert reads.count_events(store) == 2
    assert collector.stats.connected


def test_when_one_of_two_collectors_stops_central_stays_online(broker: Mosquitto, store: Store) -> None:
    first = Collector(config_for(broker, "collector-a"), store).start()
    second = Collector(config_for(broker, "collector-b"), store).start()
    watcher = FakeDevice(broker, DEVICE, site=SITE, client_id="watcher")
    try:
        assert first.wait_subscribed(5) and second.wait_subscribed(5)
        first.stop()  # says offline (retained) ...
        watcher.wait_for(lambda: "offline" in watcher.central_states(), what="the first collector's offline")
        # ... and the one still running says online again.
        watcher.wait_for(lambda: watcher.central_states()[-1] == "online", what="the second collector's online")
        event = feedback_event()
        watcher.send(protocol.encode("feedback", event))
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


def test_plain_receipts_are_written_as_the_protocol_writes_them_and_others_are_checked() -> None:
    """The collector writes receipts of stored and duplicate answers itself (msgspec): the same bytes
    protocol.encode writes after its schema check. An item it cannot vouch for goes through the check."""
    items = [{"id": protocol.uuid7(), "outcome": "stored" if i % 3 else "duplicate"} for i in range(30)]
    (raw,) = receipt_payloads(items)
    assert raw == protocol.encode("receipt", items)
    rejected = [*items, {"id": protocol.uuid7(), "outcome": "rejected", "reason": "payload invalid at \"ts\": ü"}]
    (raw,) = receipt_payloads(rejected)
    assert raw == protocol.encode("receipt", rejected) and protocol.decode("receipt", raw) == rejected
    # An id that is not a UUIDv7 is not plain: the schema check refuses it (never sent as is).
    with pytest.raises(ProtocolError):
        list(receipt_payloads([{"id": "not-a-uuid", "outcome": "stored"}]))

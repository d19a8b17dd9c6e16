"""The sender against a real Mosquitto, with a small peer playing central.

The peer is a real MQTT client on the wire (not a mock): it subscribes to
feedback, answers with receipts and publishes the retained ``_central/status``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sync import protocol
from sync.broker import BrokerSettings
from sync.outbox import Outbox, State
from sync.sender import Sender, SenderSettings
from tests.support.broker import Mosquitto
from tests.support.mqtt_client import Message, MqttClient
from tests.support.wait import wait_for

SITE, DEVICE = "test-site", "desk-1"


def answer(rating: int = 4) -> dict:
    return {"ts": protocol.utc_timestamp(), "clock_synced": True, "boot_id": str(uuid.uuid4()),
            "mono_ms": 1000, "rating": rating, "scale": 5, "reasons": [], "lang": "en",
            "source": "touch", "survey": 0, "flags": []}


class Peer(MqttClient):
    """Plays central: receives feedback, sends receipts decided by ``outcome``; also
    watches the device's status."""

    def __init__(self, broker: Mosquitto, outcome: Callable[[dict], tuple[str, str | None] | None]) -> None:
        self.outcome = outcome
        super().__init__(broker, "peer", subscribe=[protocol.FEEDBACK_FILTER, protocol.status_topic(SITE, DEVICE)])

    def answer(self, message: Message) -> None:
        if message.topic == protocol.status_topic(SITE, DEVICE):
            return
        event = protocol.decode_feedback(message.topic, message.payload)
        result = self.outcome(event)
        if result is not None:
            item = {"id": event["id"], "outcome": result[0]}
            if result[1]:
                item["reason"] = result[1]
            self.publish_nowait(protocol.receipt_topic(event["site"], event["device"]),
                                protocol.encode("receipt", [item]))

    @property
    def received(self) -> list[dict]:
        """The feedback events received, in order."""
        return [protocol.decode_feedback(m.topic, m.payload) for m in self.messages()
                if m.topic != protocol.status_topic(SITE, DEVICE)]

    def statuses(self) -> list[dict]:
        return [json.loads(raw) for raw in self.payloads(protocol.status_topic(SITE, DEVICE))]

    def central(self, state: str) -> None:
        payload = protocol.encode("central-status", {"schema": 1, "state": state, "ts": protocol.utc_timestamp()})
        self.publish(protocol.CENTRAL_STATUS_TOPIC, payload, retain=True)


@pytest.fixture
def outbox_path(tmp_path: Path) -> Path:
    return tmp_path / "outbox.sqlite3"


@pytest.fixture
def make_sender(outbox_path: Path, broker: Mosquitto) -> Iterator[Callable[..., Sender]]:
    senders: list[Sender] = []

    def make(**settings: float) -> Sender:
        sender = Sender(outbox_path, SITE, DEVICE, BrokerSettings(broker.host, broker.port, keepalive=5),
                        SenderSettings(**settings), version="test")
        senders.append(sender.start())
        return sender

    yield make
    for sender in senders:
        sender.stop()


def states(path: Path) -> dict[str, State]:
    with Outbox(path, SITE, DEVICE) as box:
        return {r["id"]: State(r["state"]) for r in box._conn.execute("SELECT id, state FROM outbox")}


def test_receipts_confirm_and_reject_rows(broker, outbox_path, make_sender) -> None:
    peer = Peer(broker, lambda e: ("rejected", "survey 0 unknown") if e["rating"] == 1 else ("stored", None))
    peer.central("online")
    try:
        with Outbox(outbox_path, SITE, DEVICE) as box:
            good = box.append(answer(5))
            bad = box.append(answer(1))
        sender = make_sender()
        sender.notify()
        wait_for(lambda: states(outbox_path) == {good.id: State.CONFIRMED, bad.id: State.REJECTED},
                 what="receipts to settle both rows")
        with Outbox(outbox_path, SITE, DEVICE) as box:
            assert box._conn.execute("SELECT reason FROM outbox WHERE id = ?", (bad.id,)).fetchone()[0] == \
                "survey 0 unknown"
        assert sender.status.connected
    finally:
        peer.close()


def test_puback_alone_only_marks_sent_and_resend_waits_for_central(broker, outbox_path, make_sender) -> None:
    """Without a receipt a row stays SENT; it is re-published only while central says online."""
    peer = Peer(broker, lambda e: None)  # receives, never confirms
    try:
        with Outbox(outbox_path, SITE, DEVICE) as box:
            row = box.append(answer())
        make_sender(resend_after_s=0.3, status_every_s=0.2).notify()
        wait_for(lambda: states(outbox_path) == {row.id: State.SENT}, what="PUBACK to mark the row sent")
        # Several resend periods with central unknown: no re-publish. The device's own status,
        # stamped 1.5 s later, comes after anything it published before it.
        later = datetime.now(UTC) + timedelta(seconds=1.5)
        peer.wait_for(lambda: any(protocol.parse_timestamp(s["ts"]) >= later for s in peer.statuses()),
                      what="a status sent 1.5 s after the row went SENT")
        assert len(peer.received) == 1
        peer.central("online")
        wait_for(lambda: len(peer.received) >= 2, what="a re-publish once central is online")
        assert {e["id"] for e in peer.received} == {row.id}
        assert states(outbox_path) == {row.id: State.SENT}
    finally:
        peer.close()


def test_broker_restart_loses_nothing(broker, outbox_path, make_sender) -> None:
    peer_box: list[Peer] = []
    with Outbox(outbox_path, SITE, DEVICE) as box:
        ids = [box.append(answer(1 + i % 5)).id for i in range(20)]
    broker.kill()
    sender = make_sender(resend_after_s=1)
    sender.notify()
    wait_for(lambda: sender.status.last_error is not None, what="the sender to report the broker down")
    broker.start()
    peer_box.append(Peer(broker, lambda e: ("stored", None)))
    peer_box[0].central("online")
    try:
        wait_for(lambda: set(states(outbox_path).values()) == {State.CONFIRMED}, timeout=20,
                 what="every row confirmed after the broker came back")
        assert set(states(outbox_path)) == set(ids)
    finally:
        peer_box[0].close()


def test_status_is_retained_with_health_and_the_will_says_offline(broker, outbox_path, make_sender) -> None:
    sender = make_sender()
    with MqttClient(broker, "probe", subscribe=[protocol.status_topic(SITE, DEVICE)]) as probe:
        topic = protocol.status_topic(SITE, DEVICE)

        def state() -> str | None:
            return (probe.last_json(topic) or {}).get("state")

        probe.wait_for(lambda: state() == "online", what="retained online status")
        status = probe.last_json(topic)
        assert status is not None
        protocol.validate("status", status)
        assert status["health"]["backlog"] == 0
        sender.stop()
        probe.wait_for(lambda: state() == "offline", what="offline status after stop")


def test_answers_acked_before_a_collector_subscribed_go_again_when_it_announces_itself(
        broker, outbox_path, make_sender) -> None:
    """After a broker restart kiosks may be back before the collector: the broker PUBACKs their
    answers with 0x10 (no matching subscribers) and drops them. The collector's live "online",
    sent right after it subscribed, makes the sender publish them again at once, not after
    ``resend_after_s``."""
    with MqttClient(broker, "last-central") as before:  # central was online before: its status is retained
        before.publish(protocol.CENTRAL_STATUS_TOPIC, protocol.encode(
            "central-status", {"schema": 1, "state": "online", "ts": protocol.utc_timestamp()}), retain=True)
    with Outbox(outbox_path, SITE, DEVICE) as box:
        row = box.append(answer())
    sender = make_sender(resend_after_s=600)
    sender.notify()
    wait_for(lambda: states(outbox_path) == {row.id: State.SENT} and sender.status.central_online,
             what="a PUBACK (no subscriber) and central online from the retained status")
    peer = Peer(broker, lambda e: ("stored", None))  # the collector subscribes...
    try:
        peer.central("online")  # ...and says so, live
        wait_for(lambda: states(outbox_path) == {row.id: State.CONFIRMED}, timeout=10,
                 what="the answer sent again and confirmed")
        assert [e["id"] for e in peer.received] == [row.id]
    finally:
        peer.close()

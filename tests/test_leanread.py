"""sync/leanread.py: the collector's QoS 1 fast path hands over exactly what paho's own path does."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from dev.broker import Mosquitto
from sync import leanread
from sync.leanread import LeanReadClient
from tests.support.wait import wait_for
from tests.test_sync_security import make_certificates

TOPIC = "deskpulse/v1/site-a/desk-1/feedback"


def fields(m: mqtt.MQTTMessage) -> tuple[Any, ...]:
    props = m.properties
    user = getattr(props, "UserProperty", None) if props is not None else None
    return (m.topic, bytes(m.payload), m.qos, m.mid, m.retain, m.dup, user)


def handled(cls: type[mqtt.Client], header: int, packet: bytes, *, manual_ack: bool = True,
            ) -> tuple[list[mqtt.MQTTMessage], int]:
    """Run one PUBLISH packet through ``cls``'s ``_handle_publish``: the messages it dispatched, bytes queued."""
    client = cls(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.manual_ack_set(manual_ack)
    got: list[mqtt.MQTTMessage] = []
    client.on_message = lambda c, u, m: got.append(m)
    client._in_packet = {"command": header, "packet": packet}  # what _packet_read leaves for the handler
    client._handle_publish()
    return got, sum(len(p["packet"]) for p in client._out_packet)


def publish_packet(topic: bytes, mid: int, payload: bytes, props: bytes = b"\x00") -> bytes:
    return len(topic).to_bytes(2, "big") + topic + mid.to_bytes(2, "big") + props + payload


def test_the_paho_internals_it_reads_are_there() -> None:
    """Should a paho release drop them, the client falls back to paho's path: this says so first."""
    assert leanread._SUPPORTED


@pytest.mark.parametrize("header", [0x32, 0x33, 0x3A, 0x3B])  # QoS 1; retained; dup; both
@pytest.mark.parametrize("manual_ack", [True, False])
def test_a_plain_qos1_publish_is_read_as_paho_reads_it(header: int, manual_ack: bool) -> None:
    packet = publish_packet(TOPIC.encode(), 4242, b'{"schema":1}')
    lean, lean_out = handled(LeanReadClient, header, packet, manual_ack=manual_ack)
    stock, stock_out = handled(mqtt.Client, header, packet, manual_ack=manual_ack)
    assert [fields(m)[:6] for m in lean] == [fields(m)[:6] for m in stock]
    assert (lean_out, stock_out) == ((0, 0) if manual_ack else (4, 4))  # a PUBACK only without manual_ack


@pytest.mark.parametrize(("header", "packet"), [
    (0x30, len(TOPIC).to_bytes(2, "big") + TOPIC.encode() + b"\x00qos 0"),  # QoS 0: no packet id
    (0x34, publish_packet(TOPIC.encode(), 7, b"qos 2")),
    (0x32, publish_packet(TOPIC.encode(), 7, b"with a property", b"\x05\x03\x00\x02js")),  # content type
    (0x32, publish_packet(b"", 7, b"topic alias", b"\x03\x23\x00\x01")),  # empty topic, alias 1
])
def test_anything_else_goes_through_pahos_own_path(header: int, packet: bytes) -> None:
    lean, _ = handled(LeanReadClient, header, packet)
    stock, _ = handled(mqtt.Client, header, packet)
    assert [m.properties is not None for m in lean] == [m.properties is not None for m in stock]
    assert [(m.qos, m.mid, bytes(m.payload), m._topic) for m in lean] == \
        [(m.qos, m.mid, bytes(m.payload), m._topic) for m in stock]


def test_per_topic_callbacks_and_a_failing_callback_behave_as_in_paho() -> None:
    packet = publish_packet(TOPIC.encode(), 9, b"x")
    for cls in (LeanReadClient, mqtt.Client):
        client = cls(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.manual_ack_set(True)
        seen: list[str] = []
        client.on_message = lambda c, u, m, seen=seen: seen.append("any")
        client.message_callback_add("deskpulse/v1/+/+/feedback", lambda c, u, m, seen=seen: seen.append("feedback"))
        client._in_packet = {"command": 0x32, "packet": packet}
        client._handle_publish()
        client.message_callback_remove("deskpulse/v1/+/+/feedback")
        client._handle_publish()
        assert seen == ["feedback", "any"], cls

        def fail(c: mqtt.Client, u: object, m: mqtt.MQTTMessage) -> None:
            raise RuntimeError("callback failed")

        client.on_message = fail
        with pytest.raises(RuntimeError, match="callback failed"):
            client._handle_publish()


def test_a_packet_shorter_than_its_lengths_is_refused_as_paho_refuses_it() -> None:
    from paho.mqtt.client import MalformedPacket

    short = publish_packet(TOPIC.encode(), 1, b"")[:len(TOPIC) + 3]  # the packet id cut in half
    for cls in (LeanReadClient, mqtt.Client):
        with pytest.raises(MalformedPacket):
            handled(cls, 0x32, short)


@pytest.mark.parametrize("tls", [False, True])
def test_through_a_real_broker_the_messages_match_a_stock_clients(broker: Mosquitto, tmp_path: Path,
                                                                  tls: bool) -> None:
    """Retained and live, with and without properties, QoS 0 and 1, over TCP and TLS (where paho's reads
    come from TLS records): the same at both subscribers, the lean one reading from its buffer."""
    if tls:
        certs = make_certificates(tmp_path)
        broker.extra_config = f"cafile {certs['ca.crt']}\ncertfile {certs['server.crt']}\nkeyfile {certs['server.key']}"
        broker.restart()
    got: dict[str, list[tuple[Any, ...]]] = {"lean": [], "stock": []}
    subscribed: list[str] = []
    clients = []
    for name, cls in (("lean", LeanReadClient), ("stock", mqtt.Client), ("pub", mqtt.Client)):
        client = cls(CallbackAPIVersion.VERSION2, client_id=f"leanread-{name}", protocol=mqtt.MQTTv5)
        if tls:
            client.tls_set(ca_certs=str(certs["ca.crt"]))
        client.on_message = lambda c, u, m, name=name: got[name].append(
            fields(m)[:3] + fields(m)[4:5] + fields(m)[6:])
        client.on_subscribe = lambda c, u, mid, reasons, p, name=name: subscribed.append(name)
        client.connect(broker.host, broker.port)
        clients.append(client)
    *subs, pub = clients
    assert isinstance(subs[0].socket(), leanread._ReadBuffer)
    pub.loop_start()
    try:
        pub.publish("leanread/retained", b"kept", qos=1, retain=True).wait_for_publish(5)
        for sub in subs:
            sub.subscribe("leanread/#", qos=1)
            sub.loop_start()
        wait_for(lambda: sorted(subscribed) == ["lean", "stock"], what="both SUBACKs")
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.UserProperty = ("k", "v")
        sent = [pub.publish("leanread/live", f"m{i}".encode() * (1 + i % 50), qos=1) for i in range(500)]
        for info in sent:
            info.wait_for_publish(5)
        pub.publish("leanread/props", b"with", qos=1, properties=props).wait_for_publish(5)
        pub.publish("leanread/zero", b"qos0", qos=0).wait_for_publish(5)
        wait_for(lambda: min(len(got["lean"]), len(got["stock"])) >= 503, what="503 messages at each subscriber")
    finally:
        for client in clients:
            client.loop_stop()
            client.disconnect()
    assert len(got["lean"]) == 503
    assert got["lean"] == got["stock"]
    assert ("leanread/retained", b"kept", 1, True, None) in got["lean"]
    assert ("leanread/props", b"with", 1, False, [("k", "v")]) in got["lean"]


def publish_bytes(topic: bytes, payload: bytes, *, qos: int = 1, mid: int = 1, retain: bool = False,
                  dup: bool = False, props: bytes = b"\x00") -> bytes:
    """A whole MQTT 5 PUBLISH packet (fixed header, remaining length, body)."""
    body = len(topic).to_bytes(2, "big") + topic + (mid.to_bytes(2, "big") if qos else b"") + props + payload
    length, n = b"", len(body)
    while True:
        n, byte = divmod(n, 128)
        length += bytes([byte | (128 if n else 0)])
        if not n:
            break
    return bytes([0x30 | qos << 1 | dup << 3 | retain]) + length + body


def read_stream(cls: type[mqtt.Client], stream: bytes, chunks: list[int]) -> list[tuple[Any, ...]]:
    """``stream`` written to a socket pair in pieces of ``chunks`` bytes, read by ``cls``: what it dispatched."""
    import socket
    import threading

    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    client = cls(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.manual_ack_set(True)
    got: list[tuple[Any, ...]] = []
    # (a message without properties has None where paho has an empty Properties: compare what is set)
    client.on_message = lambda c, u, m: got.append(
        (m._topic, bytes(m.payload), m.qos, m.mid, m.retain, m.dup, getattr(m.properties, "ContentType", None)))
    client._sock = leanread._ReadBuffer(ours) if cls is LeanReadClient else ours

    def write() -> None:
        at = 0
        for size in chunks:
            theirs.sendall(stream[at:at + size])
            at += size
        theirs.shutdown(socket.SHUT_WR)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        deadline = time.monotonic() + 30
        while client.loop_read() == mqtt.MQTT_ERR_SUCCESS and time.monotonic() < deadline:
            pass  # until the end of the stream (paho: the connection is lost)
    finally:
        writer.join(10)
        ours.close()
        theirs.close()
    return got


def test_a_stream_of_packets_in_any_pieces_is_read_as_paho_reads_it() -> None:
    """The buffered fast path against stock paho, fed the same bytes cut anywhere: plain QoS 1
    messages of every length-field size, and QoS 0, QoS 1 with properties, retained and DUP ones."""
    import random

    rnd = random.Random(18)
    packets = []
    for i in range(400):
        kind = rnd.choice(["plain"] * 6 + ["props", "qos0", "retain", "dup", "big"])
        topic = f"deskpulse/v1/site-{i % 7}/desk-{i % 13}/feedback".encode()
        payload = bytes(rnd.randrange(256) for _ in range(rnd.choice([0, 1, 50, 126, 127, 300])))
        if kind == "big":
            payload = b"x" * rnd.choice([16_383, 16_384, 70_000])
        packets.append(publish_bytes(topic, payload, qos=0 if kind == "qos0" else 1, mid=1 + i,
                                     retain=kind == "retain", dup=kind == "dup",
                                     props=b"\x05\x03\x00\x02js" if kind == "props" else b"\x00"))
    stream = b"".join(packets)
    chunks = []
    while sum(chunks) < len(stream):
        chunks.append(rnd.choice([1, 2, 3, 7, 100, 1000, 4096, 65536]))
    lean = read_stream(LeanReadClient, stream, chunks)
    stock = read_stream(mqtt.Client, stream, chunks)
    assert len(lean) == 400
    assert lean == stock

"""A real MQTT client for tests, and a fake device built on it.

Each step waits for the broker's answer, never for a while:

* connecting returns after the CONNACK (and fails the test if it refuses);
* :meth:`MqttClient.subscribe` returns after the SUBACK, so whatever is
  published after it is delivered to this client;
* :meth:`MqttClient.publish` (QoS 1) returns after the PUBACK, so the broker
  has the message and has handed it on to every subscription in place;
* :meth:`MqttClient.sync` returns once everything the broker had queued for
  this client before the call has arrived (retained messages included): it
  sends itself a marker and waits for it to come back. Mosquitto forwards the
  messages for one client in the order it took them in, so whatever must
  not have arrived by then never will from what happened before the call.

Every message is kept, in order of arrival; ``wait_for`` waits on them.

    with MqttClient(broker, "watcher", subscribe=[protocol.CENTRAL_STATUS_TOPIC]) as c:
        c.publish(topic, payload, retain=True)
        c.wait_for(lambda: c.payloads(topic), what="the status")

    with FakeDevice(broker, "desk-1") as d:     # client id "test-site.desk-1"
        d.send(protocol.encode("feedback", event))
        d.wait_for(lambda: d.outcomes(event["id"]) == ["stored"], what="a 'stored' receipt")
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from dev.broker import Mosquitto
from sync import protocol

#: How long a test waits for one answer of the broker (CONNACK, SUBACK, PUBACK).
ACK_TIMEOUT = 20.0
_SYNC_ROOT = "deskpulse-test/sync"


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool


class MqttClient:
    """A paho client (MQTT 5) on its own network thread that waits for every acknowledgement.

    Args:
        broker: the test's Mosquitto.
        client_id: the MQTT client id (a random one when None).
        subscribe: topic filters to subscribe to (QoS 1) once connected.
        username, password: credentials, for a broker that asks for them.
        will: (topic, payload) published retained (QoS 1) by the broker if this client vanishes.

    A subclass that must answer messages as they come overrides :meth:`answer`.
    """

    def __init__(self, broker: Mosquitto, client_id: str | None = None, *, subscribe: Iterable[str] = (),
                 username: str | None = None, password: str | None = None,
                 will: tuple[str, bytes] | None = None, keepalive: int = 10) -> None:
        self.client_id = client_id or f"test-{uuid.uuid4().hex[:12]}"
        self._changed = threading.Condition()
        self._messages: list[Message] = []
        self._acks: dict[tuple[str, int], list[int]] = {}
        self._connack: int | None = None
        self._markers = itertools.count()
        self._sync_topic: str | None = None
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5)
        if username is not None:
            self.client.username_pw_set(username, password)
        if will is not None:
            self.client.will_set(will[0], will[1], qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port, keepalive=keepalive)
        self.client.loop_start()
        try:
            self._wait(lambda: self._connack is not None, ACK_TIMEOUT, f"the CONNACK of {self.client_id}")
            assert self._connack == 0, f"the broker refused {self.client_id}: reason code 0x{self._connack:02x}"
            filters = list(subscribe)
            if filters:
                self.subscribe(*filters)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ paho callbacks (network thread)

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, reason: Any,
                    props: object) -> None:
        with self._changed:
            self._connack = int(reason.value)
            self._changed.notify_all()

    def _on_subscribe(self, client: mqtt.Client, userdata: object, mid: int, reasons: list[Any],
                      props: object) -> None:
        with self._changed:
            self._acks[("sub", mid)] = [int(r.value) for r in reasons]
            self._changed.notify_all()

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int, reason: Any, props: object) -> None:
        with self._changed:
            self._acks[("pub", mid)] = [int(reason.value)]
            self._changed.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        got = Message(message.topic, bytes(message.payload), bool(message.retain))
        with self._changed:
            self._messages.append(got)
            self._changed.notify_all()
        if not got.topic.startswith(_SYNC_ROOT + "/"):
            self.answer(got)

    def answer(self, message: Message) -> None:
        """Called on the network thread with each message once it is kept; override to answer it.
        It must not wait for the broker: publish with :meth:`publish_nowait`."""

    # ------------------------------------------------------------------ waiting

    def _wait(self, condition: Callable[[], object], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not condition():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
                self._changed.wait(min(left, 0.05))  # woken by each message; other conditions polled

    def _ack(self, kind: str, mid: int, what: str) -> list[int]:
        self._wait(lambda: (kind, mid) in self._acks, ACK_TIMEOUT, what)
        with self._changed:
            return self._acks.pop((kind, mid))

    def wait_for(self, condition: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
        """Wait until ``condition`` is true: checked as each message arrives, and polled for anything else."""
        self._wait(condition, timeout, what)

    # ------------------------------------------------------------------ acting

    def subscribe(self, *filters: str, check: bool = True) -> list[int]:
        """Subscribe (QoS 1) and wait for the SUBACK; returns its reason codes (all granted, with ``check``)."""
        rc, mid = self.client.subscribe([(f, 1) for f in filters])
        assert rc == mqtt.MQTT_ERR_SUCCESS and mid is not None, f"subscribe failed: {mqtt.error_string(rc)}"
        codes = self._ack("sub", mid, f"the SUBACK for {list(filters)}")
        if check:
            assert all(c < 0x80 for c in codes), f"the broker refused a subscription to {list(filters)}: {codes}"
        return codes

    def publish(self, topic: str, payload: bytes | str, *, retain: bool = False, check: bool = True) -> int:
        """Publish with QoS 1 and wait for the PUBACK; returns its reason code (below 0x80, with ``check``)."""
        info = self.publish_nowait(topic, payload, retain=retain)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, f"publish failed: {mqtt.error_string(info.rc)}"
        (code,) = self._ack("pub", info.mid, f"the PUBACK for {topic}")
        if check:
            assert code < 0x80, f"the broker refused a publish on {topic}: 0x{code:02x}"
        return code

    def publish_nowait(self, topic: str, payload: bytes | str, *, retain: bool = False) -> mqtt.MQTTMessageInfo:
        """Publish with QoS 1 without waiting (the only way from :meth:`answer`)."""
        return self.client.publish(topic, payload, qos=1, retain=retain)

    def sync(self, timeout: float = ACK_TIMEOUT) -> None:
        """Return once every message the broker had for this client before the call has arrived."""
        if self._sync_topic is None:
            self._sync_topic = f"{_SYNC_ROOT}/{self.client_id}"
            self.subscribe(self._sync_topic)
        marker = str(next(self._markers)).encode()
        self.publish(self._sync_topic, marker)
        topic = self._sync_topic
        self._wait(lambda: any(m.topic == topic and m.payload == marker for m in self._messages), timeout,
                   "the sync marker to come back")

    # ------------------------------------------------------------------ what arrived

    def messages(self, topic: str | None = None) -> list[Message]:
        """Every message received on ``topic`` (any topic when None, sync markers left out), oldest first."""
        with self._changed:
            return [m for m in self._messages if (m.topic == topic if topic is not None
                                                  else not m.topic.startswith(_SYNC_ROOT + "/"))]

    def payloads(self, topic: str | None = None) -> list[bytes]:
        return [m.payload for m in self.messages(topic)]

    def last_json(self, topic: str) -> dict[str, Any] | None:
        """The newest message on ``topic`` as JSON, or None."""
        got = self.payloads(topic)
        return json.loads(got[-1]) if got else None

    # ------------------------------------------------------------------ ending

    def vanish(self) -> None:
        """Drop the connection without a DISCONNECT, like a power cut: the broker sends the will."""
        self.client.loop_stop()
        sock = self.client.socket()
        assert isinstance(sock, socket.socket), "not connected"
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    def close(self) -> None:
        self.client.disconnect()  # wakes the network thread, so loop_stop() returns at once
        self.client.loop_stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FakeDevice(MqttClient):
    """Publishes as one kiosk (client id ``site.device`` unless given) and collects its
    receipts and central's status (``_central/status``).

    ``will=True`` leaves an offline status as its last will, like a kiosk's.
    """

    def __init__(self, broker: Mosquitto, device: str = "desk-1", *, site: str = "test-site",
                 client_id: str | None = None, will: bool = False, **options: Any) -> None:
        self.site, self.device = site, device
        self.topic = protocol.feedback_topic(site, device)
        self.status_topic = protocol.status_topic(site, device)
        self.receipt_topic = protocol.receipt_topic(site, device)
        if will:
            offline = json.dumps({"schema": 1, "site": site, "device": device, "state": "offline"}).encode()
            options["will"] = (self.status_topic, offline)
        self._decoded: list[list[dict[str, Any]]] = []  # receipt payloads decoded so far, in order
        super().__init__(broker, client_id or f"{site}.{device}",
                         subscribe=[self.receipt_topic, protocol.CENTRAL_STATUS_TOPIC], **options)

    def send(self, payload: bytes, topic: str | None = None) -> None:
        """Publish a feedback payload (on the device's feedback topic unless given); waits for the PUBACK."""
        self.publish(topic or self.topic, payload)

    def receipts(self) -> list[dict[str, Any]]:
        """Every receipt item received, oldest first (each payload checked against the receipt schema)."""
        got = self.payloads(self.receipt_topic)
        with self._changed:
            self._decoded += [protocol.decode("receipt", raw) for raw in got[len(self._decoded):]]
            return [item for items in self._decoded for item in items]

    def receipts_for(self, id_: str) -> list[dict[str, Any]]:
        return [r for r in self.receipts() if r["id"] == id_]

    def outcomes(self, id_: str) -> list[str]:
        """The outcomes of every receipt for ``id_``, in order."""
        return [r["outcome"] for r in self.receipts_for(id_)]

    def central_states(self) -> list[str]:
        """The ``state`` of each ``_central/status`` received, oldest first."""
        return [json.loads(raw)["state"] for raw in self.payloads(protocol.CENTRAL_STATUS_TOPIC)]


def retained(broker: Mosquitto, topic: str) -> bytes | None:
    """What the broker retains on ``topic`` right now (None: nothing)."""
    with MqttClient(broker, subscribe=[topic]) as client:
        client.sync()  # the retained message, if any, came before the marker
        got = client.payloads(topic)
    return got[-1] if got else None

"""The collector: feedback from MQTT into the store, once, acknowledged after the commit.

One thread owns the paho client and drives ``client.loop()`` itself, so every
callback and every flush run on it and nothing else touches the client.

For each batch (closed by size or by time, whichever comes first):

1. valid events are inserted with ``ON CONFLICT (id) DO NOTHING`` and invalid
   payloads go to ``dead_letters``, all in one transaction;
2. after the commit, each MQTT message is acknowledged (``manual_ack``), so a
   collector killed before its commit leaves the messages to be redelivered;
3. then one receipt per device says ``stored``, ``duplicate`` or ``rejected``.

If the commit fails, nothing is acknowledged: the connection is dropped so the
broker redelivers, and the collector reconnects after a backoff.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy.exc import SQLAlchemyError

from central import __version__
from central.config import CentralConfig
from central.store import Store
from sync import protocol
from sync.broker import backoff_delay, make_client
from sync.errors import ProtocolError

log = logging.getLogger("deskpulse.central.ingest")

#: Receipts are arrays of at most this many items (receipt.v1.json).
RECEIPT_MAX_ITEMS = 1000


@dataclass
class _Pending:
    """A received message waiting for its batch to be committed."""

    mid: int
    qos: int
    topic: str
    raw: bytes
    event: dict[str, Any] | None = None
    reason: str | None = None


@dataclass
class CollectorStats:
    """Counters for health and tests (written by the collector thread)."""

    connected: bool = False
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    batches: int = 0
    last_error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _receipt_target(topic: str, raw: bytes) -> tuple[str, str, str] | None:
    """(site, device, id) for a rejected payload, when both can be told safely."""
    try:
        where = protocol.parse_topic(topic)
        body = protocol.loads(raw, limit=protocol.MAX_PAYLOAD["feedback"])
    except ProtocolError:
        return None
    id_ = body.get("id") if isinstance(body, dict) else None
    if where.kind != "feedback" or not isinstance(id_, str) or where.site is None or where.device is None:
        return None
    try:
        protocol.validate("receipt", [{"id": id_, "outcome": "rejected", "reason": "x"}])
    except ProtocolError:
        return None  # not a UUIDv7: the device cannot be told which answer
    return where.site, where.device, id_


class Collector:
    """Subscribes to every device's feedback and stores it.

    Args:
        config: central's configuration (broker, group, batching).
        store: the store; migrated already.
    """

    def __init__(self, config: CentralConfig, store: Store) -> None:
        self.config = config
        self.store = store
        self.stats = CollectorStats()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._batch: list[_Pending] = []
        self._batch_started = 0.0
        self._refused = False

    # ------------------------------------------------------------------ control

    def start(self) -> Collector:
        if self._thread is None:
            self._thread = threading.Thread(target=self.run_forever, name="deskpulse-collector", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Flush, say offline, disconnect and join. Safe to call twice."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> Collector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ thread

    def run_forever(self) -> None:
        """Connect, collect, reconnect, until :meth:`stop`."""
        attempt = 0
        while not self._stop.is_set():
            client = self._client()
            if not self._connect(client):
                self._stop.wait(backoff_delay(attempt, cap=30.0))
                attempt += 1
                continue
            attempt = 0
            try:
                self._collect(client)
            except Exception:  # never die on one bad moment; the broker redelivers
                log.exception("collector loop failed; reconnecting")
                self.stats.last_error = "collector loop failed; see the log"
            finally:
                self._batch.clear()  # unacked: the broker redelivers them
                self._close(client)

    def _client(self) -> mqtt.Client:
        client = make_client(self.config.client_id, self.config.broker)
        client.manual_ack_set(True)
        client.will_set(protocol.CENTRAL_STATUS_TOPIC, self._status("offline"), qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    @staticmethod
    def _status(state: str) -> bytes:
        return protocol.encode("central-status", {"schema": 1, "state": state, "ts": protocol.utc_timestamp(),
                                                  "version": __version__})

    def _connect(self, client: mqtt.Client) -> bool:
        broker = self.config.broker
        self._refused = False
        try:
            client.connect(broker.host, broker.port, keepalive=broker.keepalive)
        except OSError as exc:
            self._error(f"cannot reach broker {broker.url}: {exc}")
            return False
        deadline = time.monotonic() + 10
        while not self.stats.connected and not self._refused and time.monotonic() < deadline:
            if client.loop(0.1) != mqtt.MQTT_ERR_SUCCESS:
                return False
        return self.stats.connected

    def _collect(self, client: mqtt.Client) -> None:
        batch_s = self.config.ingest.batch_ms / 1000
        while not self._stop.is_set() and self.stats.connected:
            wait = 0.1
            if self._batch:
                wait = max(0.0, self._batch_started + batch_s - time.monotonic())
            rc = client.loop(wait)
            if self._batch and (len(self._batch) >= self.config.ingest.batch_size
                                or time.monotonic() >= self._batch_started + batch_s):
                self._flush(client)
            if rc != mqtt.MQTT_ERR_SUCCESS and self.stats.connected:
                self.stats.connected = False
                self._error(f"connection to {self.config.broker.url} lost ({mqtt.error_string(rc)})")
        if self._batch and self.stats.connected:
            self._flush(client)

    def _close(self, client: mqtt.Client) -> None:
        if self.stats.connected:
            client.publish(protocol.CENTRAL_STATUS_TOPIC, self._status("offline"), qos=1, retain=True)
            for _ in range(5):
                client.loop(0.05)
            client.disconnect()
            client.loop(0.1)
        self.stats.connected = False

    # ------------------------------------------------------------------ batches

    def _flush(self, client: mqtt.Client) -> None:
        batch, self._batch = self._batch, []
        valid = [p.event for p in batch if p.event is not None]
        try:
            with self.store.transaction() as conn:
                outcomes = self.store.insert_events(valid, conn)
                for p in batch:
                    if p.event is None:
                        self.store.dead_letter(p.topic, p.reason or "invalid", p.raw, conn)
        except SQLAlchemyError as exc:
            # Nothing is acked: drop the connection so the broker redelivers the
            # batch, and try again after a backoff.
            self._error(f"store commit failed, {len(batch)} messages left unacknowledged: {exc}")
            client.disconnect()
            self.stats.connected = False
            self._stop.wait(1.0)
            return
        for p in batch:
            client.ack(p.mid, p.qos)
        self.stats.batches += 1
        receipts: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
        told: set[str] = set()
        for p in batch:
            if p.event is not None:
                id_ = p.event["id"]
                outcome = "duplicate" if id_ in told else outcomes[id_]
                told.add(id_)
                if outcome == "stored":
                    self.stats.stored += 1
                else:
                    self.stats.duplicates += 1
                receipts[(p.event["site"], p.event["device"])].append({"id": id_, "outcome": outcome})
            else:
                self.stats.rejected += 1
                target = _receipt_target(p.topic, p.raw)
                if target is not None:
                    site, device, id_ = target
                    receipts[(site, device)].append(
                        {"id": id_, "outcome": "rejected", "reason": (p.reason or "invalid")[:500]})
        for (site, device), items in receipts.items():
            for start in range(0, len(items), RECEIPT_MAX_ITEMS):
                chunk = items[start:start + RECEIPT_MAX_ITEMS]
                try:
                    raw = protocol.encode("receipt", chunk)
                except ProtocolError as exc:
                    log.error("receipt for %s/%s not sent: %s", site, device, exc)
                    continue
                client.publish(protocol.receipt_topic(site, device), raw, qos=1)

    # ------------------------------------------------------------------ callbacks (collector thread)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                    props: Properties | None) -> None:
        if reason.is_failure:
            self._refused = True
            self._error(f"broker {self.config.broker.url} refused the connection: {reason}")
            return
        self.stats.connected = True
        self.stats.last_error = None
        log.info("connected to %s as %s; collecting %s", self.config.broker.url, self.config.client_id,
                 protocol.shared(protocol.FEEDBACK_FILTER, self.config.group))
        client.subscribe(protocol.shared(protocol.FEEDBACK_FILTER, self.config.group), qos=1)
        client.publish(protocol.CENTRAL_STATUS_TOPIC, self._status("online"), qos=1, retain=True)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                       props: Properties | None) -> None:
        self.stats.connected = False
        if not self._stop.is_set():
            self._error(f"disconnected from {self.config.broker.url}: {reason}")

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        raw = bytes(message.payload)
        pending = _Pending(message.mid, message.qos, message.topic, raw)
        self.stats.received += 1
        try:
            pending.event = protocol.decode_feedback(message.topic, raw)
        except ProtocolError as exc:
            pending.reason = str(exc)
            log.warning("dead-lettered a payload on %s: %s", message.topic, exc)
        except Exception as exc:  # never stop on input
            pending.reason = f"undecodable: {type(exc).__name__}: {exc}"
            log.exception("unexpected error decoding a payload on %s", message.topic)
        if not self._batch:
            self._batch_started = time.monotonic()
        self._batch.append(pending)

    def _error(self, message: str) -> None:
        if message != self.stats.last_error:
            log.warning("%s", message)
        self.stats.last_error = message

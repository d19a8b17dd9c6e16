"""The collector: feedback from MQTT into the store, once, acknowledged after the commit.

One thread owns the paho client and drives ``client.loop()`` itself, so every
paho callback runs on it and nothing else touches the client (other threads
only call :meth:`Collector.stop` and read :attr:`Collector.stats`). A second
thread, ``deskpulse-store``, commits one batch at a time while the collector
thread receives and decodes the next; the collector thread then acknowledges
the committed batch and sends its receipts. CONNECT's Receive Maximum is two
batches, so the broker keeps sending while a batch is committed.

Feedback arrives through the shared subscription
``$share/{group}/deskpulse/v1/+/+/feedback`` (collectors in one group split
the load) with ``manual_ack``. Each message is decoded strictly
(:func:`sync.protocol.decode_feedback`) and buffered. A batch closes at
``batch_size`` messages or ``batch_ms`` after its first, whichever comes first:

1. valid events are inserted with ``ON CONFLICT (id) DO NOTHING`` and refused
   payloads go to ``dead_letters``, all in one transaction;
2. after the commit, every message of the batch is acknowledged (PUBACK);
3. then one receipt per device lists each id as ``stored``, ``duplicate`` or
   ``rejected`` (with the reason, when the refused body names a UUIDv7 id).

Failures never lose an answer and never stop the collector:

* a payload that cannot be decoded is dead-lettered, acknowledged and rejected;
* when the database is unavailable, nothing is acknowledged: the batch is kept
  and retried with backoff on the same connection. CONNECT's Receive Maximum
  bounds how many unacknowledged messages the broker hands over meanwhile;
* a batch the database refuses for another reason is split, and the event it
  refuses alone is dead-lettered;
* after a lost connection the batch is still committed, but its messages are
  not acknowledged (their packet ids belonged to the old connection) and the
  devices re-send on their own, since only a receipt confirms an answer.

Central's retained ``_central/status`` says ``online`` while connected; the
last will and a clean stop say ``offline``. When several collectors run and
one of them goes away, its will overwrites the retained status; the others
see that (they subscribe to the status topic) and say ``online`` again.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Any, Final

import msgspec
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy import exc as sa_exc

from central import __version__
from central.config import CentralConfig
from central.faults import Faults
from central.logsummary import SummaryLog
from central.store import DeadLetter, Store, event_time
from sync import messages, protocol
from sync.broker import backoff_delay, make_client
from sync.errors import ProtocolError

log = logging.getLogger("deskpulse.central.ingest")

#: A receipt is an array of at most this many items (receipt.v1.json).
RECEIPT_MAX_ITEMS: Final = int(protocol.schema("receipt")["maxItems"])
#: A rejection's reason is cut to this many characters (receipt.v1.json).
RECEIPT_MAX_REASON: Final = 500
_PLAIN_ITEM: Final = frozenset({"id", "outcome"})
_PLAIN_ITEM_OVERHEAD: Final = len('{"id":"","outcome":""}')

#: Database errors worth retrying (server down, lock timeout, disk full) rather
#: than blaming the batch's data.
_TRANSIENT: Final = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError,
                     sa_exc.DisconnectionError)

#: A connection that lasted less than this counts as a failed attempt for backoff
#: (e.g. another process taking over our client id again and again).
_STABLE_S: Final = 10.0
#: The collector's reconnect delay grows to this at most (jittered). It is one client (or a few), so it
#: cannot stampede a broker; a low cap has it storing again within seconds of the broker's return
#: (30 s had it back 1 to 23 s after a restart in the reconnect-storm bench).
RECONNECT_CAP_S: Final = 5.0


@dataclass(slots=True)
class _Pending:
    """A received message waiting for its batch to be committed."""

    gen: int  # the connection it arrived on: its mid means nothing on another
    mid: int
    qos: int
    topic: str
    raw: bytes
    event: dict[str, Any] | None = None
    reason: str | None = None


@dataclass
class CollectorStats:
    """What the collector has done (written by its thread; read by anyone)."""

    connected: bool = False
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    batches: int = 0
    db_errors: int = 0
    statuses: int = 0
    statuses_refused: int = 0
    last_error: str | None = None


#: Dead letters are pruned to their budget at most this often (seconds) while more arrive.
PRUNE_EVERY_S: Final = 1.0


class Collector:
    """Subscribes to every device's feedback and stores it.

    Args:
        config: central's configuration (broker, client id, group, batching).
        store: a migrated store.
        version: the software version announced in ``_central/status``.
        faults: fault points to die at, for the crash tests (default: none;
            :mod:`central.faults`).
    """

    def __init__(self, config: CentralConfig, store: Store, *, version: str = __version__,
                 faults: Faults | None = None) -> None:
        self.config = config
        self.store = store
        self.version = version
        self.faults = faults or Faults()
        self.stats = CollectorStats()
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self._thread: threading.Thread | None = None
        # Owned by the collector thread:
        self._gen = 0
        self._batch: list[_Pending] = []
        self._batch_started = 0.0
        # The batch the store thread is committing while this thread receives the next one.
        self._storing: tuple[list[_Pending], Future[dict[str, str] | None]] | None = None
        self._store_thread: ThreadPoolExecutor | None = None
        self._retry_at = 0.0
        self._db_attempt = 0
        self._refused = False
        self._refusals = SummaryLog(log)  # a flood of junk costs a few lines
        self._dead_since_prune = 0  # dead letters written since the last prune
        self._pruned_at = 0.0

    # ------------------------------------------------------------------ control

    def start(self) -> Collector:
        """Run :meth:`run_forever` on a daemon thread named ``deskpulse-collector``."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self.run_forever, name="deskpulse-collector", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Commit what is buffered, say offline, disconnect and join. Safe to call twice.

        Args:
            timeout: the longest wait for the thread (a hung database cannot hang the caller).
        """
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("collector did not stop within %.0f s", timeout)
            else:
                self._thread = None

    def wait_subscribed(self, timeout: float) -> bool:
        """Wait until the broker has granted the feedback subscription; False on timeout."""
        return self._subscribed.wait(timeout)

    def __enter__(self) -> Collector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ thread

    def run_forever(self) -> None:
        """Connect, collect and reconnect until :meth:`stop` (blocks the calling thread)."""
        self._store_thread = ThreadPoolExecutor(1, thread_name_prefix="deskpulse-store")
        try:
            self._run()
        finally:
            self._store_thread.shutdown()
            self._store_thread = None

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            client = self._client()
            began = time.monotonic()
            try:
                if self._connect(client):
                    self._collect(client)
            except Exception:  # a bug of ours must not end ingest: log it and reconnect
                log.exception("collector failed; reconnecting")
                self.stats.last_error = "collector failed; see the log"
            finally:
                try:
                    self._close(client)
                except Exception:
                    log.exception("closing the MQTT connection failed")
            self._settle(None)
            if self._batch:
                self._flush(None)  # keep what we hold; the messages cannot be acked any more
            if self._stop.is_set():
                break
            attempt = 0 if time.monotonic() - began >= _STABLE_S else attempt + 1
            if attempt:
                self._stop.wait(backoff_delay(attempt - 1, cap=RECONNECT_CAP_S))
        if self._batch:
            self._flush(None)
        if self._dead_since_prune:
            self._prune()
        self._refusals.flush(force=True)

    def _client(self) -> mqtt.Client:
        # The collector reads QoS 1 messages without paho's per-message property parsing (sync/leanread.py).
        client = make_client(self.config.client_id, self.config.broker, lean_read=True)
        client.manual_ack_set(True)
        client.will_set(protocol.CENTRAL_STATUS_TOPIC, self._status_payload("offline"), qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        # What the collector sends (a batch's PUBACKs, then its receipts) goes out in one write per
        # loop round: without a socket callback paho writes to the socket at every single ack.
        client.on_socket_register_write = _written_by_loop
        return client

    def _connect(self, client: mqtt.Client) -> bool:
        broker = self.config.broker
        self._refused = False
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        # Bounds the unacknowledged messages the broker hands us while a batch waits: two
        # batches, one being committed by the store thread and the next one filling.
        props.ReceiveMaximum = min(65535, max(20, 2 * self.config.ingest.batch_size))
        try:
            client.connect(broker.host, broker.port, keepalive=broker.keepalive, properties=props)
        except OSError as exc:
            self._error(f"cannot reach broker {broker.url}: {exc}")
            return False
        deadline = time.monotonic() + 10
        while not self.stats.connected and not self._refused and time.monotonic() < deadline:
            if self._stop.is_set() or client.loop(0.1) != mqtt.MQTT_ERR_SUCCESS:
                return False
        return self.stats.connected

    def _collect(self, client: mqtt.Client) -> None:
        while not self._stop.is_set() and self.stats.connected:
            rc = client.loop(self._wait())
            if rc != mqtt.MQTT_ERR_SUCCESS:
                if self.stats.connected:
                    self._error(f"connection to {self.config.broker.url} lost ({mqtt.error_string(rc)})")
                self.stats.connected = False
                self._subscribed.clear()
                break
            self._reap(client)
            if self._storing is None and self._due():
                self._hand_over()
            self._housekeeping()
        if self._stop.is_set() and self.stats.connected:
            self._settle(client)
            if self._batch:
                self._retry_at = 0.0
                self._flush(client)

    def _housekeeping(self) -> None:
        """Log due refusal summaries; keep dead letters within budget once a second while they come."""
        self._refusals.flush()
        if not self._dead_since_prune or time.monotonic() - self._pruned_at < PRUNE_EVERY_S:
            return
        self._prune()

    def _prune(self) -> None:
        ingest = self.config.ingest
        self._pruned_at = time.monotonic()
        try:
            deleted = self.store.prune_dead_letters(ingest.dead_letters_max_mb * 1024 * 1024,
                                                    timedelta(days=ingest.dead_letters_max_days))
        except sa_exc.SQLAlchemyError as exc:
            self._error(f"could not prune dead letters: {_short(exc)}")
            return
        self._dead_since_prune = 0
        if deleted:
            log.info("deleted %d dead letters beyond their budget (ingest.dead_letters_max_mb = %d, "
                     "dead_letters_max_days = %d)", deleted, ingest.dead_letters_max_mb, ingest.dead_letters_max_days)

    def _wait(self) -> float:
        """How long the next ``loop()`` may block: until the batch is due, at most 0.2 s.

        While the store thread commits, 2 ms: its batch is acknowledged as soon as it is
        committed (the store thread cannot wake paho's ``select``; a message arriving does).
        """
        if self._storing is not None:
            return 0.002
        if not self._batch:
            return 0.2
        due = max(self._batch_started + self.config.ingest.batch_ms / 1000, self._retry_at)
        return min(0.2, max(0.005, due - time.monotonic()))

    def _due(self) -> bool:
        if not self._batch:
            return False
        now = time.monotonic()
        if now < self._retry_at:
            return False
        full = len(self._batch) >= self.config.ingest.batch_size
        return full or now >= self._batch_started + self.config.ingest.batch_ms / 1000

    def _close(self, client: mqtt.Client) -> None:
        """Say offline (on a clean stop only) and disconnect."""
        if self.stats.connected:
            if self._stop.is_set():
                info = client.publish(protocol.CENTRAL_STATUS_TOPIC, self._status_payload("offline"),
                                      qos=1, retain=True)
                deadline = time.monotonic() + 2.0
                while not info.is_published() and time.monotonic() < deadline:
                    if client.loop(0.05) != mqtt.MQTT_ERR_SUCCESS:
                        break
            client.disconnect()
            client.loop(0.1)
        self.stats.connected = False
        self._subscribed.clear()

    def _status_payload(self, state: str) -> bytes:
        return protocol.encode("central-status", {"schema": protocol.SCHEMA_VERSION, "state": state,
                                                  "ts": protocol.utc_timestamp(), "version": self.version[:64]})

    # ------------------------------------------------------------------ batches

    def _hand_over(self) -> None:
        """Give the batch to the store thread and start the next one (this thread keeps receiving)."""
        assert self._store_thread is not None and self._storing is None
        batch, self._batch = self._batch, []
        self.faults.point("after-receive")
        self._storing = (batch, self._store_thread.submit(self._commit, batch))

    def _reap(self, client: mqtt.Client | None) -> None:
        """When the store thread has committed its batch: ack it and send its receipts."""
        if self._storing is None or not self._storing[1].done():
            return
        batch, future = self._storing
        self._storing = None
        try:
            outcomes = future.result()  # _commit catches what the database raises
        except BaseException:  # a bug of ours: keep the batch unacknowledged; run_forever logs and reconnects
            self._batch[:0] = batch
            raise
        if outcomes is None:  # the database is unavailable: keep the batch, ack nothing, retry later
            self._batch[:0] = batch
            self._batch_started = time.monotonic()
            return
        self._finish(batch, outcomes, client)

    def _settle(self, client: mqtt.Client | None) -> None:
        """Wait for the store thread's batch and finish it (``client`` None: its messages cannot be acked)."""
        if self._storing is not None:
            self._storing[1].exception()  # waits; _commit catches what the database raises
            self._reap(client)

    def _flush(self, client: mqtt.Client | None) -> None:
        """Commit the batch here, then ack its messages, then send receipts (``client`` None: commit only)."""
        batch = self._batch
        self.faults.point("after-receive")
        outcomes = self._commit(batch)
        if outcomes is None:
            return  # the database is unavailable: keep the batch, ack nothing, retry later
        self._batch = []
        self._finish(batch, outcomes, client)

    def _finish(self, batch: list[_Pending], outcomes: dict[str, str], client: mqtt.Client | None) -> None:
        """After a batch's commit: ack its messages, then send one receipt per device."""
        self._db_attempt = 0
        self._retry_at = 0.0
        self.stats.batches += 1
        self._dead_since_prune += sum(1 for p in batch if p.event is None)
        live = client is not None and self.stats.connected
        self.faults.point("after-commit")
        if live:
            assert client is not None
            for p in batch:
                if p.gen == self._gen:
                    client.ack(p.mid, p.qos)
            self.faults.point("after-ack", before=client.loop_write)
        receipts: dict[tuple[str, str], list[dict[str, str]]] = {}
        told: set[str] = set()
        for p in batch:
            if p.event is not None:
                id_ = p.event["id"]
                # A second copy in one batch is a duplicate of the first, whatever the first was.
                outcome = "duplicate" if id_ in told else outcomes[id_]
                told.add(id_)
                if outcome == "stored":
                    self.stats.stored += 1
                else:
                    self.stats.duplicates += 1
                receipts.setdefault((p.event["site"], p.event["device"]), []).append(
                    {"id": id_, "outcome": outcome})
                continue
            self.stats.rejected += 1
            found = rejection_target(p.topic, p.raw)
            if found is not None:
                site, device, id_ = found
                receipts.setdefault((site, device), []).append(
                    {"id": id_, "outcome": "rejected", "reason": (p.reason or "refused")[:RECEIPT_MAX_REASON]})
        if not live:
            return
        assert client is not None
        for (site, device), items in receipts.items():
            topic = _receipt_topic(site, device)
            for payload in receipt_payloads(items):
                client.publish(topic, payload, qos=1)

    def _commit(self, batch: list[_Pending]) -> dict[str, str] | None:
        """Store one batch in one transaction; None when the database is unavailable."""
        valid = [p.event for p in batch if p.event is not None]
        dead = [DeadLetter(p.topic, p.reason or "refused", p.raw) for p in batch if p.event is None]
        try:
            return self.store.insert_events(valid, dead=dead)
        except _TRANSIENT as exc:
            self._db_failed(exc, len(batch))
            return None
        except Exception as exc:  # maybe one event the database refuses: find it, dead-letter it
            if len(batch) > 1:
                log.warning("store refused a batch of %d (%s); storing one by one", len(batch), _short(exc))
                outcomes: dict[str, str] = {}
                for p in batch:
                    one = self._commit([p])
                    if one is None:
                        return None
                    outcomes.update(one)
                return outcomes
            p = batch[0]
            if p.event is None:
                # Even a dead letter is refused: the database is broken (say, not
                # migrated), not the data. Ack nothing; try again later.
                self._db_failed(exc, 1)
                return None
            reason = f"store refused the event: {_short(exc)}"
            try:
                self.store.insert_events([], dead=[DeadLetter(p.topic, reason, p.raw)])
            except Exception as again:
                self._db_failed(again, 1)
                return None
            log.error("store refused event %s; dead-lettered: %s", p.event.get("id"), _short(exc))
            p.event, p.reason = None, reason
            return {}

    def _db_failed(self, exc: BaseException, size: int) -> None:
        self.stats.db_errors += 1
        delay = backoff_delay(self._db_attempt, base=0.5, cap=15.0)
        self._db_attempt += 1
        self._retry_at = time.monotonic() + delay
        self._error(f"store unavailable, {size} messages held unacknowledged; retry in {delay:.1f} s: "
                    f"{_short(exc)}")

    # ------------------------------------------------------------------ callbacks (collector thread)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                    props: Properties | None) -> None:
        if reason.is_failure:
            self._refused = True
            self._error(f"broker {self.config.broker.url} refused the connection: {reason}")
            return
        self._gen += 1
        self.stats.connected = True
        self.stats.last_error = None
        feedback = protocol.shared(protocol.FEEDBACK_FILTER, self.config.group)
        log.info("connected to %s as %s; collecting %s", self.config.broker.url, self.config.client_id, feedback)
        # Status topics are retained: subscribe without $share (shared
        # subscriptions get no retained messages). Every collector sees every
        # device status and writes the same row: the writes are idempotent.
        client.subscribe([(feedback, 1), (protocol.CENTRAL_STATUS_TOPIC, 1), (protocol.STATUS_FILTER, 1)])
        client.publish(protocol.CENTRAL_STATUS_TOPIC, self._status_payload("online"), qos=1, retain=True)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: list[ReasonCode],
                      props: Properties | None) -> None:
        if reasons and reasons[0].is_failure:
            self._error(f"broker {self.config.broker.url} refused the feedback subscription: {reasons[0]}")
            return
        self._subscribed.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                       props: Properties | None) -> None:
        self.stats.connected = False
        self._subscribed.clear()
        if not self._stop.is_set():
            self._error(f"disconnected from {self.config.broker.url}: {reason}")

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        # Never raise out of here: paho would end loop() and the connection with it.
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = repr(message._topic)  # brokers check UTF-8; be safe anyway
        try:
            if topic == protocol.CENTRAL_STATUS_TOPIC:
                self._on_central_status(client, message)
                return
            if topic.endswith("/status"):
                self._on_device_status(client, message, topic)
                return
            self._take(message, topic)
        except Exception:
            log.exception("unexpected error on a message on %s", topic)

    def _on_central_status(self, client: mqtt.Client, message: mqtt.MQTTMessage) -> None:
        client.ack(message.mid, message.qos)  # manual_ack covers every subscription
        try:
            state = protocol.decode("central-status", message.payload)["state"]
        except ProtocolError as exc:
            log.warning("ignored a bad central status: %s", exc)
            return
        if state == "offline" and self.stats.connected and not self._stop.is_set():
            # Another collector went away (its will said offline); we are still here.
            log.info("central status says offline but this collector is online: announcing online")
            client.publish(protocol.CENTRAL_STATUS_TOPIC, self._status_payload("online"), qos=1, retain=True)

    def _on_device_status(self, client: mqtt.Client, message: mqtt.MQTTMessage, topic: str) -> None:
        """Keep a device's retained status (or its last will) as its health in the store.

        Validated as strictly as feedback (schema, and the body's site and
        device must match the topic); a refused one is dead-lettered. Statuses
        are rare, so each is written at once rather than batched; a database
        failure costs this one status only (the device sends another).
        """
        raw = bytes(message.payload)
        if not raw:  # a retained status cleared (a device taken out of service): nothing to keep
            client.ack(message.mid, message.qos)
            return
        try:
            try:
                status = decode_status(topic, raw)
            except Exception as exc:  # ProtocolError, or a decoder bug: dead-letter it, never drop it
                self.stats.statuses_refused += 1
                self._refusals.warning(f"refused a status on {topic[:200]}: {exc}", key=f"status: {exc}")
                self.store.dead_letter(topic, str(exc), raw)
                self._dead_since_prune += 1
                return
            self.store.record_status(status)
            self.stats.statuses += 1
        except sa_exc.SQLAlchemyError as exc:
            self._error(f"could not keep a device status from {topic}: {_short(exc)}")
        finally:
            client.ack(message.mid, message.qos)

    def _take(self, message: mqtt.MQTTMessage, topic: str) -> None:
        raw = bytes(message.payload)
        pending = _Pending(self._gen, message.mid, message.qos, topic, raw)
        self.stats.received += 1
        try:
            event = protocol.decode_feedback(topic, raw)
            event_time(event)  # the schema checks the shape of ts, not that the date exists
            pending.event = event
        except ValueError as exc:  # ProtocolError included
            pending.reason = str(exc)
            self._refusals.warning(f"refused a payload on {topic[:200]}: {exc}", key=str(exc))
        except Exception as exc:  # a decoder bug must not stop ingest
            pending.reason = f"could not be decoded: {type(exc).__name__}: {exc}"
            log.exception("unexpected error decoding a payload on %s", topic)
        if not self._batch:
            self._batch_started = time.monotonic()
        self._batch.append(pending)

    def _error(self, message: str) -> None:
        if message != self.stats.last_error:
            log.warning("%s", message)
        self.stats.last_error = message


def _written_by_loop(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    """paho's "a packet waits to be written": nothing to do, the collector's next ``loop()`` writes it."""


def decode_status(topic: str, raw: bytes) -> dict[str, Any]:
    """Decode a device status strictly and check that its body matches its topic.

    Raises:
        ProtocolError: the topic is not a device status topic, the payload is
            not a valid ``status.v1`` or it names another site or device.
    """
    where = protocol.parse_topic(topic)
    if where.kind != "status" or where.device is None:
        raise ProtocolError(f"topic {topic!r} is not a device status topic")
    status: dict[str, Any] = protocol.decode("status", raw)
    if status["site"] != where.site or status["device"] != where.device:
        raise ProtocolError(
            f"body names {status['site']}/{status['device']} but the topic is {where.site}/{where.device}"
        )
    return status


def rejection_target(topic: str, raw: bytes) -> tuple[str, str, str] | None:
    """Where to send a ``rejected`` receipt for a refused payload: (site, device, id).

    Best effort: only when the topic is a feedback topic (its site and device
    are guarded by the broker's ACL) and the body, as JSON, names an id that is
    a UUIDv7 the device can match to its outbox. Otherwise None.
    """
    try:
        where = protocol.parse_topic(topic)
        body = protocol.loads(raw, limit=protocol.MAX_PAYLOAD["feedback"])
    except ProtocolError:
        return None
    id_ = body.get("id") if isinstance(body, dict) else None
    if where.kind != "feedback" or where.site is None or where.device is None or not isinstance(id_, str):
        return None
    try:
        protocol.validate("receipt", [{"id": id_, "outcome": "duplicate"}])
    except ProtocolError:
        return None  # not a UUIDv7
    return where.site, where.device, id_


def receipt_payloads(items: Iterable[dict[str, str]]) -> Iterator[bytes]:
    """Encode receipt items as few payloads as the schema's item and size limits allow.

    A receipt of plain items only (a UUID and ``stored`` or ``duplicate``, the collector's own
    words for an id it decoded) is written by msgspec in C, the same bytes
    :func:`sync.protocol.encode` writes; one with any other item (a rejection, with its id
    taken from a refused body and its reason) goes through ``protocol.encode``, which checks
    it against the schema first.
    """
    limit = protocol.MAX_PAYLOAD["receipt"] - 2  # the brackets
    chunk: list[dict[str, str]] = []
    size = 0
    plain = True
    for item in items:
        n, item_plain = _item_size(item)
        n += 1  # the comma
        if chunk and (len(chunk) >= RECEIPT_MAX_ITEMS or size + n > limit):
            yield _encode_receipt(chunk, plain)
            chunk, size, plain = [], 0, True
        chunk.append(item)
        size += n
        plain = plain and item_plain
    if chunk:
        yield _encode_receipt(chunk, plain)


def _encode_receipt(chunk: list[dict[str, str]], plain: bool) -> bytes:
    return _json_encode(chunk) if plain else protocol.encode("receipt", chunk)


_json_encode: Final = msgspec.json.Encoder().encode
_UUID7: Final = messages.compile_pattern(messages.PATTERNS["uuid7"])
#: Items whose ``id`` and ``outcome`` alone need no check: a UUID the collector decoded, and one of these.
_PLAIN_OUTCOMES: Final = frozenset({"stored", "duplicate"})


#: protocol.receipt_topic, remembered per device (it checks both slugs every time).
_receipt_topic: Final = lru_cache(maxsize=4096)(protocol.receipt_topic)


def _item_size(item: dict[str, str]) -> tuple[int, bool]:
    """Bytes of one receipt item as :func:`sync.protocol.encode` writes it (compact, UTF-8), and
    whether it is plain: an id that is a UUID and ``stored`` or ``duplicate``."""
    if item.keys() == _PLAIN_ITEM:  # almost every item: a UUID and an outcome, nothing to escape
        id_, outcome = item["id"], item["outcome"]
        if _plain(id_) and _plain(outcome):
            return (_PLAIN_ITEM_OVERHEAD + len(id_) + len(outcome),
                    outcome in _PLAIN_OUTCOMES and _UUID7.match(id_) is not None)
    return len(json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode()), False


def _plain(text: str) -> bool:
    """True if JSON writes ``text`` as itself between quotes (printable ASCII, no quote or backslash)."""
    return text.isascii() and text.isprintable() and '"' not in text and "\\" not in text


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"

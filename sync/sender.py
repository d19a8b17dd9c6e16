"""The sender: one thread that owns the paho client and drains the outbox.

The thread drives ``client.loop()`` itself, so every paho callback runs on it
and no lock guards the client. Other threads only call :meth:`Sender.notify`
(a new answer is waiting), :meth:`Sender.set_alarm` (a message the thread
picks up), :meth:`Sender.stop`, and read :attr:`Sender.status`, an immutable
snapshot the thread replaces whenever something changed.

The thread supervises itself: an unexpected exception ends one *session*
(outbox connection and paho client), never the thread. The session is started
anew after a backoff, the restarts are counted, a ``sender-restarting`` alarm
is raised (in the retained status and on the staff screen) until a new session
has run well for ``recovered_after_s``, and :meth:`Sender.down_for` tells the
kiosk how long the sender has been failing, so it can stop feeding systemd's
watchdog past a limit. Rows a failed session had in flight are still PENDING or
SENT in the outbox: the next session publishes them again and central
deduplicates.

Delivery contract (see docs/protocol.md):

* publish pending rows with QoS 1, many in flight (``max_inflight``);
* a PUBACK with a reason code below 0x80 (0x10 "no matching subscribers"
  included) moves the row to SENT; PUBACKs are recorded in batched transactions;
* only central's receipt confirms (or rejects) a row;
* rows SENT but unconfirmed are re-published after ``resend_after_s`` while
  central's retained ``_central/status`` says it is online, and at once when a
  collector announces itself online live (it just (re)subscribed: what was
  PUBACKed before may have reached no collector, e.g. 0x10 "no matching
  subscribers" after a broker restart that kiosks beat the collector back to);
* reconnects wait an exponential delay with jitter (1 s doubling up to ``reconnect_cap_s``, 15 s).

Two ways to run it, one protocol: :meth:`Sender.start` runs the thread (the
kiosk); :meth:`Sender.open_external` lets a caller's event loop drive many
senders on one thread without a thread each (``deskpulse-sim``, see
"Driven from an external event loop" below). Both use the same outbox
queries, callbacks, fill, flush and status code; only who waits on the socket
differs.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from sync import protocol
from sync.broker import BrokerSettings, backoff_delay, make_client
from sync.errors import OutboxError, ProtocolError
from sync.outbox import Outbox, State, disk_free_bytes
from sync.survey import SurveyConfigs

log = logging.getLogger("deskpulse.sync.sender")


@dataclass(frozen=True, slots=True)
class SenderSettings:
    """Tuning of the sender; the defaults suit a desk."""

    max_inflight: int = 100
    resend_after_s: float = 30.0
    max_outbox_bytes: int | None = None
    disk_low_bytes: int = 50_000_000
    status_every_s: float = 60.0
    prune_after_s: float = 7 * 24 * 3600.0
    flush_every_s: float = 0.05
    #: First wait before a failed session is started again (doubles, with jitter, up to ``restart_cap_s``).
    restart_base_s: float = 1.0
    restart_cap_s: float = 30.0
    #: A restarted session that runs this long without failing clears ``sender-restarting``.
    recovered_after_s: float = 60.0
    #: Reconnect delays double from 1 s up to this, each drawn at random below its ceiling. 60 s
    #: (backoff_delay's default) left kiosks coming back up to a minute after a 10 s broker outage
    #: (reconnect-storm bench); at 15 s a fleet still arrives spread over 15 s, not at once.
    reconnect_cap_s: float = 15.0
    #: Reconnect delays are jittered (see :func:`sync.broker.backoff_delay`). Only the
    #: reconnect-storm bench (``bench/storm.py``) turns this off, to measure the stampede;
    #: no configuration file has the key.
    jitter: bool = True


#: The alarm raised while the sender's loop is failing and being restarted.
RESTARTING_ALARM = "sender-restarting"


@dataclass(frozen=True, slots=True)
class SenderStatus:
    """A snapshot of what the sender knows (read by the kiosk's loop and staff screen).

    The sender thread builds a new one whenever something changed and swaps it
    in whole, so a reader never sees half of an update.
    """

    connected: bool = False
    central_online: bool = False
    last_error: str | None = None
    published: int = 0
    acked: int = 0
    confirmed: int = 0
    #: Health alarms as (code, message): the kiosk's own and the sender's.
    alarms: tuple[tuple[str, str], ...] = ()
    #: Sessions that ended on an unexpected exception since the sender started.
    restarts: int = 0
    #: Monotonic time of the first failure not yet followed by ``recovered_after_s`` of good running.
    failing_since: float | None = None


@dataclass(slots=True)
class _Live:
    """The sender thread's own, mutable copy of :class:`SenderStatus`."""

    connected: bool = False
    central_online: bool = False
    last_error: str | None = None
    published: int = 0
    acked: int = 0
    confirmed: int = 0
    alarms: dict[str, str] = field(default_factory=dict)
    restarts: int = 0
    failing_since: float | None = None

    def snapshot(self) -> SenderStatus:
        return SenderStatus(self.connected, self.central_online, self.last_error, self.published, self.acked,
                            self.confirmed, tuple(self.alarms.items()), self.restarts, self.failing_since)


class Sender:
    """Drains an outbox file to the broker on its own thread.

    Args:
        outbox_path: the outbox database (the sender opens its own connection).
        site: site slug.
        device: device slug.
        broker: connection settings.
        settings: tuning.
        version: software version reported in status.
        health: optional callable adding fields to the health report.
        on_config: called on the sender thread with each newly applied survey configuration.
    """

    def __init__(
        self,
        outbox_path: Path,
        site: str,
        device: str,
        broker: BrokerSettings,
        settings: SenderSettings = SenderSettings(),
        *,
        version: str = "0",
        health: Callable[[], dict[str, Any]] | None = None,
        on_config: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.outbox_path = Path(outbox_path)
        self.site = site
        self.device = device
        self.broker = broker
        self.settings = settings
        self.version = version
        self.health = health
        self.on_config = on_config
        self.surveys = SurveyConfigs(self.outbox_path.parent / "survey-config.json")
        self._status = SenderStatus()
        self._stop = threading.Event()
        self._wake = threading.Event()
        #: Alarms raised or cleared by other threads, picked up by the sender thread.
        self._alarm_requests: queue.SimpleQueue[tuple[str, str | None]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._started_mono = time.monotonic()
        # Owned by the sender thread only:
        self._live = _Live()
        self._freed = False  # a PUBACK made room in the in-flight window since the last fill
        self._cursor = 0  # highest seq published from PENDING on this connection
        self._status_due = False
        self._session_started = 0.0  # monotonic start of the current session
        self._inflight: dict[int, str] = {}  # paho mid -> event id
        self._inflight_ids: set[str] = set()
        self._acked: list[str] = []
        self._receipts: list[tuple[str, str, str | None]] = []
        self._refused = False  # the broker refused our CONNECT (credentials, ACL)
        self._next_status = 0.0  # monotonic time of the next status publish
        self._last_fill = 0.0  # monotonic time of the last outbox query
        #: A collector announced itself online live since the last flush.
        self._announced = False
        #: Unix time of the flush after that announcement: rows PUBACKed before it are re-published now.
        self._resend_before: float | None = None
        #: Connection attempts (TCP connect + CONNECT) made so far; read by the simulator and the storm bench.
        self.connect_attempts = 0
        # Owned by the external event loop's thread (open_external), unused by the thread:
        self._ext: _External | None = None

    # ------------------------------------------------------------------ control

    @property
    def status(self) -> SenderStatus:
        """The latest snapshot of the sender's state. Thread-safe (an immutable value)."""
        return self._status

    def start(self) -> Sender:
        """Start the sender thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="deskpulse-sender", daemon=True)
            self._thread.start()
        return self

    def notify(self) -> None:
        """Wake the sender: a new answer is in the outbox. Thread-safe."""
        self._wake.set()

    def set_alarm(self, code: str, message: str | None) -> None:
        """Raise (or, with ``message=None``, clear) a health alarm. Thread-safe.

        The kiosk uses it for what only it can see, e.g. an answer it could not
        save; the sender thread picks it up at once and the next status report,
        sent at once, carries it.
        """
        self._alarm_requests.put((code, None if message is None else message[:500]))
        self._wake.set()

    def down_for(self, now: float | None = None) -> float:
        """Seconds the sender has been failing (0.0 while it works). Thread-safe.

        Failing means: its loop ended on an unexpected exception and has not run
        well for ``recovered_after_s`` since, or its thread is gone although
        nobody stopped it (``math.inf``). The kiosk stops feeding systemd's
        watchdog when this passes its limit, so systemd restarts the kiosk.
        """
        thread = self._thread
        if thread is not None and not thread.is_alive() and not self._stop.is_set():
            return math.inf
        since = self._status.failing_since
        if since is None:
            return 0.0
        return max(0.0, (time.monotonic() if now is None else now) - since)

    def stop(self, timeout: float = 5.0) -> None:
        """Publish offline status, disconnect and join. Safe to call twice."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> Sender:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ thread

    def _snapshot(self) -> None:
        """Publish the thread's state to readers (one reference swap)."""
        self._status = self._live.snapshot()

    def _take_alarm_requests(self) -> None:
        while True:
            try:
                code, message = self._alarm_requests.get_nowait()
            except queue.Empty:
                return
            alarms = self._live.alarms
            if message is None:
                if alarms.pop(code, None) is None:
                    continue
            elif alarms.get(code) == message:
                continue
            else:
                alarms[code] = message
            self._status_due = True

    def _run(self) -> None:
        """The thread: run sessions until stopped; a failed one is restarted after a backoff."""
        while not self._stop.is_set():
            try:
                self._session()
            except Exception as exc:  # never let the sender die, nor fail silently
                self._failed(exc)
                self._stop.wait(backoff_delay(self._live.restarts - 1, base=self.settings.restart_base_s,
                                              cap=self.settings.restart_cap_s))
            else:
                return

    def _failed(self, exc: Exception) -> None:
        live = self._live
        live.restarts += 1
        live.connected = False
        live.central_online = False
        if live.failing_since is None:
            live.failing_since = time.monotonic()
        what = f"{type(exc).__name__}: {exc}"[:300]
        log.error("sender loop failed (restart %d); starting it again", live.restarts, exc_info=exc)
        live.alarms[RESTARTING_ALARM] = f"the sender's loop failed {live.restarts} times, last: {what}"
        live.last_error = f"sender loop failed: {what}"
        self._status_due = True
        self._take_alarm_requests()
        self._snapshot()

    def _recovered(self, now: float) -> None:
        """A restarted session has run without failing for long enough: clear the alarm.

        Connected or not: a broker that cannot be reached is reported as such
        (``last_error``), not as a failing sender.
        """
        live = self._live
        if live.failing_since is not None and now - self._session_started >= self.settings.recovered_after_s:
            log.info("sender running again after %d restarts", live.restarts)
            live.failing_since = None
            live.alarms.pop(RESTARTING_ALARM, None)
            self._status_due = True

    def _open_outbox(self) -> Outbox | None:
        attempt = 0
        while not self._stop.is_set():
            try:
                return Outbox(self.outbox_path, self.site, self.device,
                              max_bytes=self.settings.max_outbox_bytes)
            except OutboxError as exc:
                self._error(f"sender cannot open the outbox: {exc}")
                self._take_alarm_requests()
                self._snapshot()
                self._stop.wait(backoff_delay(attempt, cap=30.0))
                attempt += 1
        return None

    def _session(self) -> None:
        """One outbox connection and one paho client, until stopped or an exception ends them."""
        self._session_started = time.monotonic()
        self._inflight.clear()
        self._inflight_ids.clear()
        self._acked.clear()
        self._receipts.clear()
        self._cursor = 0
        outbox = self._open_outbox()
        if outbox is None:
            return
        client = self._client()
        attempt = 0
        clean = False
        try:
            while not self._stop.is_set():
                self._take_alarm_requests()
                self._recovered(time.monotonic())
                if not self._live.connected:
                    connected = self._connect(client)
                    self._snapshot()
                    if not connected:
                        self._stop.wait(backoff_delay(attempt, cap=self.settings.reconnect_cap_s,
                                                      jitter=self.settings.jitter))
                        attempt += 1
                        continue
                    attempt = 0
                self._pump(client, outbox)
                self._snapshot()
            if self._live.connected:
                self._publish_status(client, outbox, online=False)
                client.loop(0.2)
                client.disconnect()
                client.loop(0.2)
            clean = True
        finally:
            try:
                self._flush(outbox)  # PUBACKs and receipts already seen are kept
            except Exception:
                if clean:
                    raise
                log.exception("recording PUBACKs and receipts after a failure failed too")
            finally:
                outbox.close()
                if not clean:
                    _drop(client)
            self._live.connected = False
            self._snapshot()

    def _client(self) -> mqtt.Client:
        client = make_client(f"{self.site}.{self.device}", self.broker)
        will = {"schema": 1, "site": self.site, "device": self.device, "state": "offline"}
        client.will_set(
            protocol.status_topic(self.site, self.device),
            protocol.encode("status", will),
            qos=1,
            retain=True,
        )
        client.max_inflight_messages_set(self.settings.max_inflight)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        if log.isEnabledFor(logging.DEBUG):  # every packet, when asked for (-v)
            client.enable_logger(logging.getLogger("deskpulse.sync.mqtt"))
        return client

    def _send_connect(self, client: mqtt.Client) -> bool:
        """Open the connection and send CONNECT (one attempt); False, reported, when the broker cannot be reached.

        A blocking TCP connect (paho's connect timeout, 5 s); on a LAN or loopback it takes microseconds.
        """
        self._refused = False
        self.connect_attempts += 1
        try:
            client.connect(self.broker.host, self.broker.port, keepalive=self.broker.keepalive)
        except OSError as exc:
            self._error(f"cannot reach broker {self.broker.url}: {exc}")
            return False
        return True

    def _connect(self, client: mqtt.Client) -> bool:
        if not self._send_connect(client):
            return False
        # Wait for CONNACK (bounded) so a refused login is reported, not retried blindly.
        deadline = time.monotonic() + 10
        while not self._live.connected and time.monotonic() < deadline:
            if client.loop(0.1) != mqtt.MQTT_ERR_SUCCESS:
                return False
            if self._refused:
                return False
        return self._live.connected

    def _pump(self, client: mqtt.Client, outbox: Outbox) -> None:
        """One round: fill the in-flight window, run the network, flush batches."""
        self._fill(client, outbox)
        # While answers are in flight, turn fast to batch PUBACKs promptly; when
        # idle, wait longer in select() so an idle kiosk costs almost nothing.
        self._network_result(client.loop(self.settings.flush_every_s if self._inflight else 0.1))
        self._flush(outbox)
        self._status_if_due(client, outbox, time.monotonic())

    def _network_result(self, rc: MQTTErrorCode) -> None:
        if rc != mqtt.MQTT_ERR_SUCCESS and self._live.connected:
            self._live.connected = False
            self._error(f"connection to {self.broker.url} lost ({mqtt.error_string(rc)})")

    def _status_if_due(self, client: mqtt.Client, outbox: Outbox, now: float) -> None:
        if now >= self._next_status or self._status_due:
            self._status_due = False
            outbox.prune(self.settings.prune_after_s)
            outbox.enforce_cap()
            self._publish_status(client, outbox, online=True)

    def _fill(self, client: mqtt.Client, outbox: Outbox) -> None:
        room = self.settings.max_inflight - len(self._inflight)
        woke = self._wake.is_set()
        now = time.monotonic()
        # Query the outbox when woken, when PUBACKs freed room in the window,
        # or once a second for due re-sends; never on every loop turn when idle.
        if room <= 0 or not (woke or self._freed or now - self._last_fill >= 1.0):
            return
        self._wake.clear()
        self._freed = False
        # Pending rows are read from a cursor (the last seq published on this
        # connection), so a refill reads only new rows, not the whole window
        # again; re-sends are looked for once a second.
        resend_after = None
        resend_now: float | None = None
        if self._live.central_online and self._resend_before is not None:
            resend_after, resend_now = 0.0, self._resend_before  # every row PUBACKed before the announcement
        elif self._live.central_online and now - self._last_fill >= 1.0:
            resend_after = self.settings.resend_after_s
            self._last_fill = now
        limit = room + len(self._inflight_ids)
        records = outbox.due(limit, after_seq=self._cursor, resend_after=resend_after, now=resend_now)
        if resend_now is not None and len(records) < limit:
            self._resend_before = None  # all of them are in this round (or in flight already)
        resends = sum(1 for r in records if r.state is State.SENT and r.id not in self._inflight_ids)
        if resends:
            log.info("re-publishing %d answers central has not confirmed", resends)
        for record in records:
            if record.id in self._inflight_ids:
                continue
            info = client.publish(
                protocol.feedback_topic(self.site, self.device), record.payload, qos=1
            )
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                self._error(f"publish failed: {mqtt.error_string(info.rc)}")
                break
            self._inflight[info.mid] = record.id
            self._inflight_ids.add(record.id)
            log.debug("published %s (seq %d, %s) as mid %d", record.id, record.seq, record.state.name, info.mid)
            if record.state is State.PENDING:
                self._cursor = max(self._cursor, record.seq)
            self._live.published += 1
            room -= 1
            if room <= 0:
                break
        if resend_after is None and now - self._last_fill >= 1.0:
            self._last_fill = now

    def _flush(self, outbox: Outbox) -> None:
        if self._acked:
            acked, self._acked = self._acked, []
            moved = outbox.mark_sent(acked)
            log.debug("PUBACKs for %s recorded; %d rows moved", acked, moved)
            self._live.acked += len(acked)
        if self._receipts:
            receipts, self._receipts = self._receipts, []
            settled = outbox.settle(receipts)
            log.debug("receipts %s applied; %d rows settled", receipts, settled)
            self._live.confirmed += settled
        if self._announced:
            self._announced = False
            self._resend_before = time.time()
            self._wake.set()

    def _publish_status(self, client: mqtt.Client, outbox: Outbox, *, online: bool) -> None:
        self._next_status = time.monotonic() + self.settings.status_every_s
        payload: dict[str, Any] = {
            "schema": 1,
            "site": self.site,
            "device": self.device,
            "state": "online" if online else "offline",
            "ts": protocol.utc_timestamp(),
            "version": self.version,
        }
        if online:
            stats = outbox.stats()
            health: dict[str, Any] = {
                "backlog": stats.backlog,
                "oldest_pending_age_s": (
                    None if stats.oldest_unconfirmed_at is None
                    else round(max(0.0, time.time() - stats.oldest_unconfirmed_at), 1)
                ),
                "last_confirmed_ts": (
                    None if stats.last_confirmed_at is None
                    else protocol.utc_timestamp(datetime.fromtimestamp(stats.last_confirmed_at, UTC))
                ),
                "rejected": stats.rejected,
                "epoch": outbox.epoch,
                "uptime_s": round(time.monotonic() - self._started_mono, 1),
                "disk_free_bytes": disk_free_bytes(self.outbox_path.parent),
                "last_error": self._live.last_error,
            }
            if self.surveys.current is not None:
                health["survey"] = self.surveys.current["version"]
            health["config_error"] = self.surveys.error
            alarms = outbox.alarms()
            alarms += [{"code": c, "message": m} for c, m in self._live.alarms.items()]
            free = health["disk_free_bytes"]
            if free is not None and free < self.settings.disk_low_bytes:
                alarms.append({"code": "disk-low", "message": f"only {free / 1e6:.1f} MB free on the outbox's disk"})
            if self.health is not None:
                extra = dict(self.health())
                alarms += extra.pop("alarms", [])
                health.update(extra)
            health["alarms"] = alarms[:16]
            payload["health"] = health
        try:
            raw = protocol.encode("status", payload)
        except ProtocolError as exc:
            log.error("status not published: %s", exc)
            return
        client.publish(protocol.status_topic(self.site, self.device), raw, qos=1, retain=True)

    def _on_config_message(self, message: mqtt.MQTTMessage) -> None:
        scope: Literal["site", "device"] = (
            "site" if message.topic == protocol.site_config_topic(self.site) else "device")
        before = self.surveys.error
        applied = self.surveys.offer(scope, bytes(message.payload))
        if applied is not None and self.on_config is not None:
            try:
                self.on_config(applied)
            except Exception:
                log.exception("applying survey configuration %s failed", applied.get("version"))
        if applied is not None or self.surveys.error != before:
            self._status_due = True  # say at once which survey runs, or why one was refused

    def _error(self, message: str) -> None:
        if message != self._live.last_error:
            log.warning("%s", message)
        self._live.last_error = message

    # ------------------------------------------------------------------ callbacks (sender thread)

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Properties | None
    ) -> None:
        if reason.is_failure:
            self._refused = True
            self._error(f"broker {self.broker.url} refused the connection: {reason}")
            return
        self._refused = False
        self._live.connected = True
        self._live.last_error = None
        log.info("connected to %s as %s.%s", self.broker.url, self.site, self.device)
        # Messages paho had in flight on the old connection are forgotten here:
        # their rows are still PENDING or SENT in the outbox and will be
        # published again; central deduplicates.
        self._inflight.clear()
        self._inflight_ids.clear()
        self._cursor = 0
        client.subscribe(
            [
                (protocol.receipt_topic(self.site, self.device), 1),
                (protocol.CENTRAL_STATUS_TOPIC, 1),
                (protocol.site_config_topic(self.site), 1),
                (protocol.device_config_topic(self.site, self.device), 1),
            ]
        )
        self._next_status = 0.0
        self._wake.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Properties | None
    ) -> None:
        self._live.connected = False
        self._live.central_online = False
        # After a refused CONNECT the refusal is the news, not the disconnect that follows.
        if not self._stop.is_set() and not self._refused:
            self._error(f"disconnected from {self.broker.url}: {reason}")

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode, props: Properties | None
    ) -> None:
        id_ = self._inflight.pop(mid, None)
        if id_ is None:
            return  # a status publish, or a message from a previous connection
        self._inflight_ids.discard(id_)
        self._freed = True
        if reason.value >= 0x80:
            # Not accepted (e.g. 0x87 not authorized): the row stays as it is
            # and is tried again later; say why in status.
            self._error(f"broker refused answer {id_}: {reason} (0x{reason.value:02x})")
            self._cursor = 0  # it stays pending: read it again on a later fill
            return
        self._acked.append(id_)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            if message.topic in (protocol.site_config_topic(self.site),
                                 protocol.device_config_topic(self.site, self.device)):
                self._on_config_message(message)
                return
            if message.topic == protocol.CENTRAL_STATUS_TOPIC:
                status = protocol.decode("central-status", message.payload)
                online = status["state"] == "online"
                if online != self._live.central_online:
                    log.info("central is %s", status["state"])
                self._live.central_online = online
                if online and not message.retain:
                    # Said live, not replayed from the retained store: a collector has just
                    # subscribed. Answers PUBACKed before may have reached none: send them again
                    # (from the next flush on, which records PUBACKs read with this message).
                    self._announced = True
                if self._live.central_online:
                    self._wake.set()
                return
            receipt = protocol.decode("receipt", message.payload)
        except ProtocolError as exc:
            log.warning("ignored a bad message on %s: %s", message.topic, exc)
            return
        for item in receipt:
            self._receipts.append((item["id"], item["outcome"], item.get("reason")))
            if item["outcome"] == "rejected":
                log.error("central rejected answer %s: %s", item["id"], item.get("reason"))


    # ------------------------------------------------------------------ driven from an external event loop
    #
    # ``deskpulse-sim`` runs hundreds of senders per process on one thread: a
    # selector waits on every sender's socket, and the loop calls readable(),
    # writable() and tick() instead of each sender blocking in client.loop().
    # The protocol (fill, flush, status, callbacks, outbox) is the thread's own
    # code; what differs is only the waiting: connecting does not wait for the
    # CONNACK (tick() notices it, or the 10 s deadline), backoffs are deadlines
    # instead of sleeps, and a failed session is dropped and opened again after
    # the same backoff as the thread's. Everything here runs on the caller's
    # thread; notify() and set_alarm() stay callable from anywhere.

    def open_external(self, watch: SocketWatch) -> None:
        """Start a session driven by the caller's event loop (no thread).

        ``watch`` hears when the client's socket opens and closes and when it
        wants to write (paho's socket callbacks); the caller then calls
        :meth:`readable` / :meth:`writable` when the socket is ready and
        :meth:`tick` often (every ``flush_every_s`` or so, and after
        :meth:`notify`). The first connection attempt is made by the first tick.
        """
        if self._thread is not None:
            raise RuntimeError("this sender runs its own thread")
        if self._ext is None:
            self._ext = _External(watch=watch)

    def tick(self, now: float | None = None) -> None:
        """Do what is due: open the session, (re)connect, fill the window, record batches, report status."""
        ext = self._ext
        if ext is None:
            raise RuntimeError("open_external() first")
        now = time.monotonic() if now is None else now
        try:
            self._ext_tick(ext, now)
        except Exception as exc:  # as the thread does: one failed session, started again after a backoff
            self._ext_failed(ext, exc, now)

    def readable(self) -> None:
        """The client's socket has data: read it (callbacks run here)."""
        self._ext_io(mqtt.Client.loop_read)

    def writable(self) -> None:
        """The client's socket takes data: write what paho has queued."""
        self._ext_io(mqtt.Client.loop_write)

    def _ext_io(self, io: Callable[[mqtt.Client], MQTTErrorCode]) -> None:
        ext = self._ext
        if ext is None or ext.client is None:
            return
        try:
            self._network_result(io(ext.client))
        except Exception as exc:
            self._ext_failed(ext, exc, time.monotonic())

    @property
    def busy(self) -> bool:
        """Answers are in flight or PUBACKs/receipts wait to be recorded (the caller ticks promptly then)."""
        return bool(self._inflight or self._acked or self._receipts or self._wake.is_set())

    def close_external(self) -> None:
        """End a caller-driven session: offline status, DISCONNECT, batches recorded, outbox closed."""
        ext = self._ext
        if ext is None:
            return
        self._stop.set()
        client, outbox = ext.client, ext.outbox
        try:
            if client is not None and outbox is not None and self._live.connected:
                self._publish_status(client, outbox, online=False)
                client.disconnect()
                client.loop_write()
            if outbox is not None:
                self._flush(outbox)
        except Exception:
            log.exception("closing the sender's session failed; its rows stay in the outbox")
        finally:
            self._ext_end(ext)
            self._ext = None

    def _ext_tick(self, ext: _External, now: float) -> None:
        if ext.outbox is None:
            if now < ext.restart_at:
                return
            self._ext_open(ext, now)
        client, outbox = ext.client, ext.outbox
        assert client is not None and outbox is not None
        self._take_alarm_requests()
        self._recovered(now)
        if not self._live.connected:
            if ext.connack_by is not None:  # a CONNECT is out
                if self._refused or now >= ext.connack_by or client.socket() is None:
                    self._ext_retry_later(ext, now)
            elif now >= ext.next_connect:
                self._ext_connect(ext, client, now)
            if now >= ext.next_flush:  # PUBACKs and receipts seen before the loss are kept
                ext.next_flush = now + self.settings.flush_every_s
                self._flush(outbox)
            self._snapshot()
            return
        if ext.connack_by is not None:  # connected: the next loss reconnects at once, as the thread does
            ext.connack_by = None
            ext.attempt = 0
        self._fill(client, outbox)
        if now >= ext.next_flush:
            ext.next_flush = now + self.settings.flush_every_s
            self._flush(outbox)
        self._status_if_due(client, outbox, now)
        if now >= ext.next_misc:  # keepalive pings and their timeout
            ext.next_misc = now + 1.0
            self._network_result(client.loop_misc())
        self._snapshot()

    def _ext_open(self, ext: _External, now: float) -> None:
        self._session_started = now
        self._inflight.clear()
        self._inflight_ids.clear()
        self._acked.clear()
        self._receipts.clear()
        self._cursor = 0
        try:
            ext.outbox = Outbox(self.outbox_path, self.site, self.device, max_bytes=self.settings.max_outbox_bytes)
        except OutboxError as exc:
            self._error(f"sender cannot open the outbox: {exc}")
            ext.restart_at = now + backoff_delay(ext.open_attempt, cap=30.0, jitter=self.settings.jitter)
            ext.open_attempt += 1
            raise _Retry from exc
        ext.open_attempt = 0
        client = ext.client = self._client()
        watch = ext.watch
        client.on_socket_open = lambda c, u, sock: watch.opened(self, sock)
        client.on_socket_close = lambda c, u, sock: watch.closed(self, sock)
        client.on_socket_register_write = lambda c, u, sock: watch.want_write(self, sock, True)
        client.on_socket_unregister_write = lambda c, u, sock: watch.want_write(self, sock, False)
        ext.next_connect = now
        ext.connack_by = None
        ext.attempt = 0

    def _ext_connect(self, ext: _External, client: mqtt.Client, now: float) -> None:
        if not self._send_connect(client):
            self._ext_drop_socket(ext, client)
            self._ext_backoff(ext, now)
            return
        ext.connack_by = now + 10.0  # as the thread: a refused login is reported, not retried blindly

    def _ext_retry_later(self, ext: _External, now: float) -> None:
        """No CONNACK in time, or a refusal: close the socket and wait a backoff."""
        if ext.client is not None:
            self._ext_drop_socket(ext, ext.client)
        ext.connack_by = None
        self._ext_backoff(ext, now)

    def _ext_backoff(self, ext: _External, now: float) -> None:
        ext.next_connect = now + backoff_delay(ext.attempt, cap=self.settings.reconnect_cap_s,
                                               jitter=self.settings.jitter)
        ext.attempt += 1

    def _ext_drop_socket(self, ext: _External, client: mqtt.Client) -> None:
        sock = client.socket()
        if sock is not None:
            ext.watch.closed(self, sock)  # before the descriptor goes: its number may be reused at once
            try:
                sock.close()
            except OSError:
                pass

    def _ext_failed(self, ext: _External, exc: Exception, now: float) -> None:
        if not isinstance(exc, _Retry):
            self._failed(exc)
            ext.restart_at = now + backoff_delay(self._live.restarts - 1, base=self.settings.restart_base_s,
                                                 cap=self.settings.restart_cap_s, jitter=self.settings.jitter)
        if ext.outbox is not None:
            try:
                self._flush(ext.outbox)
            except Exception:
                log.exception("recording PUBACKs and receipts after a failure failed too")
        self._ext_end(ext)
        self._snapshot()

    def _ext_end(self, ext: _External) -> None:
        if ext.client is not None:
            self._ext_drop_socket(ext, ext.client)
            ext.client = None
        if ext.outbox is not None:
            ext.outbox.close()
            ext.outbox = None
        ext.connack_by = None
        self._live.connected = False
        self._live.central_online = False


class SocketWatch(Protocol):
    """What an external event loop does with a sender's socket (see :meth:`Sender.open_external`)."""

    def opened(self, sender: Sender, sock: Any) -> None:
        """The client opened ``sock``: watch it for reading."""

    def closed(self, sender: Sender, sock: Any) -> None:
        """``sock`` is about to close: stop watching it (may be called twice; the second does nothing)."""

    def want_write(self, sender: Sender, sock: Any, on: bool) -> None:
        """Watch ``sock`` for writing too (``on``) or no longer."""


class _Retry(Exception):
    """The outbox could not be opened: wait the backoff set, without counting a failed loop."""


@dataclass(slots=True)
class _External:
    """A caller-driven session's state (the thread keeps the same in local variables)."""

    watch: SocketWatch
    client: mqtt.Client | None = None
    outbox: Outbox | None = None
    next_connect: float = 0.0
    connack_by: float | None = None  # monotonic deadline of the CONNACK for the CONNECT that is out
    attempt: int = 0
    open_attempt: int = 0
    restart_at: float = 0.0
    next_flush: float = 0.0
    next_misc: float = 0.0


def _drop(client: mqtt.Client) -> None:
    """Close a failed session's connection without a DISCONNECT (the broker sends our will)."""
    sock = client.socket()
    if sock is not None:
        try:
            sock.close()
        except OSError:
            pass

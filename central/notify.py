"""The collector's alert threads: rules applied, alerts sent (docs/central.md, "Alerts").

:class:`AlertService` runs two named daemon threads next to the collector,
never on it, so nothing here can slow ingest:

- ``deskpulse-alert-rules`` applies the rules (:mod:`central.alertrules`):
  new answers every ``answer_every_s`` (half a second; in a flood, when a step
  takes long, after a rest of three times the step, so the rules take at most
  a quarter of the time from ingest), kiosks' conditions every
  ``alerts.check_every_s``;
- ``deskpulse-alert-sender`` sends what the store's ``alert_deliveries`` queue
  holds: on the protocol's ``{site}/alerts`` topic (its own MQTT client, QoS 1),
  to the webhook (a JSON POST of the same ``alert.v1`` payload) and by e-mail
  (:mod:`central.mail`). A failure is retried with exponential backoff and
  jitter (the webhook up to ``alerts.webhook.max_attempts`` times); one slow
  channel delays only the sender thread.
"""

from __future__ import annotations

import html
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import paho.mqtt.client as mqtt

from central import __version__, alertrules, mail
from central import alerts as book
from central.config import CentralConfig
from central.store import Store
from sync import protocol
from sync.broker import backoff_delay, make_client

log = logging.getLogger("deskpulse.central.alerts")

#: How long a claimed delivery is another sender's to retry after, should this one die mid-send.
LEASE: Final = timedelta(minutes=5)
#: After a step of the answer rules, rest at least this many times as long as it took.
RULES_REST: Final = 3.0
#: MQTT and e-mail deliveries are retried (with backoff up to an hour) this many times.
MAX_ATTEMPTS: Final = 50


class AlertService:
    """The rules thread and the sender thread of one collector process.

    Args:
        config: central's configuration (``[alerts]``, ``[mail]``, the broker).
        store: the migrated store.
        answer_every_s: how often new answers are looked at.
        retry_base_s: the first retry's delay (doubling, with jitter, up to ``retry_cap_s``).
        retry_cap_s: the longest delay between two attempts.
    """

    def __init__(self, config: CentralConfig, store: Store, *, answer_every_s: float = 0.5,
                 retry_base_s: float = 2.0, retry_cap_s: float = 3600.0) -> None:
        self.config, self.store = config, store
        self.answer_every_s = answer_every_s
        self.retry_base_s, self.retry_cap_s = retry_base_s, retry_cap_s
        self.watcher = alertrules.AnswerWatcher(store, config)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._client: mqtt.Client | None = None
        self._connected = threading.Event()
        #: Deliveries sent and failed attempts so far (for tests and logs).
        self.sent = 0
        self.failures = 0

    # ------------------------------------------------------------------ control

    def start(self) -> AlertService:
        """Start both threads (and the MQTT client). Safe to call twice."""
        if self._threads:
            return self
        self._stop.clear()
        self._connect()
        for name, target in (("deskpulse-alert-rules", self._rules), ("deskpulse-alert-sender", self._sender)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop both threads (each within ``timeout``) and disconnect. Safe to call twice."""
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("%s did not stop within %.0f s", thread.name, timeout)
        self._threads = []
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()

    def __enter__(self) -> AlertService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ rules

    def _rules(self) -> None:
        next_devices = 0.0
        while not self._stop.is_set():
            raised = []
            began = time.monotonic()
            try:
                raised += self.watcher.step()
                if time.monotonic() >= next_devices:
                    next_devices = time.monotonic() + self.config.alerts.check_every_s
                    raised += alertrules.check_devices(self.store, self.config)
            except Exception:  # the database may be away for a while; never end the thread
                log.exception("applying the alert rules failed; trying again")
                self._stop.wait(min(5.0, max(self.answer_every_s, 1.0)))
            if raised:
                self._wake.set()
            # A step reads each touched desk's window again, so in a flood (a backlog coming in at
            # thousands a second) steps take long and rules would take the interpreter from ingest in
            # the same process: rest at least RULES_REST times what the step took (at most a
            # quarter of the time on rules), which makes fewer, larger steps.
            self._stop.wait(self.rest_after(time.monotonic() - began))

    def rest_after(self, took: float) -> float:
        """Seconds to wait after a step of the rules that took ``took`` seconds."""
        return max(self.answer_every_s, RULES_REST * took)

    # ------------------------------------------------------------------ sending

    def _sender(self) -> None:
        while not self._stop.is_set():
            try:
                for delivery_id in book.due(self.store):
                    if self._stop.is_set():
                        break
                    delivery = book.claim(self.store, delivery_id, lease=LEASE)
                    if delivery is not None:
                        self._deliver(delivery)
            except Exception:
                log.exception("sending alerts failed; trying again")
            self._wake.wait(0.5)
            self._wake.clear()

    def _deliver(self, d: book.Delivery) -> None:
        try:
            if d.channel == book.MQTT:
                self._publish(d)
            elif d.channel == book.WEBHOOK:
                self._post(d)
            elif d.channel == book.EMAIL:
                self._mail(d)
            else:
                raise DeliveryError(f"unknown channel {d.channel!r}")
        except DeliveryError as exc:
            self.failures += 1
            limit = self.config.alerts.webhook.max_attempts if d.channel == book.WEBHOOK else MAX_ATTEMPTS
            retry_at = None
            if d.attempts < limit:
                delay = backoff_delay(d.attempts - 1, base=self.retry_base_s, cap=self.retry_cap_s)
                retry_at = datetime.now(UTC) + timedelta(seconds=delay)
            log.warning("alert %s by %s, attempt %d: %s; %s", d.alert.key, d.channel, d.attempts, exc,
                        "giving up" if retry_at is None else f"retrying at {retry_at:%H:%M:%S}")
            book.failed(self.store, d.delivery_id, str(exc), retry_at=retry_at)
            return
        self.sent += 1
        book.sent(self.store, d.delivery_id)

    def payload(self, d: book.Delivery) -> dict[str, Any]:
        """The ``alert.v1`` payload of a delivery (raised, or acknowledged with who and their comment)."""
        if d.ack is None:
            return d.alert.payload()
        return d.alert.payload("acknowledged", at=d.ack.at, by=d.ack.by, message=d.ack.comment)

    # MQTT: a client of its own (the collector's belongs to the collector thread).
    def _connect(self) -> None:
        client_id = f"{self.config.client_id[:120]}-alerts"
        client = make_client(client_id, self.config.broker)
        client.on_connect = lambda c, u, f, reason, p: (self._connected.set() if not reason.is_failure
                                                        else log.warning("broker refused the alert client: %s",
                                                                         reason))
        client.on_disconnect = lambda c, u, f, reason, p: self._connected.clear()
        client.reconnect_delay_set(1, 30)
        broker = self.config.broker
        client.connect_async(broker.host, broker.port, keepalive=broker.keepalive)
        client.loop_start()
        self._client = client

    def _publish(self, d: book.Delivery) -> None:
        client = self._client
        if client is None or not self._connected.wait(5.0):
            raise DeliveryError(f"not connected to the broker {self.config.broker.url}")
        raw = protocol.encode("alert", self.payload(d))
        info = client.publish(protocol.alerts_topic(d.alert.site), raw, qos=1)
        deadline = time.monotonic() + 10.0
        while not info.is_published():
            if time.monotonic() > deadline or self._stop.is_set() or not self._connected.is_set():
                raise DeliveryError("the broker did not acknowledge the alert (PUBACK) within 10 s")
            time.sleep(0.02)  # paho's own thread completes it; a short poll, bounded above

    def _post(self, d: book.Delivery) -> None:
        url = self.config.alerts.webhook.url
        if url is None:
            raise DeliveryError("no webhook configured (alerts.webhook.url)")
        body = json.dumps(self.payload(d), ensure_ascii=False, separators=(",", ":")).encode()
        request = urllib.request.Request(url, data=body, method="POST", headers={
            "Content-Type": "application/json", "User-Agent": f"DeskPulse/{__version__}",
            "Idempotency-Key": f"{d.alert.key}:{d.ack.ack_id if d.ack else 'raised'}"})
        try:
            with urllib.request.urlopen(request, timeout=self.config.alerts.webhook.timeout_s) as reply:
                reply.read(4096)
        except urllib.error.HTTPError as exc:
            raise DeliveryError(f"webhook {url} answered {exc.code} {exc.reason}") from None
        except (OSError, ValueError) as exc:
            raise DeliveryError(f"webhook {url}: {exc}") from None

    def _mail(self, d: book.Delivery) -> None:
        subject, text, body = email_for(self.config, d.alert)
        try:
            refused = mail.send(self.config.mail, self.config.alerts.email_to, subject, body, text)
        except mail.MailError as exc:
            raise DeliveryError(str(exc)) from None
        if refused:
            log.warning("alert %s: the SMTP server refused %s (the others got it)", d.alert.key, ", ".join(refused))


class DeliveryError(Exception):
    """One attempt to send failed (the reason says why); it is retried later."""


def email_for(config: CentralConfig, alert: book.Alert) -> tuple[str, str, str]:
    """An alert's e-mail: (subject, plain text, HTML)."""
    site = config.site(alert.site)
    where = site.desk(alert.device).name + ", " + site.name if alert.device else site.name
    kind = book.KIND_WORDS.get(alert.kind, alert.kind)
    raised = alert.raised_at.astimezone(site.tz).strftime("%a %d %b %Y, %H:%M %Z")
    # The address people reach: the first of web.origins (a reverse proxy's), else web.bind's.
    base = config.origins[0] + "/" if config.origins else config.dashboard_url
    link = f"{base}alerts?site={alert.site}"
    subject = f"DeskPulse alert: {kind} at {where}"
    text = f"{alert.message}\n\nRaised {raised}.\nAcknowledge it on the dashboard: {link}\n\n-- DeskPulse central"
    body = (f"<!doctype html><html lang=\"en\"><body style=\"font-family: sans-serif\">"
            f"<h1 style=\"font-size: 1.2em\">{html.escape(kind)} · {html.escape(where)}</h1>"
            f"<p>{html.escape(alert.message)}</p><p>Raised {html.escape(raised)}.</p>"
            f"<p><a href=\"{html.escape(link)}\">Acknowledge it on the dashboard</a></p></body></html>")
    return subject, text, body

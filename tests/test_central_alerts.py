"""Alerts (issue 16): rules on unhappy answers and kiosks' conditions, raised once, sent everywhere once.

Real parts: answers go through a real Mosquitto into a real collector
(:class:`central.ingest.Collector`) and the real alert threads
(:class:`central.notify.AlertService`); the webhook is a local HTTP server and
the e-mail a local aiosmtpd, both on loopback; the store is SQLite, and
PostgreSQL where the unique key's race matters.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from central import alertrules, mail, reads
from central import alerts as book
from central.accounts import Accounts
from central.alertrules import Answer, AnswerWatcher, unhappy_windows
from central.auth import hash_password
from central.config import AlertRule, CentralConfig, from_dict
from central.ingest import Collector
from central.notify import AlertService
from central.store import Store, alert_deliveries
from central.web import create_app
from sync import protocol
from sync.errors import ConfigError
from tests.support.alert_receivers import SmtpReceiver, WebhookReceiver
from tests.support.broker import Mosquitto
from tests.support.central import CentralProcess
from tests.support.events import feedback_event
from tests.support.mqtt_client import FakeDevice, MqttClient
from tests.support.wait import wait_for

SITE = "test-site"
T0 = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)



@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    with Store(f"sqlite:///{tmp_path / 'central.sqlite3'}") as s:
        s.migrate()
        yield s


def config_for(broker: Mosquitto | None = None, *, webhook: WebhookReceiver | None = None,
               smtp: SmtpReceiver | None = None, client_id: str = "collector-1", **alerts: Any) -> CentralConfig:
    data: dict[str, Any] = {"ingest": {"batch_ms": 20}, "alerts": {"check_every_s": 0.2, **alerts},
                            "sites": {SITE: {"name": "Test site", "desks": {"desk-1": {"name": "Desk One"}}}}}
    if broker is not None:
        data["broker"] = {"url": broker.url, "keepalive": 5, "client_id": client_id}
    if webhook is not None:
        data["alerts"]["webhook"] = {"url": webhook.url, "timeout_s": 10}
    if smtp is not None:
        data["mail"] = {"host": "127.0.0.1", "port": smtp.port, "security": "none",
                        "from": "DeskPulse <deskpulse@example.com>"}
        data["alerts"]["email_to"] = ["manager@example.com"]
    return from_dict(data)


def answer(rating: int, at: datetime | None = None, *, device: str = "desk-1", **fields: Any) -> bytes:
    event = feedback_event(SITE, device, rating=rating, ts=protocol.utc_timestamp(at), **fields)
    return protocol.encode("feedback", event)


def put(store: Store, at: datetime, *ratings: int, device: str = "desk-1", **fields: Any) -> None:
    store.insert_events([feedback_event(SITE, device, rating=r, ts=protocol.utc_timestamp(at + timedelta(seconds=i)),
                                        **fields) for i, r in enumerate(ratings)])


def all_alerts(store: Store) -> list[book.Alert]:
    return book.listing(store, limit=1000)


def all_sent(store: Store, alert_id: int) -> bool:
    """Whether every delivery of the alert is marked done (the receiver may have it a moment before)."""
    found = book.deliveries(store, alert_id)
    return bool(found) and {d["state"] for d in found} == {"done"}


def caught_up(watcher: AnswerWatcher, store: Store) -> bool:
    """Whether the watcher has looked at every answer stored so far."""
    newest = reads.last_ingest_id(store)
    return watcher.cursor is not None and watcher.cursor >= newest


# ---------------------------------------------------------------------------- the rule itself

RULE = AlertRule()  # 50 % of at least 4 answers in 15 minutes


def answers(*spec: tuple[int, bool]) -> list[Answer]:
    """(minutes after T0, unhappy) -> answers, sorted."""
    return sorted((Answer(T0 + timedelta(minutes=m), bad) for m, bad in spec), key=lambda a: a.at)


def test_half_of_four_unhappy_in_fifteen_minutes_meets_the_default_rule() -> None:
    found = unhappy_windows(answers((0, True), (3, False), (5, True), (9, False)), RULE)
    assert found == [(T0 + timedelta(minutes=9) - timedelta(minutes=15), T0 + timedelta(minutes=9), 4, 2)]


@pytest.mark.parametrize("spec", [
    ((0, True), (3, True), (5, True)),  # three answers: too few
    ((0, True), (3, False), (5, False), (9, False)),  # one in four unhappy
    ((0, True), (5, True), (16, False), (17, False)),  # four, but not within 15 minutes of each other
    ((0, True), (15, True), (15, False), (15, False)),  # the window is (end - 15 min, end]: 0 is outside
], ids=["too-few", "one-in-four", "spread-out", "window-open-at-start"])
def test_the_rule_is_not_met(spec: tuple[tuple[int, bool], ...]) -> None:
    assert unhappy_windows(answers(*spec), RULE) == []


def test_a_long_run_of_unhappy_answers_gives_one_window_per_window_length() -> None:
    run = answers(*[(m, True) for m in range(0, 40)])
    ends = [end for _, end, _, _ in unhappy_windows(run, RULE)]
    assert ends == [T0 + timedelta(minutes=3), T0 + timedelta(minutes=18), T0 + timedelta(minutes=33)]


def test_the_configuration_overrides_per_site_and_desk_and_names_bad_values() -> None:
    config = from_dict({"alerts": {"min_answers": 6, "scope": "both",
                                   "sites": {"north": {"unhappy_pct": 70, "scope": "site",
                                                       "desks": {"a": {"enabled": False, "window_min": 5}}}}}})
    alerts = config.alerts
    assert alerts.rule("south", "x") == AlertRule(min_answers=6)
    assert alerts.rule("north") == AlertRule(min_answers=6, unhappy_pct=70)
    assert alerts.rule("north", "a") == AlertRule(enabled=False, min_answers=6, unhappy_pct=70, window_min=5)
    assert (alerts.scope_of("north"), alerts.scope_of("south")) == ("site", "both")
    for data, key in [({"alerts": {"unhappy_pct": 0}}, "alerts.unhappy_pct"),
                      ({"alerts": {"sites": {"n": {"desks": {"a": {"min_answers": "4"}}}}}},
                       "alerts.sites.n.desks.a.min_answers"),
                      ({"alerts": {"scope": "room"}}, "alerts.scope"),
                      ({"alerts": {"webhook": {"url": "ftp://x"}}}, "alerts.webhook.url"),
                      ({"alerts": {"email_to": ["a@b.example"]}}, "alerts.email_to"),
                      ({"alerts": {"window": 15}}, "alerts.window"),
                      ({"mail": {"port": 25}}, "mail.host"),
                      ({"mail": {"host": "smtp.example", "security": "tls"}}, "mail.security"),
                      ({"mail": {"host": "smtp.example", "user": "dp"}}, "mail.user")]:
        with pytest.raises(ConfigError, match=f"central.toml: (unknown key )?{key.replace('.', '[.]')}"):
            from_dict(data, source="central.toml")


# ---------------------------------------------------------------------------- raised once

def race(store: Store, device: str, keys: list[str]) -> list[book.Alert | None]:
    """One thread per key raises an unhappy alert for ``device``, all at once (windows a minute apart)."""
    barrier = threading.Barrier(len(keys))
    results: list[book.Alert | None] = []

    def raise_one(n: int, key: str) -> None:
        until = T0 + timedelta(minutes=n)
        cand = book.Candidate(key=key, kind=book.UNHAPPY, site=SITE, device=device,
                              since=until - timedelta(minutes=15), until=until, late=False, message="m",
                              overlap=timedelta(minutes=15))
        barrier.wait()
        results.append(book.raise_alert(store, cand, send_on=[book.MQTT, book.WEBHOOK]))

    threads = [threading.Thread(target=raise_one, args=(n, k)) for n, k in enumerate(keys)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == len(keys)
    return results


def test_racing_raises_of_one_alert_store_it_once(store: Store) -> None:
    """Eight threads raise the same key, and eight more overlapping windows: one alert each time."""
    same = race(store, "desk-1", ["unhappy:test-site:desk-1:k"] * 8)
    overlapping = race(store, "desk-2", [f"unhappy:test-site:desk-2:{n}" for n in range(8)])
    assert len([r for r in same if r is not None]) == 1
    assert len([r for r in overlapping if r is not None]) == 1
    assert len(all_alerts(store)) == 2
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(alert_deliveries)).scalar() == 4


def test_two_watchers_on_one_store_raise_an_alert_once(store: Store) -> None:
    now = datetime.now(UTC)
    config = config_for()
    put(store, now - timedelta(minutes=5), 1, 5, 1, 5, 1, 1)
    watchers = [AnswerWatcher(store, config) for _ in range(2)]
    barrier = threading.Barrier(2)
    raised: list[list[book.Alert]] = []

    def step(w: AnswerWatcher) -> None:
        barrier.wait()
        raised.append(w.step())

    threads = [threading.Thread(target=step, args=(w,)) for w in watchers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(len(r) for r in raised) == [0, 1]
    (alert,) = all_alerts(store)
    assert (alert.kind, alert.device, alert.late, alert.answers, alert.unhappy) == ("unhappy", "desk-1", False, 4, 2)
    assert alert.message.startswith("Desk One, Test site: 2 of 4 answers unhappy (50 %)")


def test_flagged_and_unplaced_answers_do_not_count(sqlite_store: Store) -> None:
    now = datetime.now(UTC)
    watcher = AnswerWatcher(sqlite_store, config_for())
    put(sqlite_store, now, 1, 1, 1, 1, flags=["test"])
    put(sqlite_store, now, 1, 1, 1, 1, device="desk-2", flags=["rapid_repeat"])
    put(sqlite_store, now, 1, 1, 1, 1, device="desk-3", clock_synced=False)  # placed at receipt: time unknown
    assert watcher.step() == [] and caught_up(watcher, sqlite_store)
    assert all_alerts(sqlite_store) == []


def test_flagged_and_unplaced_answers_do_not_fill_a_counted_answers_window(sqlite_store: Store) -> None:
    """The window's own read (in SQL) leaves out what the step leaves out: three of each kind next to
    one counted unhappy answer are one answer, below the rule's four; three counted ones more raise it."""
    now = datetime.now(UTC)
    watcher = AnswerWatcher(sqlite_store, config_for())
    put(sqlite_store, now, 1, 1, 1, flags=["test"])
    put(sqlite_store, now, 1, 1, 1, flags=["rapid_repeat", "test"])
    put(sqlite_store, now, 1, 1, 1, clock_synced=False)
    put(sqlite_store, now + timedelta(seconds=10), 1)
    assert watcher.step() == [] and caught_up(watcher, sqlite_store)
    put(sqlite_store, now + timedelta(seconds=20), 1, 5, 1)
    (alert,) = watcher.step()
    assert (alert.answers, alert.unhappy) == (4, 3)


def test_after_a_long_step_the_rules_rest_three_times_as_long(sqlite_store: Store) -> None:
    """In a flood a step reads every touched desk's window again: the rules leave the interpreter to
    ingest three quarters of the time; a quick step keeps the half-second rhythm."""
    service = AlertService(config_for(), sqlite_store)  # not started: only its pacing is asked
    assert service.rest_after(0.01) == service.answer_every_s == 0.5
    assert service.rest_after(0.4) == pytest.approx(1.2)


def test_a_step_after_a_flood_reads_each_desks_window_once_and_finds_its_alert(sqlite_store: Store) -> None:
    """Thousands of new answers at many desks in one step (grouped per desk in SQL): the one desk that
    meets the rule raises its alert, once, and the cursor passes every answer."""
    now = datetime.now(UTC)
    watcher = AnswerWatcher(sqlite_store, config_for())
    assert watcher.step() == []
    for d in range(40):
        put(sqlite_store, now - timedelta(minutes=5), *([5, 4, 3] * 20), device=f"busy-{d}")
    put(sqlite_store, now, 5, 1, 1, 5, device="desk-1")
    (alert,) = watcher.step()
    assert (alert.device, alert.answers, alert.unhappy) == ("desk-1", 4, 2)
    assert caught_up(watcher, sqlite_store) and watcher.step() == []


def test_a_site_scope_counts_every_desk_together(sqlite_store: Store) -> None:
    now = datetime.now(UTC)
    watcher = AnswerWatcher(sqlite_store, config_for(scope="site"))
    put(sqlite_store, now, 1, 5)
    put(sqlite_store, now, 1, 5, device="desk-2")
    (alert,) = watcher.step()
    assert (alert.device, alert.key.split(":")[:3]) == (None, ["unhappy", SITE, "_site"])


def test_old_answers_raise_a_late_alert_that_is_never_sent(sqlite_store: Store) -> None:
    watcher = AnswerWatcher(sqlite_store, config_for())
    assert watcher.step() == []
    put(sqlite_store, datetime.now(UTC) - timedelta(hours=3), 1, 1, 2, 5)
    (alert,) = watcher.step()
    assert alert.late and book.deliveries(sqlite_store, alert.alert_id) == []
    assert book.listing(sqlite_store, open_only=True, live_only=True) == []


# ---------------------------------------------------------------------------- kiosk conditions

def status(device: str, state: str = "online", **health: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"schema": 1, "site": SITE, "device": device, "state": state,
                            "ts": protocol.utc_timestamp()}
    if state == "online":
        body["health"] = {"backlog": 0, "oldest_pending_age_s": None, **health}
    protocol.validate("status", body)
    return body


def test_kiosk_conditions_raise_once_after_their_time_and_clear(store: Store) -> None:
    config = config_for()
    now = datetime.now(UTC)
    store.record_status(status("off-1", "offline"))
    store.record_status(status("back-1", backlog=40, oldest_pending_age_s=45 * 60.0))
    store.record_status(status("test-1", alarms=[{"code": protocol.TEST_MODE_ALARM, "message": "test mode on"}]))
    store.record_status(status("cfg-1", config_error={"version": 7, "reason": "scale 9 is not 3, 4 or 5"}))
    store.record_status(status("fine-1"))
    store.record_status(status("gone-1", "offline"))
    store.retire_device(SITE, "gone-1")

    first = alertrules.check_devices(store, config, now)
    assert sorted((a.kind, a.device) for a in first) == [("backlog", "back-1"), ("refused-survey", "cfg-1")]
    assert "scale 9 is not 3, 4 or 5" in next(a.message for a in first if a.kind == "refused-survey")
    later = alertrules.check_devices(store, config, now + timedelta(minutes=31))
    assert sorted((a.kind, a.device) for a in later) == [("offline", "off-1"), ("test-mode", "test-1")]
    assert alertrules.check_devices(store, config, now + timedelta(minutes=40)) == []  # once while it holds
    assert len(all_alerts(store)) == 4

    store.record_status(status("off-1"))  # back online
    alertrules.check_devices(store, config, now + timedelta(minutes=41))
    offline = next(a for a in all_alerts(store) if a.kind == "offline")
    assert offline.cleared_at is not None and not offline.open
    store.record_status(status("off-1", "offline"))  # offline again: a new episode, a new alert later
    assert alertrules.check_devices(store, config, datetime.now(UTC) + timedelta(minutes=16))[0].kind == "offline"
    assert len([a for a in all_alerts(store) if a.kind == "offline"]) == 2


# ---------------------------------------------------------------------------- through MQTT, sent everywhere

@pytest.fixture
def receivers() -> Iterator[tuple[WebhookReceiver, SmtpReceiver]]:
    with WebhookReceiver() as webhook, SmtpReceiver() as smtp:
        yield webhook, smtp


def test_answers_through_mqtt_raise_an_alert_sent_once_everywhere(
        broker: Mosquitto, sqlite_store: Store, receivers: tuple[WebhookReceiver, SmtpReceiver]) -> None:
    webhook, smtp = receivers
    config = config_for(broker, webhook=webhook, smtp=smtp)
    topic = protocol.alerts_topic(SITE)
    with MqttClient(broker, "watcher", subscribe=[topic]) as listener, Collector(config, sqlite_store) as collector, \
            AlertService(config, sqlite_store, retry_base_s=0.05) as service, FakeDevice(broker, "desk-1") as device:
        assert collector.wait_subscribed(10)
        for rating in (1, 5, 5):  # three answers: not enough yet
            device.send(answer(rating))
        wait_for(lambda: collector.stats.stored == 3 and caught_up(service.watcher, sqlite_store),
                 what="three answers stored and looked at")
        assert all_alerts(sqlite_store) == []
        device.send(answer(2))  # four answers, two unhappy: 50 %
        wait_for(lambda: len(webhook.ok()) == 1 and len(smtp.messages) == 1 and listener.payloads(topic),
                 what="the alert on the webhook, by e-mail and on MQTT")
        for rating in (1, 1):  # the same run of unhappy answers: no second alert
            device.send(answer(rating))
        wait_for(lambda: collector.stats.stored == 6 and caught_up(service.watcher, sqlite_store),
                 what="two more answers looked at")

        (alert,) = all_alerts(sqlite_store)
        published = [protocol.decode("alert", raw) for raw in listener.payloads(topic)]  # validated by the schema
        assert published == [alert.payload()] == webhook.ok()
        assert published[0]["kind"] == "unhappy" and published[0]["device"] == "desk-1"
        assert smtp.messages[0].rcpt_tos == ["manager@example.com"]
        (mail_text,) = smtp.texts()
        assert "Subject: DeskPulse alert: Unhappy customers at Desk One, Test site" in mail_text
        assert "2 of 4 answers unhappy (50 %)" in mail_text
        wait_for(lambda: all_sent(sqlite_store, alert.alert_id), what="every delivery marked done")

        # Acknowledged: published and posted once more, with who and the comment.
        book.acknowledge(sqlite_store, alert.alert_id, "ann", "Opened a second desk",
                         send_on=book.channels(config, acknowledged=True))
        wait_for(lambda: len(webhook.ok()) == 2 and len(listener.payloads(topic)) == 2, what="the acknowledgement")
        ack = protocol.decode("alert", listener.payloads(topic)[1])
        assert (ack["state"], ack["by"], ack["message"], ack["key"]) == (
            "acknowledged", "ann", "Opened a second desk", alert.key)
        assert len(smtp.messages) == 1  # e-mail is for raised alerts only


def test_a_backlog_of_old_answers_through_mqtt_raises_no_live_alert(
        broker: Mosquitto, sqlite_store: Store, receivers: tuple[WebhookReceiver, SmtpReceiver]) -> None:
    webhook, smtp = receivers
    config = config_for(broker, webhook=webhook, smtp=smtp)
    old = datetime.now(UTC) - timedelta(hours=2)
    with Collector(config, sqlite_store) as collector, AlertService(config, sqlite_store) as service, \
            FakeDevice(broker, "desk-1") as device:
        assert collector.wait_subscribed(10)
        for n, rating in enumerate((1, 1, 2, 5, 1, 1)):  # after an outage: answers from two hours ago
            device.send(answer(rating, old + timedelta(minutes=n)))
        wait_for(lambda: collector.stats.stored == 6 and caught_up(service.watcher, sqlite_store),
                 what="the backlog stored and looked at")
        (alert,) = all_alerts(sqlite_store)
        assert alert.late and book.deliveries(sqlite_store, alert.alert_id) == []
        assert book.listing(sqlite_store, open_only=True, live_only=True) == []
    assert webhook.bodies == [] and smtp.messages == []


def test_a_failing_webhook_is_retried_and_never_holds_up_ingest(broker: Mosquitto, sqlite_store: Store) -> None:
    gate = threading.Event()
    with WebhookReceiver((500,), gate=gate) as webhook:
        config = config_for(broker, webhook=webhook)
        with Collector(config, sqlite_store) as collector, \
                AlertService(config, sqlite_store, retry_base_s=0.05) as service, \
                FakeDevice(broker, "desk-1") as device, FakeDevice(broker, "desk-2") as other:
            assert collector.wait_subscribed(10)
            for rating in (1, 1, 1, 1):
                device.send(answer(rating))
            assert webhook.waiting.wait(15), "the webhook was not called"
            # The sender is stuck in the webhook's request: ingest goes on regardless.
            sent = [feedback_event(SITE, "desk-2", rating=4) for _ in range(50)]
            for event in sent:
                other.send(protocol.encode("feedback", event))
            wait_for(lambda: all(other.outcomes(e["id"]) == ["stored"] for e in sent), what="50 answers stored")
            assert webhook.answers == [] and not gate.is_set()  # still blocked while they were stored
            gate.set()  # the webhook answers 500, then 200 to the retry
            wait_for(lambda: len(webhook.ok()) == 1 and all_sent(sqlite_store, 1), what="the retry to succeed")
            assert webhook.answers == [500, 200]
            assert webhook.bodies[0] == webhook.bodies[1] == all_alerts(sqlite_store)[0].payload()
            (hook,) = [d for d in book.deliveries(sqlite_store, 1) if d["channel"] == "webhook"]
            assert (hook["state"], hook["attempts"]) == ("done", 2)
            assert service.failures == 1


@pytest.mark.slow
def test_two_collectors_raise_an_alert_once(broker: Mosquitto, store_url: str, tmp_path: Path) -> None:
    """Two real deskpulse-central processes on one store: both look at the answers, one raises the alert."""
    with WebhookReceiver() as webhook, MqttClient(broker, "watcher", subscribe=[protocol.alerts_topic(SITE)]) as mq:
        toml = f'[alerts]\ncheck_every_s = 1\n[alerts.webhook]\nurl = "{webhook.url}"\n'
        first = CentralProcess(broker, tmp_path / "a", db_url=store_url, config=toml).start()
        try:
            second = CentralProcess(broker, tmp_path / "b", db_url=store_url, config=toml).start()
            try:
                with FakeDevice(broker, "desk-1") as device:
                    for rating in (1, 2, 1, 5):
                        device.send(answer(rating))
                    logs = lambda: first.log() + second.log()  # noqa: E731
                    wait_for(lambda: "alert: " in logs() and "was raised already" in logs() and webhook.ok(),
                             timeout=20, what="one collector to raise the alert and the other to find it raised")
                    mq.wait_for(lambda: mq.payloads(protocol.alerts_topic(SITE)), what="the alert on MQTT")
                    with Store(store_url) as shared:
                        wait_for(lambda: all_sent(shared, all_alerts(shared)[0].alert_id),
                                 what="every delivery marked done")
            finally:
                second.stop()
        finally:
            first.stop()
        with Store(store_url) as store:
            (alert,) = all_alerts(store)
            assert all_sent(store, alert.alert_id)
        assert [first.log().count("alert: "), second.log().count("alert: ")] in ([1, 0], [0, 1])
        assert webhook.bodies == [alert.payload()]
        assert [protocol.decode("alert", raw) for raw in mq.payloads(protocol.alerts_topic(SITE))] == [alert.payload()]


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_mail_sends_with_a_login_and_names_the_server_when_it_is_gone(tmp_path: Path) -> None:
    (tmp_path / "smtp-password").write_text("s3cret\n")
    with SmtpReceiver(login=("dp", "s3cret")) as smtp:
        def mail_config(password_file: str) -> Any:
            return from_dict({"mail": {"host": "127.0.0.1", "port": smtp.port, "security": "none", "user": "dp",
                                       "password_file": password_file, "from": "DeskPulse <dp@example.com>"}},
                             base=tmp_path).mail

        assert mail.send(mail_config("smtp-password"), ["a@example.com", "b@example.com"], "Weekly report",
                         "<p>Index <b>78</b></p>", "Index 78") == []
        (envelope,) = smtp.messages
        assert envelope.rcpt_tos == ["a@example.com", "b@example.com"]
        (text,) = smtp.texts()
        assert "Subject: Weekly report" in text and "Index 78" in text and "<b>78</b>" in text
        closed = mail_config("smtp-password")
    # The server gone: the error names it and the reason (the sender retries later).
    with pytest.raises(mail.MailError, match=f"SMTP server 127.0.0.1:{smtp.port} [(]none[)]: ConnectionRefused"):
        mail.send(closed, ["a@example.com"], "s", "<p>h</p>", "t")


def test_a_refused_survey_reported_through_mqtt_raises_an_alert_in_the_collector(
        broker: Mosquitto, sqlite_store: Store) -> None:
    with WebhookReceiver() as webhook:
        config = config_for(broker, webhook=webhook)
        with Collector(config, sqlite_store) as collector, AlertService(config, sqlite_store) as service, \
                FakeDevice(broker, "desk-1") as device:
            assert collector.wait_subscribed(10)
            body = status("desk-1", config_error={"version": 3, "reason": "question.en is missing"})
            device.publish(device.status_topic, protocol.encode("status", body), retain=True)
            wait_for(lambda: webhook.ok(), what="the alert on the webhook")
            (posted,) = webhook.ok()
            assert (posted["kind"], posted["device"]) == ("refused-survey", "desk-1")
            assert "question.en is missing" in posted["message"]
            device.publish(device.status_topic, protocol.encode("status", status("desk-1")), retain=True)
            wait_for(lambda: all_alerts(sqlite_store)[0].cleared_at is not None, what="the alert to clear")
            (alert,) = all_alerts(sqlite_store)
            wait_for(lambda: all_sent(sqlite_store, alert.alert_id), what="every delivery marked done")
            assert {d["channel"] for d in book.deliveries(sqlite_store, alert.alert_id)} == {"mqtt", "webhook"}
            assert service.sent == 2 and len(webhook.bodies) == 1


# ---------------------------------------------------------------------------- the web side

def block(client: TestClient) -> str:
    """The open alerts block the live stream sends first."""
    reply = client.get("/api/alerts/stream")
    assert reply.status_code == 200
    data = next(line for line in reply.text.splitlines() if line.startswith("data: "))
    return str(json.loads(data[6:])["html"])


def sign_in(client: TestClient, name: str) -> None:
    reply = client.post("/login", data={"name": name, "password": "correct horse battery"},
                        headers={"Origin": "http://testserver"}, follow_redirects=False)
    assert reply.status_code == 303, reply.text


def test_an_admin_acknowledges_with_a_comment_and_a_viewer_cannot(sqlite_store: Store) -> None:
    config = config_for()
    put(sqlite_store, datetime.now(UTC), 1, 1, 1, 1)
    (alert,) = AnswerWatcher(sqlite_store, config).step()
    app = create_app(sqlite_store, config, poll_s=0.05, stream_idle_exit_s=0.3)
    with TestClient(app) as open_client:  # no accounts yet: the open dashboard (loopback) may acknowledge
        shown = block(open_client)
        assert "Unhappy customers" in shown and f'action="/alerts/{alert.alert_id}/ack"' in shown
    accounts = Accounts(sqlite_store, config.dashboard.accounts)
    hashed = hash_password("correct horse battery")
    accounts.add("vic", hashed, "viewer")
    accounts.add("ann", hashed, "admin")
    with TestClient(app) as viewer, TestClient(app) as admin:
        sign_in(viewer, "vic")
        sign_in(admin, "ann")
        assert "Unhappy customers" in block(viewer) and "/ack" not in block(viewer)  # a viewer sees no form
        refused = viewer.post(f"/api/alerts/{alert.alert_id}/ack", json={"comment": "seen"})
        assert refused.status_code == 403
        foreign = admin.post(f"/alerts/{alert.alert_id}/ack", data={"comment": "x"},
                             headers={"Origin": "https://evil.example"})
        assert foreign.status_code == 403  # cross-site form refused
        assert admin.post("/api/alerts/999/ack", json={"comment": "x"}).status_code == 404
        done = admin.post(f"/alerts/{alert.alert_id}/ack", data={"comment": "Opened  desk 2", "next": "/alerts"},
                          headers={"Origin": "http://testserver", "Accept": "text/html"}, follow_redirects=False)
        assert done.status_code == 303 and done.headers["location"].startswith("/alerts?msg=")
        listed = admin.get("/api/alerts").json()
        assert listed[0]["acked_by"] == "ann" and listed[0]["acks"][0]["comment"] == "Opened desk 2"
        page = admin.get("/alerts").text
        assert "Opened desk 2" in page and "acknowledged" in page
        assert "Unhappy customers" not in block(admin) and "No open alerts" in block(admin)

"""Credentials, ACLs and TLS against a real Mosquitto configured like production."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from central.config import from_dict as central_config
from central.ingest import Collector
from central.store import Store
from device.kiosk import make_sender
from sync import protocol
from sync.acl import acl_text
from sync.outbox import State
from tests.support.broker import Mosquitto
from tests.support.delivery import outbox_states
from tests.support.kiosk import HeadlessKiosk
from tests.support.mqtt_client import MqttClient
from tests.support.wait import wait_for

SITE = "test-site"
USERS = {"deskpulse-central": "central-secret", f"{SITE}.desk-1": "desk1-secret", f"{SITE}.desk-2": "desk2-secret"}


@pytest.fixture
def secured(broker: Mosquitto, tmp_path: Path) -> Mosquitto:
    """The broker with passwords and the generated ACL (no anonymous access)."""
    passwords = tmp_path / "passwords"
    for n, (user, password) in enumerate(USERS.items()):
        subprocess.run(["mosquitto_passwd", "-b", *([] if n else ["-c"]), str(passwords), user, password],
                       check=True, capture_output=True)
    acl = tmp_path / "deskpulse.acl"
    acl.write_text(acl_text([(SITE, "desk-1"), (SITE, "desk-2")]))
    broker.extra_config = f"allow_anonymous false\npassword_file {passwords}\nacl_file {acl}"
    broker.restart()
    return broker


def secret_file(tmp_path: Path, user: str, password: str | None = None) -> Path:
    path = tmp_path / f"{user}.password"
    path.write_text((password or USERS[user]) + "\n")
    return path


@pytest.fixture
def collector(secured: Mosquitto, tmp_path: Path) -> Iterator[Collector]:
    store = Store(f"sqlite:///{tmp_path / 'central.sqlite3'}")
    store.migrate()
    config = central_config({"broker": {"url": secured.url, "username": "deskpulse-central",
                                        "password_file": str(secret_file(tmp_path, "deskpulse-central")),
                                        "client_id": "central-1"}})
    with Collector(config, store) as c:
        assert c.wait_subscribed(10), "central did not log in and subscribe"
        yield c
    store.close()


def client_of(broker: Mosquitto, user: str) -> MqttClient:
    return MqttClient(broker, user, username=user, password=USERS[user])


def test_a_device_may_use_only_its_own_topics(secured: Mosquitto) -> None:
    with client_of(secured, f"{SITE}.desk-1") as desk1, client_of(secured, f"{SITE}.desk-2") as desk2, \
            client_of(secured, "deskpulse-central") as central:
        assert desk1.publish(protocol.feedback_topic(SITE, "desk-2"), b"{}", check=False) == 0x87  # not authorized
        assert desk1.publish(protocol.feedback_topic(SITE, "desk-1"), b"{}") == 0x10  # accepted, no subscribers yet

        # desk-1 listens on desk-2's receipts (Mosquitto grants the subscription
        # but never delivers what the ACL does not let it read).
        desk1.subscribe(protocol.receipt_topic(SITE, "desk-2"), protocol.receipt_topic(SITE, "desk-1"))
        desk2.subscribe(protocol.receipt_topic(SITE, "desk-2"))
        central.publish(protocol.receipt_topic(SITE, "desk-2"), b"[]")
        central.publish(protocol.receipt_topic(SITE, "desk-1"), b"[]")  # after desk-2's: the marker for desk-1
        desk1.wait_for(lambda: desk1.messages(), what="desk-1's own receipt")
        desk2.wait_for(lambda: desk2.messages(), what="desk-2's own receipt")
        assert [m.topic for m in desk1.messages()] == [protocol.receipt_topic(SITE, "desk-1")]
        assert [m.topic for m in desk2.messages()] == [protocol.receipt_topic(SITE, "desk-2")]


def test_the_whole_path_works_with_passwords_and_the_acl(secured, collector, kiosk_config, tmp_path) -> None:
    config = kiosk_config(secured.url, broker={"username": f"{SITE}.desk-1",
                                              "password_file": str(secret_file(tmp_path, f"{SITE}.desk-1"))})
    sender = make_sender(config).start()
    with HeadlessKiosk(config, sender=sender) as k:
        k.tap_rating(5)
        wait_for(lambda: set(outbox_states(config.outbox_path).values()) == {State.CONFIRMED},
                 what="the answer confirmed through the secured broker")
    assert collector.stats.stored == 1


def test_a_wrong_password_is_reported_and_answers_stay_pending(secured, kiosk_config, tmp_path) -> None:
    config = kiosk_config(secured.url, broker={
        "username": f"{SITE}.desk-1", "password_file": str(secret_file(tmp_path, f"{SITE}.desk-1", "wrong"))})
    sender = make_sender(config).start()
    with HeadlessKiosk(config, sender=sender) as k:
        k.tap_rating(3)
        wait_for(lambda: sender.status.last_error and "refused" in sender.status.last_error,
                 what="the sender to report the refusal")
        assert "user name or password" in sender.status.last_error.lower() or \
            "not authorized" in sender.status.last_error.lower()
        assert set(outbox_states(config.outbox_path).values()) == {State.PENDING}
        assert k.kiosk.flow.state.screen == "thanks"  # the customer saw nothing of it


def test_publishing_outside_the_acl_is_reported_and_answers_stay_pending(secured, kiosk_config, tmp_path) -> None:
    # Credentials of desk-1, but configured as desk-2: the broker refuses its feedback.
    config = kiosk_config(secured.url, device={"name": "desk-2"}, broker={
        "username": f"{SITE}.desk-1", "password_file": str(secret_file(tmp_path, f"{SITE}.desk-1"))})
    sender = make_sender(config).start()
    with HeadlessKiosk(config, sender=sender) as k:
        k.tap_rating(2)
        wait_for(lambda: sender.status.last_error and "0x87" in sender.status.last_error,
                 what="the sender to report 'not authorized'")
        assert set(outbox_states(config.outbox_path).values()) == {State.PENDING}


def make_certificates(folder: Path) -> dict[str, Path]:
    """A throw-away CA, a server certificate for 127.0.0.1 and a client certificate."""
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=folder)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=DeskPulse test CA",
        "-keyout", "ca.key", "-out", "ca.crt")
    for name in ("server", "client"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
            "-out", f"{name}.csr")
        (folder / f"{name}.ext").write_text("subjectAltName=IP:127.0.0.1\n")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.crt")
    return {n: folder / n for n in ("ca.crt", "server.crt", "server.key", "client.crt", "client.key")}


def test_tls_with_a_client_certificate_delivers(broker: Mosquitto, kiosk_config, tmp_path: Path) -> None:
    certs = make_certificates(tmp_path)
    broker.extra_config = (f"cafile {certs['ca.crt']}\ncertfile {certs['server.crt']}\n"
                           f"keyfile {certs['server.key']}\nrequire_certificate true")
    broker.restart()
    url = f"mqtts://127.0.0.1:{broker.port}"
    config = kiosk_config(url, broker={"ca_file": str(certs["ca.crt"]), "cert_file": str(certs["client.crt"]),
                                       "key_file": str(certs["client.key"])})
    sender = make_sender(config).start()
    with HeadlessKiosk(config, sender=sender) as k:
        k.tap_rating(4)
        wait_for(lambda: set(outbox_states(config.outbox_path).values()) == {State.SENT},
                 what="a PUBACK over TLS")
        assert sender.status.connected

    # Without the client certificate the broker refuses the handshake: reported, nothing lost.
    plain = kiosk_config(url, device={"name": "desk-3", "data_dir": str(tmp_path / "d3")},
                         broker={"ca_file": str(certs["ca.crt"])})
    sender = make_sender(plain).start()
    with HeadlessKiosk(plain, sender=sender) as k:
        k.tap_rating(1)
        wait_for(lambda: sender.status.last_error is not None, what="a TLS error")
        assert set(outbox_states(plain.outbox_path).values()) == {State.PENDING}

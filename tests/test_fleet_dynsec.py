"""Device credentials on Mosquitto's dynamic-security plugin, against a real broker with the real plugin.

``deskpulse-central device add`` creates a kiosk's client (client id bound), its
role and a password and writes the provisioning file; a kiosk set up from that
file delivers answers; its credentials speak for no other desk and take no other
client id; ``device remove`` locks it out and marks it retired.
"""

from __future__ import annotations

import io
import stat
from pathlib import Path

import pytest

from central import cli, fleet
from central.config import CentralConfig
from central.config import from_dict as central_config
from central.ingest import Collector
from central.reads import device_health
from central.store import Store
from device.kiosk import make_sender
from sync import dynsec, protocol, provision
from sync.outbox import State
from tests.support.broker import Mosquitto
from tests.support.delivery import outbox_states
from tests.support.kiosk import HeadlessKiosk
from tests.support.mqtt_client import MqttClient
from tests.support.wait import wait_for

SITE = "test-site"



def write_central_toml(tmp_path: Path, broker: Mosquitto, admin_password: str | None = None) -> Path:
    (tmp_path / "admin.password").write_text((admin_password or broker.admin_password) + "\n")
    path = tmp_path / "central.toml"
    path.write_text(f'[broker]\nurl = "{broker.url}"\n\n[database]\nurl = "sqlite:///{tmp_path}/central.sqlite3"\n\n'
                    f'[fleet]\nadmin_password_file = "admin.password"\n')
    return path


@pytest.fixture
def central(plugin_broker: Mosquitto, tmp_path: Path) -> CentralConfig:
    """Central's configuration for the plugin broker, with the collectors' and dashboard's clients made."""
    from central.config import load

    config = load(write_central_toml(tmp_path, plugin_broker))
    with Store(config.database_url) as store:
        store.migrate()  # central has run once: the device commands never create or migrate it
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    done = fleet.setup_central(config, secrets)
    assert [line.split(";")[0] for line in done] == ["created client deskpulse-central",
                                                     "created client deskpulse-dashboard"]
    return config


def client_of(broker: Mosquitto, p: provision.Provision, client_id: str | None = None) -> MqttClient:
    return MqttClient(broker, client_id or p.username, username=p.username, password=p.password)


def provisioned(config: CentralConfig, tmp_path: Path, device: str) -> provision.Provision:
    return provision.load(fleet.add_device(config, SITE, device, tmp_path / f"{device}.provision.toml"))


def test_a_kiosk_set_up_from_its_provisioning_file_delivers(plugin_broker, central, kiosk_config, tmp_path) -> None:
    out = fleet.add_device(central, SITE, "desk-1", tmp_path / "desk-1.toml")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600  # it holds a password
    etc = tmp_path / "etc"
    etc.mkdir()
    keys = provision.install(provision.load(out), etc)
    assert stat.S_IMODE((etc / "mqtt-password").stat().st_mode) == 0o640

    store = Store(central.database_url)
    store.migrate()
    collector_config = central_config({"broker": {
        "url": plugin_broker.url, "username": dynsec.COLLECTOR_CLIENT, "client_id": "central-1",
        "password_file": str(tmp_path / "secrets" / "deskpulse-central.password")}})
    config = kiosk_config(keys["broker"]["url"], device=keys["device"], broker=keys["broker"])
    with Collector(collector_config, store) as collector:
        assert collector.wait_subscribed(10), "the collector's client could not log in and subscribe"
        sender = make_sender(config).start()
        with HeadlessKiosk(config, sender=sender) as k:
            k.tap_rating(5)
            wait_for(lambda: list(outbox_states(config.outbox_path).values()) == [State.CONFIRMED],
                     what="the answer confirmed through the plugin broker")
            wait_for(lambda: any(r["state"] == "online" for r in device_health(store, SITE, "desk-1")),
                     what="the kiosk's retained status stored")
        assert collector.stats.stored == 1
    store.close()


def test_device_credentials_speak_for_no_other_desk(plugin_broker, central, tmp_path) -> None:
    desk1, desk2 = provisioned(central, tmp_path, "desk-1"), provisioned(central, tmp_path, "desk-2")
    with client_of(plugin_broker, desk2) as d2, client_of(plugin_broker, desk1) as d1:
        assert d1.publish(protocol.feedback_topic(SITE, "desk-2"), b"{}", check=False) == 0x87
        assert d1.publish(protocol.status_topic(SITE, "desk-2"), b"{}", retain=True, check=False) == 0x87
        assert d1.publish(protocol.receipt_topic(SITE, "desk-1"), b"[]", check=False) == 0x87
        assert d1.publish(protocol.feedback_topic(SITE, "desk-1"), b"{}") < 0x80
        assert d1.subscribe(protocol.receipt_topic(SITE, "desk-2"), check=False) == [0x87]
        assert d1.subscribe(protocol.FEEDBACK_FILTER, check=False) == [0x87]
        assert d1.subscribe(protocol.receipt_topic(SITE, "desk-1"), protocol.site_config_topic(SITE),
                            protocol.device_config_topic(SITE, "desk-1"), protocol.CENTRAL_STATUS_TOPIC) == [1] * 4

        # desk-1's password with desk-2's client id: refused, and desk-2 keeps its session.
        with pytest.raises(AssertionError, match=r"refused test-site\.desk-2: reason code 0x8"):
            client_of(plugin_broker, desk1, client_id=f"{SITE}.desk-2")
        with pytest.raises(AssertionError, match=r"refused a-made-up-id: reason code 0x8"):
            client_of(plugin_broker, desk1, client_id="a-made-up-id")
        assert d2.publish(protocol.feedback_topic(SITE, "desk-2"), b"{}") < 0x80
        assert d2.client.is_connected()


def test_device_remove_locks_it_out_clears_its_retained_status_and_retires_it(
        plugin_broker, central, tmp_path) -> None:
    desk = provisioned(central, tmp_path, "desk-1")
    status = protocol.status_topic(SITE, "desk-1")
    with client_of(plugin_broker, desk) as d:
        d.publish(status, b'{"retained": "before"}', retain=True)
        done = fleet.remove_device(central, SITE, "desk-1")
        assert done[0] == "deleted client test-site.desk-1 (its connection, if any, is closed)"
        wait_for(lambda: not d.client.is_connected(), what="the broker to drop the removed device")
    with pytest.raises(AssertionError, match=r"refused test-site\.desk-1: reason code 0x8"):
        client_of(plugin_broker, desk)
    dashboard = (tmp_path / "secrets" / "deskpulse-dashboard.password").read_text().strip()
    with MqttClient(plugin_broker, username=dynsec.DASHBOARD_CLIENT, password=dashboard) as watcher:
        watcher.subscribe(protocol.STATUS_FILTER)
        # The publish's PUBACK follows the retained messages the subscription got.
        watcher.publish(protocol.site_config_topic(SITE), b"", retain=True)
        assert watcher.messages(status) == []
    with Store(central.database_url) as store:
        assert [(r["device"], r["state"]) for r in device_health(store, SITE)] == [("desk-1", "retired")]
        # Its last will, arriving late, does not bring it back.
        store.record_status({"site": SITE, "device": "desk-1", "state": "offline"})
        assert device_health(store, SITE)[0]["state"] == "retired"

    # Added again: new credentials work, the retired mark is gone.
    again = provision.load(fleet.add_device(central, SITE, "desk-1", tmp_path / "desk-1.again.toml"))
    assert again.password != desk.password
    with client_of(plugin_broker, again) as d:
        assert d.publish(protocol.feedback_topic(SITE, "desk-1"), b"{}") < 0x80
    with Store(central.database_url) as store:
        assert device_health(store, SITE) == []


def test_the_dashboard_client_publishes_configs_but_no_answers(plugin_broker, central, tmp_path) -> None:
    password = (tmp_path / "secrets" / "deskpulse-dashboard.password").read_text().strip()
    assert stat.S_IMODE((tmp_path / "secrets" / "deskpulse-dashboard.password").stat().st_mode) == 0o640
    with MqttClient(plugin_broker, username=dynsec.DASHBOARD_CLIENT, password=password) as dash:
        assert dash.publish(protocol.site_config_topic(SITE), b"{}", retain=True) < 0x80
        assert dash.publish(protocol.feedback_topic(SITE, "desk-1"), b"{}", check=False) == 0x87
        assert dash.publish(dynsec.CONTROL_TOPIC, b"{}", check=False) == 0x87


def test_setup_again_keeps_existing_clients(central, tmp_path) -> None:
    before = (tmp_path / "secrets" / "deskpulse-central.password").read_text()
    done = fleet.setup_central(central, tmp_path / "secrets")
    assert done == ["client deskpulse-central exists: kept (its password is unchanged)",
                    "client deskpulse-dashboard exists: kept (its password is unchanged)"]
    assert (tmp_path / "secrets" / "deskpulse-central.password").read_text() == before


def test_device_add_on_the_command_line(plugin_broker, central, tmp_path, capsys, monkeypatch) -> None:
    toml = str(tmp_path / "central.toml")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["device", "add", f"{SITE}/desk-9", "-c", toml]) == 0
    assert "provisioning file test-site.desk-9.provision.toml" in capsys.readouterr().out
    assert provision.load(tmp_path / "test-site.desk-9.provision.toml").username == f"{SITE}.desk-9"

    # Again: the broker has it; nothing is overwritten.
    assert cli.main(["device", "add", f"{SITE}/desk-9", "-c", toml, "--out", "other.toml"]) == 1
    assert "has a client 'test-site.desk-9' already" in capsys.readouterr().err
    assert not (tmp_path / "other.toml").exists()
    assert cli.main(["device", "add", f"{SITE}/desk-8", "-c", toml,
                     "--out", "test-site.desk-9.provision.toml"]) == 1
    assert "test-site.desk-9.provision.toml exists" in capsys.readouterr().err

    assert cli.main(["device", "list", "-c", toml]) == 0
    assert capsys.readouterr().out.split() == ["deskpulse-admin", "deskpulse-central", "deskpulse-dashboard",
                                               f"{SITE}.desk-9"]
    assert cli.main(["device", "remove", f"{SITE}/desk-9", "-c", toml]) == 0
    assert "marked test-site/desk-9 retired" in capsys.readouterr().out

    with pytest.raises(SystemExit) as exit_:
        cli.main(["device", "add", "Test Site/desk", "-c", toml])
    assert exit_.value.code == 2
    assert "site 'Test Site' is not a slug" in capsys.readouterr().err


def test_a_wrong_admin_password_is_said_plainly(plugin_broker, tmp_path, capsys) -> None:
    toml = write_central_toml(tmp_path, plugin_broker, admin_password="not-the-password")
    assert cli.main(["device", "add", f"{SITE}/desk-1", "-c", str(toml)]) == 1
    err = capsys.readouterr().err
    assert "refused the administrator 'deskpulse-admin'" in err and "fleet.admin_password_file" in err
    assert not (tmp_path / f"{SITE}.desk-1.provision.toml").exists()


def test_without_an_admin_password_file_the_command_names_the_key(tmp_path, capsys) -> None:
    (tmp_path / "central.toml").write_text('[broker]\nurl = "mqtt://127.0.0.1:9"\n')
    assert cli.main(["device", "remove", f"{SITE}/desk-1", "-c", str(tmp_path / "central.toml")]) == 1
    assert "fleet.admin_password_file is not set" in capsys.readouterr().err


def test_broker_init_writes_the_plugins_first_file(tmp_path, capsys, monkeypatch) -> None:
    target = tmp_path / "dynamic-security.json"
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-admin-password\n"))
    assert cli.main(["broker", "init", str(target)]) == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert "a-long-admin-password" not in target.read_text()

    # The broker loads it and lets the administrator in with that password.
    mosq = Mosquitto(tmp_path / "mosq", dynsec=True)
    mosq.dynsec_file = target
    mosq.admin_password = "a-long-admin-password"
    mosq.start()
    try:
        (tmp_path / "pw").write_text("a-long-admin-password\n")
        config = central_config({"broker": {"url": mosq.url}, "fleet": {"admin_password_file": str(tmp_path / "pw")}})
        with fleet.BrokerAdmin(fleet.admin_settings(config)) as admin:
            assert admin.list_clients() == ["deskpulse-admin"]
    finally:
        mosq.kill()

    monkeypatch.setattr("sys.stdin", io.StringIO("another-password\n"))
    assert cli.main(["broker", "init", str(target)]) == 1
    assert "exists: not overwritten" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert cli.main(["broker", "init", str(tmp_path / "new.json")]) == 2
    assert "at least 12 characters" in capsys.readouterr().err


@pytest.mark.parametrize(("text", "sentence"), [
    ('[device]\nsite = "s"\n[broker]\nurl = "mqtt://h"\nusername = "u"\npassword = "p"\n', "device.name is missing"),
    ('[device]\nsite = "S"\nname = "d"\n[broker]\nurl = "mqtt://h"\nusername = "u"\npassword = "p"\n',
     "device.site must be a slug"),
    ('[device]\nsite = "s"\nname = "d"\n[broker]\nurl = "http://h"\nusername = "u"\npassword = "p"\n',
     "broker.url: 'http://h' must start with mqtt://"),
    ('[device]\nsite = "s"\nname = "d"\n[broker]\nurl = "mqtt://h"\nusername = "u"\npassword = "p"\nca = "x"\n',
     "broker.ca is not a PEM certificate"),
    ("not toml [", "not valid TOML"),
])
def test_a_bad_provisioning_file_says_what_is_wrong(tmp_path, text: str, sentence: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=sentence) as err:
        provision.load(path)
    assert str(err.value).startswith(str(path))


def test_the_device_commands_never_create_centrals_database(plugin_broker, tmp_path) -> None:
    from central.config import load

    config = load(write_central_toml(tmp_path, plugin_broker))
    fleet.add_device(config, SITE, "desk-1", tmp_path / "desk-1.toml")
    assert fleet.remove_device(config, SITE, "desk-1")[-1] == (
        f"central's database sqlite:///{tmp_path}/central.sqlite3 does not exist yet: nothing to mark retired")
    assert not list(tmp_path.glob("central.sqlite3*"))

"""Remote survey configuration: validated, kept across restarts, a bad one reported."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from sync import protocol
from sync.broker import BrokerSettings
from sync.sender import Sender, SenderSettings
from sync.survey import SurveyConfigs
from tests.support.broker import Mosquitto
from tests.support.mqtt_client import MqttClient
from tests.support.wait import wait_for

SITE, DEVICE = "test-site", "desk-1"


def config(version: int, **changes: object) -> dict:
    base = {"schema": 1, "version": version, "scale": 4, "followup_ratings": [1, 2],
            "languages": ["en", "de"], "default_lang": "en", "thank_you_s": 3}
    base.update(changes)
    return base


class Central(MqttClient):
    """Publishes retained configs and watches the device's status."""

    def __init__(self, broker: Mosquitto) -> None:
        super().__init__(broker, "central", subscribe=[protocol.status_topic(SITE, DEVICE)])

    def health(self) -> dict:
        status = self.last_json(protocol.status_topic(SITE, DEVICE))
        return status.get("health", {}) if status else {}


@pytest.fixture
def central(broker: Mosquitto):
    with Central(broker) as c:
        yield c


def sender_for(broker: Mosquitto, data: Path, applied: list[dict]) -> Sender:
    return Sender(data / "outbox.sqlite3", SITE, DEVICE, BrokerSettings(broker.host, broker.port, keepalive=5),
                  SenderSettings(), version="test", on_config=applied.append).start()


def test_site_then_device_config_applies_and_is_kept_across_restarts(broker, central, tmp_path) -> None:
    applied: list[dict] = []
    central.publish(protocol.site_config_topic(SITE), protocol.encode("config", config(1)), retain=True)
    sender = sender_for(broker, tmp_path, applied)
    try:
        wait_for(lambda: [c["version"] for c in applied] == [1], what="the site's config applied")
        central.publish(protocol.device_config_topic(SITE, DEVICE), protocol.encode("config", config(7, scale=5)),
                        retain=True)
        wait_for(lambda: [c["version"] for c in applied] == [1, 7], what="the device's own config to win")
        wait_for(lambda: central.health().get("survey") == 7, what="status to name survey 7")
        assert central.health()["config_error"] is None
    finally:
        sender.stop()
    # A restart with no broker at all still knows the last good survey.
    assert SurveyConfigs(tmp_path / "survey-config.json").current["version"] == 7


@pytest.mark.parametrize(("raw", "reason"), [
    (json.dumps(config(2, followup_ratings=[1, 5])).encode(), "followup_ratings"),
    (json.dumps(config(3, scale=7)).encode(), "scale"),
    (json.dumps(config(4, default_lang="fr")).encode(), "default_lang"),
    (b"{not json", "JSON"),
], ids=["follow-up above scale", "bad scale", "default not offered", "not json"])
def test_a_bad_config_is_refused_reported_and_the_last_good_one_stays(broker, central, tmp_path, raw,
                                                                      reason) -> None:
    applied: list[dict] = []
    central.publish(protocol.site_config_topic(SITE), protocol.encode("config", config(1)), retain=True)
    sender = sender_for(broker, tmp_path, applied)
    try:
        wait_for(lambda: central.health().get("survey") == 1, what="survey 1 in force")
        central.publish(protocol.device_config_topic(SITE, DEVICE), raw, retain=True)
        wait_for(lambda: central.health().get("config_error") is not None, what="the refusal in status")
        error = central.health()["config_error"]
        assert reason in error["reason"]
        assert central.health()["survey"] == 1
        assert [c["version"] for c in applied] == [1]
    finally:
        sender.stop()
    assert SurveyConfigs(tmp_path / "survey-config.json").current["version"] == 1


def test_a_damaged_kept_config_is_ignored_not_fatal(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "survey-config.json").write_text('{"schema": 1, "version": "x"}')
    assert SurveyConfigs(tmp_path / "survey-config.json").current is None
    assert "ignoring the kept survey configuration" in caplog.text


def test_on_config_runs_on_the_sender_thread(broker, central, tmp_path) -> None:
    threads: list[str] = []
    central.publish(protocol.site_config_topic(SITE), protocol.encode("config", config(1)), retain=True)
    sender = Sender(tmp_path / "outbox.sqlite3", SITE, DEVICE, BrokerSettings(broker.host, broker.port),
                    on_config=lambda c: threads.append(threading.current_thread().name)).start()
    try:
        wait_for(lambda: threads, what="the callback")
        assert threads == ["deskpulse-sender"]
    finally:
        sender.stop()

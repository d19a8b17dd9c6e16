"""The survey editor's checks and its publish through a real Mosquitto with the generated ACL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from central.config import from_dict
from central.sites import audit_entries
from central.store import Store
from central.surveys import SurveyError, from_form, latest, next_version, publish, sample, validate
from sync import protocol
from tests.support.broker import Mosquitto
from tests.support.mqtt_client import MqttClient
from tests.test_central_health import status
from tests.test_sync_security import SITE, secret_file, secured  # noqa: F401 (a fixture)

GOOD: dict[str, list[str]] = {
    "languages": ["en", "de"], "default_lang": ["en"], "scale": ["4"], "followup_ratings": ["1", "2"],
    "question_en": ["How was your visit?"], "question_de": ["Wie war Ihr Besuch?"], "question_fr": ["ignored"],
    "reason_source": ["own"], "reason_keys": ["queue\nprice\n"], "reason_labels_en": ["The queue\nThe price"],
    "reason_labels_de": ["Die Schlange\nDer Preis"], "thank_you_s": ["2,5"], "followup_timeout_s": [""],
}


def form(**changes: list[str]) -> dict[str, list[str]]:
    return {**GOOD, **changes}


def test_the_form_becomes_the_protocols_survey() -> None:
    config = from_form(GOOD)
    validate(sample(config))
    assert config == {
        "languages": ["en", "de"], "default_lang": "en", "scale": 4, "followup_ratings": [1, 2],
        "question": {"en": "How was your visit?", "de": "Wie war Ihr Besuch?"},
        "reasons": [{"key": "queue", "label": {"en": "The queue", "de": "Die Schlange"}},
                    {"key": "price", "label": {"en": "The price", "de": "Der Preis"}}],
        "thank_you_s": 2.5}
    assert from_form(form(reason_source=["pharmacy"]))["reason_preset"] == "pharmacy"
    assert "reasons" not in from_form(form(reason_source=["kiosk"]))


@pytest.mark.parametrize(("changes", "field", "words"), [
    ({"languages": []}, "languages", "tick at least one language"),
    ({"default_lang": ["fr"]}, "default_lang", "'fr' is not one of languages"),
    ({"scale": ["3"], "followup_ratings": ["4"]}, "followup_ratings", "[4] exceed the scale of 3"),
    ({"scale": ["7"]}, "scale", "scale"),
    ({"reason_keys": ["queue"], "reason_labels_en": ["The queue"], "reason_labels_de": [""]}, "reasons",
     "too short"),
    ({"reason_keys": ["Queue!\nprice"]}, "reasons", "reasons"),
    ({"reason_labels_de": ["Nur eine"]}, "reason_labels_de", "1 lines for 2 reason keys"),
    ({"thank_you_s": ["nan"]}, "thank_you_s", "not a number of seconds"),
    ({"thank_you_s": ["120"]}, "thank_you_s", "thank_you_s"),
    ({"question_en": ["x" * 201]}, "question", "question"),
])
def test_a_survey_the_kiosk_would_refuse_is_refused_naming_the_field(changes: dict[str, list[str]], field: str,
                                                                     words: str) -> None:
    with pytest.raises(SurveyError) as refused:
        validate(sample(from_form(form(**changes))))
    assert refused.value.field == field, refused.value
    assert words in str(refused.value)


def test_central_publishes_as_its_own_user_and_a_user_without_the_right_is_refused(
        secured: Mosquitto, tmp_path: Path) -> None:  # noqa: F811
    with Store(f"sqlite:///{tmp_path / 'central.sqlite3'}") as store:
        store.migrate()
        config = from_form(GOOD)
        # A central.toml pointing at a kiosk's credentials by mistake: the broker refuses the publish.
        wrong = from_dict({"broker": {"url": secured.url, "username": f"{SITE}.desk-1",
                                      "password_file": str(secret_file(tmp_path, f"{SITE}.desk-1"))}}).broker
        with pytest.raises(SurveyError) as refused:
            publish(store, wrong, SITE, "", config, "boss", timeout=5)
        assert "refused central's publish on deskpulse/v1/test-site/config" in str(refused.value)
        assert latest(store, SITE) == {} and audit_entries(store) == []  # nothing recorded

        unreachable = from_dict({"broker": {"url": "mqtt://127.0.0.1:9"}}).broker
        with pytest.raises(SurveyError, match="cannot reach the broker"):
            publish(store, unreachable, SITE, "", config, "boss", timeout=5)

        # A kiosk reported version 41 in force (say, from a central restored from an old backup).
        store.record_status(status("desk-1", site=SITE, backlog=0, survey=41))
        assert next_version(store, SITE) == 42
        right = from_dict({"broker": {"url": secured.url, "username": "deskpulse-central",
                                      "password_file": str(secret_file(tmp_path, "deskpulse-central"))}}).broker
        done = publish(store, right, SITE, "desk-1", config, "boss", timeout=5)
        assert done.version == 42
        topic = protocol.device_config_topic(SITE, "desk-1")
        # The kiosk reads it (its own user may read its own config).
        with MqttClient(secured, f"{SITE}.desk-1", subscribe=[topic], username=f"{SITE}.desk-1",
                        password="desk1-secret") as reader:
            reader.wait_for(lambda: reader.payloads(topic), what="the retained survey")
            (raw,) = reader.payloads(topic)
        assert json.loads(raw) == {"schema": 1, "version": 42, **config}
        assert latest(store, SITE)["desk-1"].version == 42
        (entry,) = audit_entries(store)
        assert (entry.account, entry.action, entry.subject, entry.detail["version"]) == (
            "boss", "survey", f"{SITE}/desk-1", 42)

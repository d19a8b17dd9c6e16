"""The kiosk runs the survey central configures: at once when idle, never mid-answer."""

from __future__ import annotations

import pygame

from device.events import CONFIG_EVENT
from device.kiosk import make_sender
from display.view import FollowUpView, RatingView
from sync import protocol
from sync.survey import SurveyConfigs
from tests.support.broker import Mosquitto
from tests.support.kiosk import HeadlessKiosk, stored
from tests.support.mqtt_client import MqttClient
from tests.support.wait import wait_for

CONFIG = {
    "schema": 1, "version": 9, "scale": 4, "followup_ratings": [1],
    "question": {"en": "How was your visit today?", "de": "Wie war Ihr Besuch heute?"},
    "followup_question": {"en": "What went wrong?"},
    "reasons": [{"key": "parking", "label": {"en": "Parking", "de": "Parken"}},
                {"key": "queue", "label": {"en": "The queue"}}],
    "languages": ["en", "de", "it"], "default_lang": "en", "thank_you_s": 2,
}


def test_a_config_applies_when_idle_and_answers_carry_its_version(kiosk_config) -> None:
    clock = [0.0]
    with HeadlessKiosk(kiosk_config(), clock=lambda: clock[0]) as k:
        pygame.event.post(pygame.event.Event(CONFIG_EVENT, config=CONFIG))
        k.pump()
        view = k.kiosk.view
        assert isinstance(view, RatingView)
        assert view.question == "How was your visit today?" and len(view.labels) == 4
        assert k.kiosk.settings.languages == ("en", "de")  # no Italian screens shipped: left out
        k.tap_rating(1, follow_up=None)
        follow_up = k.kiosk.view
        assert isinstance(follow_up, FollowUpView)
        assert follow_up.title == "What went wrong?"
        assert [label for _, label in follow_up.reasons] == ["Parking", "The queue"]
        k.tap_target(("reason", "parking"))
        (event,) = stored(k)
        assert (event["rating"], event["scale"], event["survey"], event["reasons"]) == (1, 4, 9, ["parking"])


def test_a_config_arriving_mid_answer_waits_for_the_attract_screen(kiosk_config) -> None:
    clock = [0.0]
    with HeadlessKiosk(kiosk_config(), clock=lambda: clock[0]) as k:
        k.tap_rating(2, follow_up=None)  # the 5-point survey asks why
        assert isinstance(k.kiosk.view, FollowUpView)
        pygame.event.post(pygame.event.Event(CONFIG_EVENT, config=CONFIG))
        k.pump()
        assert k.kiosk.settings.scale == 5  # not while the customer is answering
        clock[0] += 60  # follow-up times out, thank-you ends
        k.pump()
        clock[0] += 60
        k.pump()
        assert k.kiosk.settings.scale == 4
        (event,) = stored(k)
        assert (event["scale"], event["survey"]) == (5, 0)  # the answer kept the survey it was given in


def test_a_retained_config_reaches_the_screen_through_the_broker_and_survives_a_restart(
        broker: Mosquitto, kiosk_config) -> None:
    with MqttClient(broker, "central") as central:
        central.publish(protocol.site_config_topic("test-site"), protocol.encode("config", CONFIG), retain=True)
    config = kiosk_config(broker.url)
    with HeadlessKiosk(config, sender=make_sender(config).start()) as k:
        wait_for(lambda: (k.pump(), k.kiosk.settings.scale == 4)[1], what="the kiosk to run survey 9")
        k.tap_rating(4)
        (event,) = stored(k)
        assert (event["scale"], event["survey"]) == (4, 9)
    assert SurveyConfigs(config.data_dir / "survey-config.json").current["version"] == 9
    with HeadlessKiosk(config) as again:  # no broker this time: the kept survey still runs
        assert again.kiosk.settings.scale == 4 and again.kiosk.survey_version == 9

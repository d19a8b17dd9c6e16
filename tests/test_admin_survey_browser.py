"""The survey editor end to end: an admin in real headless Chromium writes a survey, sees the kiosk's
preview, publishes it; a running headless kiosk (real sender, real Mosquitto) draws the new question and
reports it in force; a survey the kiosk refuses is shown refused with the kiosk's own reason.

Real parts throughout: Mosquitto (``broker``), a SQLite store, central's collector (statuses into the
store), the web app on uvicorn, Chromium through Playwright, the kiosk on SDL's dummy driver.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from central import config as central_config
from central.sites import audit_entries
from central.store import Store
from central.surveys import latest
from device.kiosk import make_sender
from display.view import FollowUpView, RatingView
from sync import protocol
from tests.support.broker import Mosquitto
from tests.support.browser import chromium, chromium_path
from tests.support.kiosk import HeadlessKiosk, stored
from tests.support.mqtt_client import MqttClient
from tests.support.wait import wait_for
from tests.test_admin_sites import ADMIN_PASSWORD, add_accounts
from tests.test_central_health import start_collector
from tests.test_dashboard import make_config, put
from tests.test_dashboard_browser import Web

pytestmark = pytest.mark.skipif(chromium_path() is None,
                                reason="chromium is not installed (make test installs it)")

@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(f"sqlite:///{tmp_path / 'central.sqlite3'}") as s:
        s.migrate()
        yield s


def sign_in(page: Any, url: str) -> None:
    page.goto(url + "/login")
    page.fill("#name", "boss")
    page.fill("#password", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(url + "/")


def kiosk_row(page: Any) -> tuple[str, str]:
    row = page.locator('#kiosks tr[data-device="desk-1"]')
    return row.locator(".outcome").inner_text(), row.locator(".reason").inner_text()


def test_an_admin_publishes_a_survey_the_kiosk_draws_and_a_refused_one_shows_the_kiosks_reason(
        broker: Mosquitto, store: Store, kiosk_config: Any, tmp_path: Path) -> None:
    add_accounts(store)
    config = central_config.from_dict({
        "broker": {"url": broker.url, "keepalive": 5},
        "sites": {"test-site": {"name": "Luggage office", "timezone": "Europe/Berlin",
                                "desks": {"desk-1": {"name": "Front desk"}}}}})
    collector = start_collector(broker, store)
    web = Web(store, config).start()
    kiosk_cfg = kiosk_config(broker.url)
    try:
        clock = [0.0]  # the kiosk's own clock: its screens time out when the test says
        with HeadlessKiosk(kiosk_cfg, sender=make_sender(kiosk_cfg).start(), clock=lambda: clock[0]) as k, \
                chromium() as browser:
            wait_for(lambda: any(d["device"] == "desk-1" for d in _devices(store)), what="the kiosk's status")
            page = browser.new_context(viewport={"width": 1366, "height": 900}).new_page()
            page.set_default_timeout(15_000)
            sign_in(page, web.url)
            page.goto(web.url + "/admin/surveys/test-site")
            assert kiosk_row(page)[0] == "no survey published"

            # A survey central's checks refuse (the kiosk's own check): said at the field, nothing published.
            page.check("input[name=languages][value='de']")
            page.select_option("#scale", "3")
            page.check("input[name=followup_ratings][value='5']")
            page.click("#publish")
            error = page.locator("#survey-error").inner_text()
            assert "followup_ratings" in error and "exceed the scale of 3" in error
            assert latest(store, "test-site") == {}

            page.uncheck("input[name=followup_ratings][value='5']")
            page.select_option("#scale", "4")
            page.fill("#q-en", "How was the luggage office today?")
            page.fill("#q-de", "Wie war die Gepäckaufbewahrung heute?")
            page.fill("#fq-en", "What went wrong?")
            page.select_option("#reason-source", "own")
            page.fill("#reason-keys", "queue\nprice")
            page.fill("#rl-en", "The queue\nThe price")
            page.fill("#rl-de", "Die Schlange\nDer Preis")
            page.click("button[value=preview]")
            image = page.locator("#preview-rating-de")
            image.wait_for()
            assert page.evaluate("document.getElementById('preview-rating-de').naturalWidth") == 800
            assert page.locator("#preview-followup-en").is_visible()
            page.screenshot(path=str(tmp_path / "admin-survey.png"), full_page=True)  # to look at when it fails

            page.click("#publish")
            assert "published version 1 to the whole site" in page.locator("#message").inner_text()

            def drawn() -> bool:
                k.pump()
                view = k.kiosk.view
                return isinstance(view, RatingView) and view.question == "How was the luggage office today?"

            wait_for(drawn, what="the kiosk to draw the new question")
            assert k.kiosk.survey_version == 1 and k.kiosk.settings.scale == 4
            assert len(k.kiosk.view.labels) == 4  # type: ignore[union-attr]
            k.tap_rating(1, follow_up=None)
            follow_up = k.kiosk.view
            assert isinstance(follow_up, FollowUpView) and follow_up.title == "What went wrong?"
            assert [label for _, label in follow_up.reasons] == ["The queue", "The price"]
            k.tap_target(("reason", "queue"))
            (answer,) = stored(k)
            assert (answer["survey"], answer["scale"], answer["rating"], answer["reasons"]) == (1, 4, 1, ["queue"])
            clock[0] += 60  # the thank-you screen ends: back to the question
            k.pump()
            assert isinstance(k.kiosk.view, RatingView)

            def shown(outcome: str) -> bool:  # the page follows the kiosks by itself: no reload
                return kiosk_row(page)[0] == outcome

            wait_for(lambda: shown("accepted"), what="the kiosk's acceptance on the page")

            # Someone else (an older central, a hand-made mosquitto_pub) retains a survey on the desk's own
            # topic that the schema allows but the kiosk refuses: the page shows the kiosk's reason.
            broken = {"schema": 1, "version": 7, "scale": 3, "followup_ratings": [5]}
            with MqttClient(broker, "someone-else") as other:
                other.publish(protocol.device_config_topic("test-site", "desk-1"), json.dumps(broken).encode(),
                              retain=True)
            wait_for(lambda: shown("refused"), what="the kiosk's refusal on the page")
            reason = kiosk_row(page)[1]
            assert "version 7" in reason and "followup_ratings: [5] exceed the scale of 3" in reason
            page.screenshot(path=str(tmp_path / "admin-survey-kiosks.png"), full_page=True)
            assert k.kiosk.survey_version == 1  # the kiosk kept the good one

            # Central publishes above what any kiosk reported (7), for the desk alone this time.
            page.goto(web.url + "/admin/surveys/test-site?device=desk-1")
            page.fill("#q-en", "Did we keep your luggage safe?")
            page.click("#publish")
            assert "published version 8 to desk desk-1" in page.locator("#message").inner_text()

            def desk_drawn() -> bool:
                k.pump()
                view = k.kiosk.view
                return isinstance(view, RatingView) and view.question == "Did we keep your luggage safe?"

            wait_for(desk_drawn, what="the kiosk to draw the desk's own survey")
            wait_for(lambda: shown("accepted"), what="the desk's survey accepted on the page")

            # The desk's own survey removed: the site's is published again above it, and the kiosk runs it.
            page.click("#clear")
            assert "the site's is published again as version 10" in page.locator("#message").inner_text()
            wait_for(drawn, what="the kiosk to draw the site's question again")
            assert k.kiosk.survey_version == 10
            desk_topic = protocol.device_config_topic("test-site", "desk-1")
            with MqttClient(broker, "late-subscriber", subscribe=[desk_topic]) as late:
                late.sync()
                assert late.payloads(desk_topic) == []  # nothing retained on the desk's topic any more
            wait_for(lambda: shown("accepted"), what="the site's survey accepted again on the page")
            assert [(e.action, e.subject) for e in audit_entries(store)] == [
                ("survey", "test-site"), ("survey-removed", "test-site/desk-1"), ("survey", "test-site/desk-1"),
                ("survey", "test-site")]
            page.goto(web.url + "/admin/audit")
            audit = page.locator("#audit").inner_text()
            assert "published version 8" in audit and "removed the desk's own survey (version 8)" in audit
    finally:
        web.stop()
        collector.stop()


def _devices(store: Store) -> list[dict[str, Any]]:
    from central import reads

    return reads.device_rows(store)


def test_an_admin_renames_a_site_and_moves_its_zone_and_the_overview_follows_at_once(store: Store) -> None:
    add_accounts(store)
    base = make_config()
    store.zones = lambda slug: base.site(slug).timezone
    # 23:30 UTC: still the 20th in London, already the 21st in Tokyo.
    put(store, datetime(2026, 11, 20, 23, 30, tzinfo=UTC), 5, n=3)
    web = Web(store, base).start()
    try:
        with chromium() as browser:
            page = browser.new_context(viewport={"width": 1366, "height": 768}).new_page()
            page.set_default_timeout(15_000)
            sign_in(page, web.url)
            day = "/?site=north&from=2026-11-21&to=2026-11-21"
            page.goto(web.url + day)
            assert "North hall" in page.content() and page.locator("#total").inner_text() == "0"
            page.goto(web.url + "/admin/sites")
            page.fill("#name-north", "Nordhalle")
            page.fill("#tz-north", "Asia/Tokyo")
            page.click("#site-north button[value=site]")
            message = page.locator("#site-north #message").inner_text()
            assert "name: North hall → Nordhalle" in message and "timezone: Europe/London → Asia/Tokyo" in message
            page.goto(web.url + day)
            assert "Nordhalle" in page.content() and "North hall" not in page.content()
            assert page.locator("#total").inner_text() == "3"  # the answers moved to Tokyo's 21st
    finally:
        web.stop()

"""The overview's comparisons, "needs attention", the feed's zones and test mode, as served HTML over a real store.

The page takes "today" from the clock, so answers are placed relative to now
(today, yesterday and a week ago at the site, London); the numbers for fixed
dates are test_central_compare.py's. The browser checks (above the fold, the
phone) are in test_dashboard_glance_browser.py.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from central import config as central_config
from central.store import Store
from sync import protocol
from tests.test_central_health import status
from tests.test_dashboard import make_app, put


def glance_config(**dashboard: Any) -> central_config.CentralConfig:
    """test_dashboard's sites (London and Kiritimati, UTC+14) with a target for North hall."""
    return central_config.from_dict({
        "sites": {
            "north": {"name": "North hall", "timezone": "Europe/London", "target": 80,
                      "desks": {"a": {"name": "Desk Alpha"}, "b": {"name": "Desk Bravo"}}},
            "kiri": {"name": "Kiritimati", "timezone": "Pacific/Kiritimati", "desks": {"k": {"name": "Desk Kilo"}}},
        },
        "dashboard": {"rank_min_answers": 5, **dashboard},
    })



def london_noon(days_ago: int) -> datetime:
    """Noon in London ``days_ago`` days before its today (London is UTC or UTC+1: noon stays on that date)."""
    today = datetime.now(ZoneInfo("Europe/London")).date() - timedelta(days=days_ago)
    return datetime(today.year, today.month, today.day, 12, 0, tzinfo=ZoneInfo("Europe/London")).astimezone(UTC)


def seed_week(store: Store) -> None:
    """Desk Alpha: today five 5s (100), yesterday five 3s (50), a week ago five 4s (75). Desk Bravo: yesterday
    five 2s (25). Over the last 7 days (a week ago is not in them) Bravo is 25 and Alpha (20 + 10) / 40 = 75."""
    put(store, london_noon(0), 5, n=5)
    put(store, london_noon(1), 3, n=5)
    put(store, london_noon(7), 4, n=5)
    put(store, london_noon(1), 2, device="b", n=5)


def part(html: str, element_id: str) -> str:
    """The text of the element with ``element_id`` (tags dropped, spaces collapsed)."""
    start = html.index(f'id="{element_id}"')
    tag = html.rfind("<", 0, start)
    name = re.match(r"<([a-z0-9]+)", html[tag:]).group(1)  # type: ignore[union-attr]
    depth, i = 0, tag
    for m in re.finditer(rf"<(/?){name}\b[^>]*>", html[tag:]):
        depth += -1 if m.group(1) else 1
        if depth == 0:
            i = tag + m.end()
            break
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html[tag:i])).strip()


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_todays_index_says_how_it_compares_in_words(store: Store) -> None:
    seed_week(store)
    html = TestClient(make_app(store, glance_config())).get("/", params={"site": "north", "device": "a"}).text
    assert "▲ 50 points better than yesterday (50)" in part(html, "today-vs-yesterday")
    weekday = london_noon(0).astimezone(ZoneInfo("Europe/London")).strftime("%A")
    assert f"▲ 25 points better than last {weekday} (75)" in part(html, "today-vs-last-week")
    assert "target of 80 met (20 above)" in part(html, "today-target")
    assert 'class="delta better"' in html
    # The week's card: its own index and the change against last week, in words either way.
    assert re.search(r"(better|worse) than last week|the same as last week|too few answers",
                     part(html, "week-vs-last-week"))


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_the_site_view_compares_the_site_and_each_desk_and_ranks_the_worst_first(store: Store) -> None:
    seed_week(store)
    html = TestClient(make_app(store, glance_config())).get("/", params={"site": "north"}).text
    table = part(html, "compare")
    assert "North hall" in table and "Desk Alpha" in table and "Desk Bravo" in table
    assert "▲ 50 better" in table  # Alpha's today (100) against yesterday (50), in its row
    attention = part(html, "attention")
    # Over 7 days: Bravo 25 (5 answers) worst, then Alpha 75 (10 answers).
    assert attention.index("Desk Bravo") < attention.index("Desk Alpha")
    assert "from 5 counted answers" in attention
    assert html.index('id="attention"') < html.index('id="ratings"')  # near the top, above the details
    # Below the minimum nobody is ranked, and the block says why.
    html = TestClient(make_app(store, glance_config(rank_min_answers=50))).get("/", params={"site": "north"}).text
    assert "No desk has 50 counted answers in the last 7 days yet." in part(html, "attention")


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_the_feed_shows_date_and_zone_when_its_sites_differ_in_zone(store: Store) -> None:
    now = datetime.now(UTC)
    put(store, now, 4)
    put(store, now, 5, site="kiri", device="k")
    client = TestClient(make_app(store, glance_config()))
    html = client.get("/").text  # London and Kiritimati: every row says its date and zone
    feed = html[html.index('id="feed"'):html.index("</tbody>", html.index('id="feed"'))]
    kiri_day = now.astimezone(ZoneInfo("Pacific/Kiritimati"))
    assert '<span class="zone">UTC+14</span>' in feed
    assert f'<span class="day">{kiri_day:%a} {kiri_day.day} {kiri_day:%b}</span>' in feed
    assert re.search(r'<span class="zone">UTC(\+1)?</span>', feed)  # London: GMT in winter, BST in summer
    assert '"zonesDiffer": true' in html
    html = client.get("/", params={"site": "north"}).text  # one site, one zone: the time alone today
    feed = html[html.index('id="feed"'):html.index("</tbody>", html.index('id="feed"'))]
    assert 'class="zone"' not in feed and '"zonesDiffer": false' in html


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_kiosk_left_in_test_mode_is_flagged_in_kiosk_health(store: Store) -> None:
    store.record_status(status("a", "online", site="north", backlog=0, alarms=[
        {"code": protocol.TEST_MODE_ALARM, "message": "test mode: answers are flagged test"}]))
    store.record_status(status("b", "online", site="north", backlog=0))
    html = TestClient(make_app(store, glance_config())).get("/", params={"site": "north"}).text
    assert "test mode 1 kiosk: answers not counted" in part(html, "kiosks-testing")
    fleet = part(html, "fleet")
    assert "1 in test mode" in fleet and "its answers are flagged test and not counted" in fleet
    assert html.count('<tr class="testing">') == 1

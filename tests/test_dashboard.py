"""The dashboard's pages as served HTML over a real store: numbers, filters in the URL, TV tokens, privacy.

Every expected number is worked out by hand in the comments. The browser
tests (live feed, reconnects, the form) are in test_dashboard_browser.py.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from central import config as central_config
from central import pages
from central.store import Store
from central.web import create_app
from sync import protocol
from tests.support.events import feedback_event

TV_TOKEN = "tv-token-for-the-north-site-0001"
DESK_TV_TOKEN = "tv-token-for-the-desk-a-only-002"



def make_config(**dashboard: Any) -> central_config.CentralConfig:
    return central_config.from_dict({
        "sites": {
            "north": {"name": "North hall", "timezone": "Europe/London",
                      "desks": {"a": {"name": "Desk Alpha"}, "b": {"name": "Desk Bravo"},
                                "late": {"name": "Late desk", "feed": "delayed", "delay_min": 30},
                                "sum": {"name": "Totals desk", "feed": "aggregated"}}},
            # UTC+14: its local date starts 14 hours before UTC's.
            "kiri": {"name": "Kiritimati", "timezone": "Pacific/Kiritimati", "desks": {"k": {"name": "Desk Kilo"}}},
        },
        "dashboard": {"tv": {"north-wall": {"token": TV_TOKEN, "site": "north"},
                             "alpha": {"token": DESK_TV_TOKEN, "site": "north", "device": "a"}},
                      **dashboard},
    })


def make_app(store: Store, config: central_config.CentralConfig, **options: Any) -> Any:
    """central's web app (the pages included), its event streams ending once idle."""
    return create_app(store, config, **{"poll_s": 0.05, "stream_idle_exit_s": 0.3, **options})


def put(store: Store, when: datetime, rating: int, *, scale: int = 5, site: str = "north", device: str = "a",
        flags: list[str] | None = None, reasons: list[str] | None = None, n: int = 1) -> None:
    store.insert_events([
        feedback_event(site, device, rating=rating, scale=scale, ts=protocol.utc_timestamp(when),
                       flags=flags or [], reasons=reasons or [])
        for _ in range(n)
    ])


def text_of(html: str, element_id: str) -> str:
    m = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', html)
    assert m, f"#{element_id} not in the page"
    return m.group(1).strip()


DAY = date(2026, 11, 10)
NOON = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def seeded(store: Store) -> Store:
    # Desk Alpha on 10 Nov (London = UTC in November): 5, 5, 4, 1 and a flagged 1.
    #   counted: (4 + 4 + 3 + 0) / 4 / 4 = 11/16 = 0.6875 -> 69 (4 answers: below the minimum of 5)
    for r in (5, 5, 4, 1):
        put(store, NOON, r, reasons=["wait_time"] if r == 1 else [])
    put(store, NOON, 1, flags=["rapid_repeat"])
    # Desk Bravo on 10 Nov: 3, 3, 3, 4, 2, 5 -> (2+2+2+3+1+4)/24 = 14/24 = 0.5833 -> 58
    for r in (3, 3, 3, 4, 2, 5):
        put(store, NOON + timedelta(hours=1), r, device="b", reasons=["friendliness"] if r == 2 else [])
    # Desk Alpha on 11 Nov: five 5s -> 100
    put(store, NOON + timedelta(days=1), 5, n=5)
    return store


def page(client: TestClient, **params: str) -> str:
    reply = client.get("/", params=params)
    assert reply.status_code == 200, reply.text[:500]
    return reply.text


def test_filters_change_the_numbers_to_hand_computed_values(seeded: Store) -> None:
    client = TestClient(make_app(seeded, make_config()))
    # The whole site on 10 Nov: Alpha's 4 counted + Bravo's 6 = 10 counted, 11 answers, 1 flagged.
    #   points: 11/4 (Alpha) + 14/4 (Bravo) = 25/4 = 6.25 over 10 -> 62.5 -> 63 (62.5 rounds half up)
    html = page(client, site="north", **{"from": "2026-11-10", "to": "2026-11-10"})
    assert text_of(html, "range-index") == "63"
    assert text_of(html, "range-total") == "11"
    assert text_of(html, "range-flagged") == "1"
    # Desk Bravo alone: 58.
    html = page(client, site="north", device="b", **{"from": "2026-11-10", "to": "2026-11-10"})
    assert text_of(html, "range-index") == "58"
    # Desk Alpha alone on 10 Nov: 4 counted answers, below the minimum of 5: no index, a clear message.
    html = page(client, site="north", device="a", **{"from": "2026-11-10", "to": "2026-11-10"})
    assert text_of(html, "range-index") == "–"
    assert "Needs 5 answers · 4 so far" in html
    # ... with flagged answers included: 5 counted, (11/4·4 + 0)/5 /4 = 11/20 = 55.
    html = page(client, site="north", device="a", flagged="1", **{"from": "2026-11-10", "to": "2026-11-10"})
    assert text_of(html, "range-index") == "55"
    # Desk Alpha over both days: 4 + 5 counted; points 11/4 + 5 = 7.75 over 9 = 0.8611 -> 86.
    html = page(client, site="north", device="a", **{"from": "2026-11-10", "to": "2026-11-11"})
    assert text_of(html, "range-index") == "86"


def test_the_form_keeps_the_filters_it_was_opened_with(seeded: Store) -> None:
    client = TestClient(make_app(seeded, make_config()))
    html = page(client, site="north", device="b", flagged="1", **{"from": "2026-11-10", "to": "2026-11-11"})
    assert re.search(r'<option value="north" selected>North hall</option>', html)
    assert re.search(r'<option value="b" data-site="north" selected>Desk Bravo</option>', html)
    assert 'name="from" value="2026-11-10"' in html and 'name="to" value="2026-11-11"' in html
    assert re.search(r'id="f-flagged" type="checkbox" name="flagged" value="1" checked', html)
    # The exports and the live numbers use the same filter.
    query = "site=north&amp;device=b&amp;from=2026-11-10&amp;to=2026-11-11&amp;flagged=1"
    assert f'href="/export/answers.csv?{query}"' in html
    assert f'data-parts="/partials/overview?{query}"' in html
    assert 'data-stream="/api/stream?site=north&amp;device=b&amp;after=' in html


def test_the_worked_example_shows_78(store: Store) -> None:
    # 126/60/16/17 answers on a 4-point scale, best to worst: 78.23 -> 78; shares 58 %, 27 %, 7 %, 8 %.
    for rating, n in ((4, 126), (3, 60), (2, 16), (1, 17)):
        put(store, NOON, rating, scale=4, n=n)
    html = page(TestClient(make_app(store, make_config())), **{"from": "2026-11-10", "to": "2026-11-10"})
    assert text_of(html, "range-index") == "78"
    shares = re.findall(r'<span class="pct">(\d+)%</span>', html)[:4]
    assert shares == ["58", "27", "7", "8"]  # best first: 126/219, 60/219, 16/219, 17/219


def test_a_site_far_east_of_utc_counts_its_own_local_date(store: Store) -> None:
    # 10 Nov 11:30 UTC is 11 Nov 01:30 at Kiritimati (UTC+14): it belongs to 11 Nov there.
    put(store, datetime(2026, 11, 10, 11, 30, tzinfo=UTC), 5, site="kiri", device="k", n=5)
    # ... and 10 Nov 09:00 UTC is 10 Nov 23:00 there: 10 Nov.
    put(store, datetime(2026, 11, 10, 9, 0, tzinfo=UTC), 1, site="kiri", device="k", n=5)
    client = TestClient(make_app(store, make_config()))
    assert text_of(page(client, site="kiri", **{"from": "2026-11-11", "to": "2026-11-11"}), "range-index") == "100"
    assert text_of(page(client, site="kiri", **{"from": "2026-11-10", "to": "2026-11-10"}), "range-index") == "0"
    # The heatmap puts them at local 01:00 on Wednesday and 23:00 on Tuesday.
    html = page(client, site="kiri", **{"from": "2026-11-10", "to": "2026-11-11"})
    assert 'title="Wed 01:00: index 100, 5 answers"' in html
    assert 'title="Tue 23:00: index 0, 5 answers"' in html


def test_today_is_each_sites_own_date_and_hidden_below_the_minimum(store: Store) -> None:
    now = datetime.now(UTC)
    put(store, now - timedelta(seconds=5), 5, n=3)
    client = TestClient(make_app(store, make_config()))
    html = page(client, site="north")
    assert text_of(html, "today-index") == "–"
    assert "Needs 5 answers today · 3 so far" in html
    put(store, now - timedelta(seconds=5), 3, n=2)
    html = page(client, site="north")
    # 5, 5, 5, 3, 3: (4+4+4+2+2)/20 = 0.8 -> 80
    assert text_of(html, "today-index") == "80"
    assert text_of(html, "today-count") == "5"


def test_bad_filter_values_are_reported_not_fatal(seeded: Store) -> None:
    client = TestClient(make_app(seeded, make_config()))
    html = page(client, site="No Such!", **{"from": "10/11/2026", "to": "2026-11-11"})
    assert "is not a site or desk name" in html and "is not a date" in html
    html = page(client, **{"from": "2026-11-11", "to": "2026-11-10"})  # reversed: refused, as the API does
    assert "before it starts" in html and "“to” was ignored" in html
    assert 'name="from" value="2026-11-11"' in html and 'name="to" value=""' in html
    html = page(client, **{"from": "2001-01-01"})  # no end given: up to today, at most 732 days
    assert "longer than 732 days" in html and "“from” was ignored" in html
    html = page(client, **{"from": "2026-11-01", "to": "9999-12-31"})
    assert "is out of range" in html


def test_the_numbers_refresh_from_a_partial_with_the_same_parts(seeded: Store) -> None:
    client = TestClient(make_app(seeded, make_config()))
    params = {"site": "north", "from": "2026-11-10", "to": "2026-11-10"}
    full, part = page(client, **params), client.get("/partials/overview", params=params).text
    ids = re.findall(r'id="([a-z-]+)" data-part', part)
    assert set(ids) == {"total-stat", "kpis", "compare", "attention", "ratings", "reasons", "trend", "heatmap", "desks",
                        "fleet"}
    for part_id in ids:
        assert f'id="{part_id}" data-part' in full
    assert text_of(part, "range-index") == text_of(full, "range-index") == "63"


def test_the_tv_token_opens_only_the_tv_view(seeded: Store) -> None:
    put(seeded, datetime.now(UTC), 4, site="kiri", device="k")
    put(seeded, datetime.now(UTC), 5, device="a")
    client = TestClient(make_app(seeded, make_config()))
    reply = client.get(f"/tv/{TV_TOKEN}")
    assert reply.status_code == 200
    html = reply.text
    assert "North hall" in html and "Kiritimati" not in html and "Desk Kilo" not in html
    assert "<a " not in html and "<form" not in html  # no navigation, no filters, no links out
    assert f'data-stream="/tv/{TV_TOKEN}/stream?after=' in html
    assert client.get(f"/tv/{TV_TOKEN}/partial").status_code == 200
    for wrong in ("nope", TV_TOKEN[:-1], TV_TOKEN + "x"):
        assert client.get(f"/tv/{wrong}").status_code == 404
        assert client.get(f"/tv/{wrong}/partial").status_code == 404
        assert client.get(f"/tv/{wrong}/stream").status_code == 404
    desk_tv = client.get(f"/tv/{DESK_TV_TOKEN}").text
    assert "Desk Alpha" in desk_tv and "Desk Bravo" not in desk_tv


def test_the_tv_stream_sends_only_its_sites_answers(store: Store) -> None:
    client = TestClient(make_app(store, make_config()))
    put(store, datetime.now(UTC), 4, site="kiri", device="k")
    put(store, datetime.now(UTC), 2, device="b")
    with client.stream("GET", f"/tv/{TV_TOKEN}/stream", params={"after": "0"}) as reply:
        assert reply.headers["content-type"].startswith("text/event-stream")
        body = "".join(reply.iter_text())
    assert '"site":"north"' in body and '"site":"kiri"' not in body


def test_the_feed_keeps_delayed_and_aggregated_desks_private(store: Store) -> None:
    now = datetime.now(UTC)
    put(store, now, 5, device="late")
    put(store, now, 5, device="sum")
    put(store, now, 2, device="a")
    html = page(TestClient(make_app(store, make_config())), site="north")
    feed = html[html.index('id="feed"'):html.index("</tbody>", html.index('id="feed"'))]
    assert "Desk Alpha" in feed
    assert "Late desk" not in feed  # stored just now: shown 30 minutes later
    assert "Totals desk" not in feed  # never one by one
    # ... but both count in the numbers: 3 answers today.
    assert "3 so far" in html


def test_flagged_answers_are_shown_marked_and_mixed_scales_are_said(store: Store) -> None:
    put(store, NOON, 5, flags=["rapid_repeat"])
    put(store, NOON, 2, reasons=["wait_time"], n=5)
    put(store, NOON, 3, scale=3, device="b", n=2)  # a 3-point desk: in the index, not in the 5-point bars
    html = page(TestClient(make_app(store, make_config())), site="north",
                **{"from": "2026-11-10", "to": "2026-11-10"})
    feed = html[html.index('id="feed"'):html.index("</tbody>", html.index('id="feed"'))]
    assert feed.count('class="flagged"') == 1 and '<span class="flag">rapid repeat</span>' in feed
    assert "Waiting time" in feed
    # Counted: five 2s of 5 (1/4 each) and two 3s of 3 (1 each): (5/4 + 2) / 7 = 0.4643 -> 46.
    assert text_of(html, "range-index") == "46"
    assert "5-point scale · 5 counted answers · 2 more on other scales" in html


def test_the_page_has_labels_and_text_alternatives(seeded: Store) -> None:
    html = page(TestClient(make_app(seeded, make_config())), **{"from": "2026-11-10", "to": "2026-11-11"})
    for control in re.findall(r'<(?:select|input)[^>]*id="([^"]+)"', html):
        assert f'for="{control}"' in html, f"#{control} has no label"
    assert 'role="img" aria-labelledby="trend-svg-title trend-svg-desc"' in html
    desc = text_of(html, "trend-svg-desc")
    assert desc == ("Daily index over 2 days, 2 with enough answers: lowest 63 on 2026-11-10, "
                    "highest 100 on 2026-11-11, latest 100 on 2026-11-11.")
    assert "<caption" in html and 'scope="row"' in html


def _contrast(fg: str, bg: str) -> float:
    def luminance(colour: str) -> float:
        channels = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
        r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    high, low = sorted((luminance(fg), luminance(bg)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_every_text_colour_has_a_contrast_of_at_least_4_5() -> None:
    from pathlib import Path

    static = Path(pages.__file__).parent / "static"
    css = (static / "dashboard.css").read_text() + (static / "tv.css").read_text()
    colours = dict(re.findall(r"--([a-z0-9-]+):\s*(#[0-9a-f]{6})", css))
    pairs = [("ink", "bg"), ("ink", "card"), ("muted", "bg"), ("muted", "card"), ("ring", "bg"), ("ring", "card"),
             ("bad", "card"), ("good", "card"), ("tv-ink", "tv-bg"), ("tv-ink", "tv-card"), ("tv-muted", "tv-bg"),
             ("tv-muted", "tv-card")]
    pairs += [("ink", f"b{band}") for band in range(1, 6)]  # heatmap numbers on their band colours
    for fg, bg in pairs:
        assert _contrast(colours[fg], colours[bg]) >= 4.5, (fg, bg)

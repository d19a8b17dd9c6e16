"""The live feed's privacy modes and its resumable cursor, on SQLite and PostgreSQL.

Answers are stored through ``Store.insert_events`` (received now); a desk's
delay is passed by asking the feed what it would send at a later ``now``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from central import config as central_config
from central import reads
from central.feed import Cursor, Feed
from central.store import Store
from tests.support.events import feedback_event

CONFIG = central_config.from_dict({"sites": {"hq": {"desks": {
    "open": {"feed": "live"},
    "late": {"feed": "delayed", "delay_min": 30},
    "later": {"feed": "delayed", "delay_min": 60},
    "hidden": {"feed": "aggregated"},
}}}})


def put(store: Store, device: str, n: int = 1, site: str = "hq") -> list[str]:
    batch = [feedback_event(site, device) for _ in range(n)]
    store.insert_events(batch)
    return [e["id"] for e in batch]


def drain(feed: Feed, cursor: Cursor, now: datetime, limit: int = 200) -> tuple[list[tuple[str, str]], Cursor]:
    """Poll until nothing more comes: (kind, id or desk) in sending order, and the cursor."""
    sent: list[tuple[str, str]] = []
    while True:
        items, cursor = feed.poll(cursor, limit=limit, now=now)
        if not items:
            return sent, cursor
        for item in items:
            sent.append((item.kind, item.data["id"] if item.kind == "feedback" else item.data["device"]))
            assert Cursor.parse(str(item.cursor)) == item.cursor


def test_cursor_text_round_trips() -> None:
    c = Cursor(42, ((30, 7), (60, 0)))
    assert str(c) == "42;30:7;60:0" and Cursor.parse(str(c)) == c
    assert Cursor.parse("17") == Cursor(17)
    assert Cursor.parse(str(2**63 - 1)) == Cursor(2**63 - 1)
    for bad in ("", "x", "1;2", "1;a:2", "-1", "1;2:", str(2**63), "9" * 5000, "1;5:" + "9" * 20, "١٢",
                "1" + ";1:1" * 65):
        assert Cursor.parse(bad) is None


def test_each_privacy_mode(store) -> None:
    feed = Feed(store, CONFIG)
    now = datetime.now(UTC)
    cursor = feed.start(now)
    live = put(store, "open", 2)
    late = put(store, "late", 2)
    later = put(store, "later", 1)
    put(store, "hidden", 3)
    unknown = put(store, "not-configured", 1)  # a desk not in the file: live
    sent, cursor = drain(feed, cursor, now)
    assert sent == [("feedback", i) for i in live + unknown] + [("tick", "hidden")]
    # 31 minutes on: the 30-minute desk's answers; an hour on: the other's too. Never twice.
    sent, cursor = drain(feed, cursor, now + timedelta(minutes=31))
    assert sent == [("feedback", i) for i in late]
    sent, cursor = drain(feed, cursor, now + timedelta(minutes=61))
    assert sent == [("feedback", i) for i in later]
    assert drain(feed, cursor, now + timedelta(days=1))[0] == []


def test_recent_hides_what_the_feed_holds_back_and_resumes_after_it(store) -> None:
    feed = Feed(store, CONFIG)
    shown = put(store, "open", 1) + put(store, "other-site-desk", 1, site="elsewhere")
    held = put(store, "late", 1)
    put(store, "hidden", 1)
    now = datetime.now(UTC)
    events, cursor = feed.recent(now=now)
    assert [e["id"] for e in events] == list(reversed(shown))
    newer = put(store, "open", 1)
    sent, _ = drain(feed, cursor, now + timedelta(minutes=31))
    assert sent == [("feedback", newer[0]), ("feedback", held[0])]
    # Filtered to one site: the other site's answer neither listed nor sent.
    hq = Feed(store, CONFIG, site="hq")
    assert [e["site"] for e in hq.recent(now=now)[0]] == ["hq", "hq"]
    one = Feed(store, CONFIG, site="hq", device="open")
    assert {e["device"] for e in one.recent(now=now)[0]} == {"open"}


@pytest.mark.parametrize("limit", [1, 3, 200])
def test_resuming_from_any_item_misses_and_doubles_nothing(store, limit) -> None:
    feed = Feed(store, CONFIG)
    now = datetime.now(UTC)
    start = feed.start(now)
    expected_live = []
    for round_ in range(3):
        expected_live += put(store, "open", 2)
        put(store, "late", 1)
        put(store, "hidden", 1)
        expected_live += put(store, "x", 1, site=f"s{round_}")
    later = now + timedelta(minutes=31)
    # A browser drops the connection after every single item and resumes from that item's id.
    got: list[str] = []
    cursor = start
    for _ in range(100):
        items, _ = feed.poll(cursor, limit=limit, now=later)
        if not items:
            break
        first = items[0]
        if first.kind == "feedback":
            got.append(first.data["id"])
        cursor = first.cursor
    late = [e["id"] for e in reads.events(store, after=0, limit=1000) if e["device"] == "late"]
    assert sorted(got) == sorted(expected_live + late) and len(got) == len(set(got))


def test_a_delay_added_later_starts_at_now(store) -> None:
    before = Feed(store, central_config.from_dict({}))
    cursor = before.start()
    put(store, "late", 1)
    after = Feed(store, CONFIG)  # the config now delays "late"
    now = datetime.now(UTC)
    sent, cursor = drain(after, cursor, now)
    assert sent == []  # not live any more, and younger than its delay
    assert cursor.part(30) is not None


def test_the_newest_answers_of_a_quiet_site_are_found_beyond_the_newest_window(store, monkeypatch) -> None:
    """SQLite looks among the newest answers first; a site with fewer there is read through its index."""
    monkeypatch.setattr(reads, "RECENT_WINDOW", 5)
    store.insert_events([feedback_event("quiet", "d-1", seq=i, rating=2) for i in range(1, 4)])
    store.insert_events([feedback_event("busy", "d-1", seq=i, rating=5) for i in range(1, 11)])
    assert [e["seq"] for e in reads.recent(store, 3, site="quiet")] == [3, 2, 1]
    assert [e["seq"] for e in reads.recent(store, 2, site="busy")] == [10, 9]
    assert [e["seq"] for e in reads.recent(store, 3, site="quiet", device="d-1")] == [3, 2, 1]
    feed = Feed(store, central_config.from_dict({}), site="quiet")
    items, _ = feed.poll(Cursor(0))
    assert [i.data["seq"] for i in items] == [1, 2, 3]  # the live feed reads on from its cursor

"""Comparisons, targets and the "needs attention" ranking against hand-computed values, on SQLite and PostgreSQL.

Answers go into a real store through ``Store.insert_events`` (as the collector
stores them), read back from the rollups by :mod:`central.compare`. Every
expected number is worked out by hand in the comments.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from central import compare
from central import config as central_config
from central.scores import aggregate
from central.store import Store
from sync import protocol
from sync.errors import ConfigError
from tests.support.events import feedback_event

#: Wednesday 18 November 2026, noon in London (UTC in November); 02:00 on Thursday the 19th in Kiritimati (UTC+14).
NOW = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)


def cfg(**dashboard) -> central_config.CentralConfig:
    return central_config.from_dict({
        "sites": {
            "north": {"name": "North hall", "timezone": "Europe/London", "target": 70,
                      "desks": {"a": {"name": "Desk Alpha"}, "b": {"name": "Desk Bravo"}}},
            "kiri": {"name": "Kiritimati", "timezone": "Pacific/Kiritimati", "desks": {"k": {"name": "Desk Kilo"}}},
        },
        "dashboard": dashboard,
    })


@pytest.fixture
def store(store_url):
    with Store(store_url) as s:
        s.migrate()
        s.zones = lambda slug: cfg().site(slug).timezone  # as central sets it: the rollups in local days
        yield s


def put(store: Store, when: datetime, *ratings: int, site: str = "north", device: str = "a",
        flags: list[str] | None = None, reasons: list[str] | None = None) -> None:
    store.insert_events([feedback_event(site, device, rating=r, scale=5, ts=protocol.utc_timestamp(when),
                                        flags=flags or [], reasons=reasons or []) for r in ratings])


def day(n: int, hour: int = 10) -> datetime:
    """``n`` days after Wednesday 18 November 2026 (negative: before), at ``hour`` UTC (London's local hour)."""
    return datetime(2026, 11, 18, hour, 0, tzinfo=UTC) + timedelta(days=n)


@pytest.fixture
def north(store: Store) -> Store:
    # Desk Alpha, 5-point scale (rating − 1 = steps of 4):
    #   today (Wed 18):      5 5 5 4 3 -> 4+4+4+3+2 = 17/20 -> 85; and a test-mode 1 (flagged, not counted)
    #   yesterday (Tue 17):  3 3 3 3 3 -> 10/20 -> 50
    #   last Wed (11):       4 4 4 4 4 -> 15/20 -> 75
    put(store, day(0), 5, 5, 5, 4, 3)
    put(store, day(0), 1, flags=["test"])
    put(store, day(-1), 3, 3, 3, 3, 3)
    put(store, day(-7), 4, 4, 4, 4, 4)
    # Desk Bravo: Monday 16: 1 1 1 1 1 -> 0; Friday 13 (last week): 5 5 5 5 5 -> 100.
    put(store, day(-2), 1, 1, 1, 1, 1, device="b")
    put(store, day(-5), 5, 5, 5, 5, 5, device="b")
    return store


def test_today_against_yesterday_last_weekday_and_this_week_against_last(north: Store) -> None:
    c = compare.comparisons(north, cfg(), site="north", now=NOW)
    scope = c["scope"]
    p = scope["periods"]
    assert (p["today"]["index"], p["today"]["counted"]) == (85, 5)
    assert (p["yesterday"]["index"], p["last_weekday"]["index"]) == (50, 75)
    # This week, Mon 16 to Wed 18: Alpha 17 + 10 steps, Bravo 0, over 15 answers · 4 = 27/60 -> 45.
    # Last week, Mon 9 to Sun 15: Alpha's 15 + Bravo's 20 over 10 · 4 = 35/40 -> 87.5.
    assert (p["this_week"]["index"], p["this_week"]["counted"]) == (45, 15)
    assert (p["last_week"]["index"], p["last_week"]["counted"]) == (87.5, 10)
    ch = scope["changes"]
    assert ch["yesterday"]["words"] == "35 points better than yesterday"
    assert ch["last_weekday"]["words"] == "10 points better than last Wednesday"
    # Shown indexes: 45 against 88 (87.5 rounds half up): 43 points.
    assert ch["last_week"]["words"] == "43 points worse than last week"
    assert (ch["last_week"]["points"], ch["last_week"]["direction"]) == (-43, "worse")
    # The target of 70 against today's 85.
    assert scope["target"] == 70 and scope["target_words"] == "target of 70 met (15 above)"
    # Today's index is the dashboard's today (same rollups, same rules).
    assert aggregate(north, cfg(), site="north", now=NOW)["today"]["index"] == p["today"]["index"]


def test_each_desk_and_site_is_compared_and_too_few_answers_say_so(north: Store) -> None:
    c = compare.comparisons(north, cfg(), site="north", now=NOW)
    desks = {d["device"]: d for d in c["desks"]}
    assert set(desks) == {"a", "b"} and [s["site"] for s in c["sites"]] == ["north"]
    bravo = desks["b"]
    assert bravo["periods"]["today"] == {"index": None, "counted": 0}
    assert bravo["changes"]["yesterday"]["words"] == "too few answers to compare with yesterday"
    assert bravo["changes"]["yesterday"]["direction"] is None
    # Bravo's week: Monday's five 1s -> 0; last week five 5s -> 100.
    assert bravo["changes"]["last_week"]["words"] == "100 points worse than last week"
    alpha = desks["a"]
    # Alpha's week: 27 steps over 10 answers -> 67.5 -> 68; last week 75: 7 worse.
    assert alpha["changes"]["last_week"]["words"] == "7 points worse than last week"
    # A desk's target is its site's.
    assert alpha["target"] == 70 and alpha["target_words"] == "target of 70 met (15 above)"


def test_flagged_answers_count_only_when_asked(north: Store) -> None:
    # With the test-mode 1 counted: today 17 + 0 over 6 · 4 = 17/24 -> 70.83 -> 71; vs 50: 21 better.
    c = compare.comparisons(north, cfg(), site="north", include_flagged=True, now=NOW)
    assert c["scope"]["periods"]["today"] == {"index": 70.83, "counted": 6}
    assert c["scope"]["changes"]["yesterday"]["words"] == "21 points better than yesterday"
    assert c["scope"]["target_words"] == "target of 70 met (1 above)"


def test_several_sites_are_compared_like_for_like(north: Store) -> None:
    # Kiritimati's yesterday is its Wednesday 18 (UTC+14): 10:00 UTC on the 18th is 00:00 on the 19th there,
    # so answers at 08:00 UTC on the 18th fall on its 18th. Five 5s: 100. It has none today (its 19th).
    put(north, datetime(2026, 11, 18, 8, 0, tzinfo=UTC), 5, 5, 5, 5, 5, site="kiri", device="k")
    c = compare.comparisons(north, cfg(), now=NOW)
    scope = c["scope"]
    # Today, all sites: only North's 85. Yesterday, all sites: North's 50 and Kiritimati's 100 -> 75.
    assert scope["periods"]["today"]["index"] == 85 and scope["periods"]["yesterday"]["index"] == 75
    # A site without answers today is left out of the change: 85 against North's own 50, not against 75.
    ch = scope["changes"]["yesterday"]
    assert (ch["partial"], ch["sites"], ch["of_sites"], ch["later"], ch["earlier"]) == (True, 1, 2, 85, 50)
    assert ch["site_names"] == ["North hall"]
    assert ch["words"] == "35 points better than yesterday"
    # Two different todays in view: "the same day last week", not a weekday's name.
    assert scope["changes"]["last_weekday"]["than"] == "the same day last week"
    assert scope["today_date"] is None and scope["target"] is None  # two sites: no one target
    assert [s["name"] for s in c["sites"]] == ["Kiritimati", "North hall"]
    kiri = c["sites"][0]
    assert kiri["today_date"] == "2026-11-19" and kiri["changes"]["last_weekday"]["than"] == "last Thursday"


def test_the_change_is_the_difference_of_the_indexes_as_shown() -> None:
    # 74.5 shows as 75 and 72.49 as 72: "3 points", as the numbers on the page say.
    assert compare.change(74.5, 72.49) == {"points": 3, "direction": "better"}
    assert compare.change_words(74.5, 72.49, "yesterday") == "3 points better than yesterday"
    assert compare.change_words(71, 72, "last week") == "1 point worse than last week"
    assert compare.change_words(72.4, 71.6, "yesterday") == "the same as yesterday"
    assert compare.change_words(None, 72, "yesterday") == "too few answers to compare with yesterday"
    assert compare.change_words(72, None, "last week") == "too few answers last week to compare"
    assert compare.target_words(79.5, 80) == "target of 80 met"
    assert compare.target_words(76, 80) == "4 points below the target of 80"
    assert compare.target_words(None, 80) == "target 80" and compare.target_words(60, None) is None
    assert [compare.target_short(i, 80) for i in (76, 79.5, 83, None)] == ["80: 4 below", "80: met", "80: 3 above",
                                                                          "80"]


def test_desks_are_ranked_worst_first_from_the_minimum_of_answers(store: Store) -> None:
    c10 = cfg(rank_min_answers=10)
    # Over the last 7 days (Thu 12 to Wed 18):
    #   Alpha: 10 answers, five 5s and five 1s -> 50; Bravo: 10 answers, all 3 -> 50 as well, and 2 more -> 12.
    #   Bravo then has 12 answers (ten 3s, two 2s): (20 + 2) / 48 -> 45.83: the worst.
    #   Kilo (Kiritimati): 9 answers only: not ranked. Alpha's 8 days ago (Tue 10) do not count.
    put(store, day(-1), 5, 5, 5, 5, 5, 1, 1, 1, 1, 1)
    put(store, day(-8), 1, 1, 1, 1, 1, 1, 1, 1, 1, 1)
    put(store, day(-3), *([3] * 10), 2, 2, device="b")
    put(store, datetime(2026, 11, 17, 8, 0, tzinfo=UTC), *([5] * 9), site="kiri", device="k")
    rk = compare.comparisons(store, c10, now=NOW)["ranking"]
    assert rk["min_answers"] == 10 and rk["days"] == 7
    assert [(d["name"], d["rank"], d["periods"]["last7"]["index"]) for d in rk["ranked"]] == [
        ("Desk Bravo", 1, 45.83), ("Desk Alpha", 2, 50)]
    assert [u["name"] for u in rk["unranked"]] == ["Desk Kilo"]
    # Alpha's 7 days before (Thu 5 to Wed 11): its ten 1s -> 0; 50 now: 50 points better.
    alpha = rk["ranked"][1]
    assert alpha["changes"]["prev7"]["words"] == "50 points better than the 7 days before"
    # New answers move the ranking at once.
    put(store, day(-2), 3, 3, device="a")  # Alpha: 12 answers, (20 + 4) / 48 = 50 still
    put(store, day(-2), 4, 4, 4, 4, device="b")  # Bravo: 16 answers, (22 + 12) / 64 = 53.13
    rk = compare.comparisons(store, c10, now=NOW)["ranking"]
    assert [d["name"] for d in rk["ranked"]] == ["Desk Alpha", "Desk Bravo"]
    # The default minimum is 20: nobody has that many.
    assert compare.comparisons(store, cfg(), now=NOW)["ranking"]["ranked"] == []


def test_ranked_ties_prefer_the_desk_with_more_answers(store: Store) -> None:
    put(store, day(-1), *([3] * 10))  # Alpha: 10 answers, 50
    put(store, day(-1), *([3] * 14), device="b")  # Bravo: 14 answers, 50
    rk = compare.comparisons(store, cfg(rank_min_answers=10), now=NOW)["ranking"]
    assert [d["name"] for d in rk["ranked"]] == ["Desk Bravo", "Desk Alpha"]


def test_comparisons_are_computed_once_until_the_next_answer(north: Store) -> None:
    import sqlalchemy as sa

    statements: list[str] = []
    sa.event.listen(north.engine, "before_cursor_execute",
                    lambda conn, cursor, statement, *rest: statements.append(statement))
    c = cfg()
    first = compare.comparisons(north, c, site="north", now=NOW)
    assert any("day_rollups" in q for q in statements)
    statements.clear()
    again = compare.comparisons(north, c, site="north", now=NOW)
    assert again == first and not any("day_rollups" in q for q in statements)
    again["scope"]["periods"]["today"]["index"] = -1  # the caller's copy
    assert compare.comparisons(north, c, site="north", now=NOW)["scope"]["periods"]["today"]["index"] == 85
    put(north, day(0), 1)
    after = compare.comparisons(north, c, site="north", now=NOW)
    assert after["scope"]["periods"]["today"]["counted"] == 6  # a new answer counts at once


def test_the_target_and_the_ranking_minimum_are_checked_at_start() -> None:
    def load(site: dict | None = None, **dashboard) -> central_config.CentralConfig:
        return central_config.from_dict({"sites": {"north": {"timezone": "Europe/London", **(site or {})}},
                                         "dashboard": dashboard}, source="central.toml")

    assert load({"target": 72.5}).site("north").target == 72.5
    assert load().site("north").target is None and load().dashboard.rank_min_answers == 20
    with pytest.raises(ConfigError, match=r"central.toml: sites.north.target must be an index from 0 to 100"):
        load({"target": 101})
    with pytest.raises(ConfigError, match=r"sites.north.target must be .*not a boolean"):
        load({"target": True})
    with pytest.raises(ConfigError, match=r"sites.north.target must be .*got str"):
        load({"target": "80"})
    assert load(min_answers=30).dashboard.rank_min_answers == 30  # the default follows a larger minimum
    with pytest.raises(ConfigError, match=r"dashboard.rank_min_answers must be at least dashboard.min_answers \(10\)"):
        load(min_answers=10, rank_min_answers=5)

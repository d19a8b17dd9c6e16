"""The dashboard's numbers against hand-computed values, on SQLite and PostgreSQL.

Answers go into a real store through ``Store.insert_events`` (as the collector
stores them) with device times chosen by the test; every expected number below
is worked out by hand in the comments, not by calling the code under test.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from central import config as central_config
from central import reads
from central.scores import Tally, aggregate, index_of
from central.store import Store
from sync import protocol
from tests.support.events import feedback_event


@pytest.fixture
def store(store_url):
    with Store(store_url) as s:
        s.migrate()
        s.zones = lambda slug: cfg().site(slug).timezone  # as central sets it: the rollups in local days
        yield s


def put(store: Store, when: datetime, rating: int, *, scale: int = 4, site: str = "akl", device: str = "desk-1",
        flags: list[str] | None = None, reasons: list[str] | None = None, n: int = 1) -> None:
    store.insert_events([
        feedback_event(site, device, rating=rating, scale=scale, ts=protocol.utc_timestamp(when),
                       flags=flags or [], reasons=reasons or [])
        for _ in range(n)
    ])


def cfg(**dashboard) -> central_config.CentralConfig:
    return central_config.from_dict({
        "sites": {
            # Auckland is UTC+13 in November (daylight saving time); Pago Pago UTC−11 all year.
            "akl": {"name": "Auckland airport", "timezone": "Pacific/Auckland",
                    "hours": {"default": "08:00-20:00", "sun": "closed"},
                    "desks": {"desk-1": {"name": "Luggage 1"}, "desk-9": {"name": "Spare desk"}}},
            "ppg": {"name": "Pago Pago", "timezone": "Pacific/Pago_Pago"},
        },
        "dashboard": dashboard,
    })


def test_the_worked_example_gives_78() -> None:
    # 126/60/16/17 answers on a 4-point scale, best to worst:
    # (126·3/3 + 60·2/3 + 16·1/3 + 17·0) / 219 = 171.33 / 219 = 0.7823.
    assert index_of({(4, 4): 126, (3, 4): 60, (2, 4): 16, (1, 4): 17}) == 78.23
    assert round(index_of([(4, 4, 126), (3, 4, 60), (2, 4, 16), (1, 4, 17)])) == 78


def test_the_index_is_the_same_idea_on_every_scale() -> None:
    # Worst 0, best 100, the middle face of 3 or 5 is 50.
    assert index_of({(1, 3): 1}) == 0 and index_of({(3, 3): 1}) == 100 and index_of({(2, 3): 1}) == 50
    assert index_of({(3, 5): 2}) == 50 and index_of({(2, 5): 1, (4, 5): 1}) == 50
    # Mixed scales: 5/5 (1.0) and 2/4 (1/3): mean 2/3.
    assert index_of({(5, 5): 1, (2, 4): 1}) == 66.67


def test_no_index_below_the_minimum() -> None:
    tally = Tally()
    tally.add(4, 4, 4)
    assert tally.index(5) is None and tally.index(4) == 100
    assert Tally().index(1) is None


def test_the_worked_example_through_the_store(store) -> None:
    day = datetime(2026, 11, 18, 0, 0, tzinfo=UTC)  # 13:00 in Auckland, a Wednesday
    for rating, n in ((4, 126), (3, 60), (2, 16), (1, 17)):
        put(store, day, rating, n=n)
    agg = aggregate(store, cfg(), site="akl", start=date(2026, 11, 18), end=date(2026, 11, 18),
                    now=datetime(2026, 11, 20, tzinfo=UTC))
    assert agg["counted"] == agg["total"] == 219 and agg["flagged"] == 0
    assert round(agg["index"]) == 78
    assert agg["scale"] == 4 and agg["ratings"] == [17, 16, 60, 126]  # worst first
    assert agg["timezone"] == "Pacific/Auckland"


def test_flagged_answers_are_counted_apart_and_excluded_by_default(store) -> None:
    when = datetime(2026, 11, 18, 0, 0, tzinfo=UTC)
    put(store, when, 4, n=5)  # five best answers: 100
    put(store, when, 1, n=3, flags=["rapid_repeat"])
    put(store, when, 1, n=2, flags=["test"])
    put(store, when, 1, n=1)
    now = datetime(2026, 11, 20, tzinfo=UTC)
    agg = aggregate(store, cfg(), site="akl", start=date(2026, 11, 18), end=date(2026, 11, 18), now=now)
    # Counted: 5 × 1.0 + 1 × 0 over 6 = 83.33; 5 flagged; 11 in all.
    assert (agg["total"], agg["counted"], agg["flagged"], agg["index"]) == (11, 6, 5, 83.33)
    both = aggregate(store, cfg(), site="akl", start=date(2026, 11, 18), end=date(2026, 11, 18), now=now,
                     include_flagged=True)
    # 5 × 1.0 over 11 = 45.45
    assert (both["counted"], both["index"]) == (11, 45.45)
    # The config's default for the switch.
    assert aggregate(store, cfg(include_flagged=True), site="akl", start=date(2026, 11, 18),
                     end=date(2026, 11, 18), now=now)["counted"] == 11


def test_minimum_hides_the_index_but_not_the_counts(store) -> None:
    put(store, datetime(2026, 11, 18, 0, 0, tzinfo=UTC), 4, n=4)
    now = datetime(2026, 11, 20, tzinfo=UTC)
    agg = aggregate(store, cfg(), site="akl", start=date(2026, 11, 18), end=date(2026, 11, 18), now=now)
    assert agg["counted"] == 4 and agg["index"] is None and agg["min_answers"] == 5
    assert aggregate(store, cfg(min_answers=4), site="akl", start=date(2026, 11, 18), end=date(2026, 11, 18),
                     now=now)["index"] == 100


def test_local_midnight_far_from_utc(store) -> None:
    # Auckland (UTC+13): 10:59 UTC on the 17th is 23:59 on the 17th; 11:00 UTC is 00:00 on the 18th.
    put(store, datetime(2026, 11, 17, 10, 59, tzinfo=UTC), 1, site="akl")
    put(store, datetime(2026, 11, 17, 11, 0, tzinfo=UTC), 4, site="akl", n=2)
    # Pago Pago (UTC−11): 10:59 UTC on the 18th is 23:59 on the 17th; 11:00 UTC is 00:00 on the 18th.
    put(store, datetime(2026, 11, 18, 10, 59, tzinfo=UTC), 1, site="ppg", n=3)
    put(store, datetime(2026, 11, 18, 11, 0, tzinfo=UTC), 4, site="ppg", n=4)
    now = datetime(2026, 11, 25, tzinfo=UTC)
    c = cfg(min_answers=1)

    def day(site, d):
        return aggregate(store, c, site=site, start=d, end=d, now=now)

    assert (day("akl", date(2026, 11, 17))["counted"], day("akl", date(2026, 11, 18))["counted"]) == (1, 2)
    assert day("akl", date(2026, 11, 17))["index"] == 0 and day("akl", date(2026, 11, 18))["index"] == 100
    assert (day("ppg", date(2026, 11, 17))["counted"], day("ppg", date(2026, 11, 18))["counted"]) == (3, 4)
    # Both sites on the 18th, each in its own time zone: akl 2 + ppg 4.
    both = aggregate(store, c, start=date(2026, 11, 18), end=date(2026, 11, 18), now=now)
    assert both["counted"] == 6 and both["index"] == 100 and both["timezone"] is None
    # The heatmap: the akl answers at 23:59 (Tuesday) and 00:00 (Wednesday) local.
    akl = aggregate(store, c, site="akl", start=date(2026, 11, 17), end=date(2026, 11, 18), now=now)
    cell = {(wd, x["hour"]): x for wd, row in enumerate(akl["heatmap"]["cells"]) for x in row}
    assert cell[(1, 23)]["counted"] == 1 and cell[(2, 0)]["counted"] == 2
    assert cell[(1, 23)]["open"] is False  # 23:00 is outside 08:00–20:00, shown because it has answers
    assert cell[(1, 8)]["open"] is True and cell[(1, 8)]["counted"] == 0
    assert akl["heatmap"]["hours"] == [0, *range(8, 20), 23]


def test_days_weeks_and_closed_days(store) -> None:
    # Answers at 12:00 Auckland time (23:00 UTC the day before) on Fri 20, Sat 21 and Mon 23 Nov 2026.
    for d, rating in ((20, 4), (21, 1), (23, 4)):
        put(store, datetime(2026, 11, d - 1, 23, 0, tzinfo=UTC), rating, n=5)
    agg = aggregate(store, cfg(), site="akl", start=date(2026, 11, 20), end=date(2026, 11, 23),
                    now=datetime(2026, 11, 24, tzinfo=UTC))
    assert [(x["date"], x["counted"], x["index"], x["open"]) for x in agg["days"]] == [
        ("2026-11-20", 5, 100, True), ("2026-11-21", 5, 0, True),
        ("2026-11-22", 0, None, False),  # Sunday: closed
        ("2026-11-23", 5, 100, True),
    ]
    # ISO week 47 is Mon 16–Sun 22 Nov: 10 answers, 5 × 1 + 5 × 0 → 50; week 48: 5 answers → 100.
    assert [(w["week"], w["start"], w["counted"], w["index"]) for w in agg["weeks"]] == [
        ("2026-W47", "2026-11-16", 10, 50), ("2026-W48", "2026-11-23", 5, 100)]


def test_default_range_is_thirty_days_ending_today_at_the_site(store) -> None:
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # 01:00 on the 24th in Auckland
    put(store, now - timedelta(minutes=5), 4, n=5)  # the 24th in Auckland
    put(store, datetime(2026, 10, 25, 12, 0, tzinfo=UTC), 1, n=5)  # 26 Oct in Auckland: 30th day back
    put(store, datetime(2026, 10, 24, 12, 0, tzinfo=UTC), 1, n=5)  # 25 Oct: 31 days back, out of range
    agg = aggregate(store, cfg(), site="akl", now=now)
    assert (agg["start"], agg["end"]) == ("2026-10-26", "2026-11-24")
    assert agg["counted"] == 10 and agg["index"] == 50


def test_desks_compared_with_today(store) -> None:
    now = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)  # 14:00 on Mon 23 Nov in Auckland
    put(store, now - timedelta(hours=1), 4, device="desk-1", n=5)  # today
    put(store, now - timedelta(days=1), 1, device="desk-1", n=5)  # yesterday
    put(store, now - timedelta(days=1), 3, device="desk-2", n=2, reasons=["wait", "staff"])
    put(store, now - timedelta(days=1), 2, device="desk-2", n=1, reasons=["wait"])
    agg = aggregate(store, cfg(), site="akl", now=now)
    desks = {d["device"]: d for d in agg["desks"]}
    assert set(desks) == {"desk-1", "desk-2", "desk-9"}  # desk-9: configured, no answers yet
    assert desks["desk-1"]["name"] == "Luggage 1" and desks["desk-2"]["name"] == "desk-2"
    assert (desks["desk-1"]["counted"], desks["desk-1"]["index"]) == (10, 50)
    assert (desks["desk-1"]["today_counted"], desks["desk-1"]["today_index"]) == (5, 100)
    assert (desks["desk-2"]["counted"], desks["desk-2"]["index"], desks["desk-2"]["today_counted"]) == (3, None, 0)
    assert desks["desk-9"]["counted"] == 0
    assert agg["today"] == {"total": 5, "counted": 5, "flagged": 0, "index": 100, "scale": 4, "ratings": [0, 0, 0, 5]}
    assert agg["reasons"] == [{"reason": "wait", "count": 3}, {"reason": "staff", "count": 2}]
    one = aggregate(store, cfg(), site="akl", device="desk-2", now=now)
    assert [d["device"] for d in one["desks"]] == ["desk-2"] and one["counted"] == 3


def test_an_inverted_range_is_refused(store) -> None:
    with pytest.raises(ValueError, match="ends"):
        aggregate(store, cfg(), start=date(2026, 11, 2), end=date(2026, 11, 1))


def test_event_filters(store) -> None:
    t = datetime(2026, 11, 18, 9, 0, tzinfo=UTC)
    put(store, t, 4, site="akl", device="desk-1")
    put(store, t + timedelta(hours=1), 3, site="akl", device="desk-2", flags=["test"])
    put(store, t + timedelta(hours=2), 2, site="ppg", device="desk-1")
    assert [e["rating"] for e in reads.events(store, site="akl")] == [4, 3]
    assert [e["rating"] for e in reads.events(store, device="desk-1")] == [4, 2]
    assert [e["rating"] for e in reads.events(store, since=t + timedelta(minutes=30))] == [3, 2]
    assert [e["rating"] for e in reads.events(store, until=t + timedelta(hours=1))] == [4]
    assert [e["rating"] for e in reads.events(store, include_flagged=False)] == [4, 2]
    first = reads.events(store, limit=1)
    assert [e["rating"] for e in reads.events(store, after=first[0]["ingest_id"])] == [3, 2]
    assert [e["rating"] for e in reads.iter_events(store, page=1)] == [4, 3, 2]


def test_ranges_are_bounded(store) -> None:
    from central.filters import FilterError

    now = datetime(2026, 11, 23, tzinfo=UTC)
    with pytest.raises(FilterError, match="longer than 732 days") as err:
        aggregate(store, cfg(), start=date(2020, 1, 1), now=now)  # to today: too long
    assert err.value.name == "from"
    with pytest.raises(FilterError, match="out of range"):
        aggregate(store, cfg(), start=date(9999, 12, 30), end=date(9999, 12, 31), now=now)
    agg = aggregate(store, cfg(), start=date(2025, 1, 1), end=date(2026, 12, 31), now=now)  # 730 days: fine
    assert len(agg["days"]) == 730 and agg["total"] == 0


def test_a_view_is_computed_once_until_the_next_answer(store: Store) -> None:
    """Every page and TV showing the same view shares one computation; a new answer makes a new one."""
    import sqlalchemy as sa

    now = datetime(2026, 11, 18, 3, 0, tzinfo=UTC)  # 16:00 in Auckland
    put(store, now - timedelta(hours=1), 4, n=3)
    statements: list[str] = []
    sa.event.listen(store.engine, "before_cursor_execute",
                    lambda conn, cursor, statement, *rest: statements.append(statement))
    c = cfg()
    first = aggregate(store, c, site="akl", now=now)
    assert any("day_rollups" in q for q in statements)  # computed
    statements.clear()
    again = aggregate(store, c, site="akl", now=now)
    assert again == first and not any("day_rollups" in q or "GROUP BY" in q.upper() for q in statements)
    again["total"] = -1  # a caller's copy: the shared numbers stay as they were
    assert aggregate(store, c, site="akl", now=now)["total"] == 3
    put(store, now - timedelta(minutes=5), 1)
    statements.clear()
    after = aggregate(store, c, site="akl", now=now)
    assert after["total"] == 4 and any("day_rollups" in q for q in statements)  # the new answer counts at once


def test_a_page_that_has_seen_an_answer_gets_numbers_that_include_it(store: Store) -> None:
    """``seen`` (the page's feed cursor): numbers computed since are shared even after newer answers."""
    import sqlalchemy as sa

    from central import reads

    now = datetime(2026, 11, 18, 3, 0, tzinfo=UTC)
    put(store, now - timedelta(hours=1), 4, n=2)
    c = cfg()
    assert aggregate(store, c, site="akl", now=now)["total"] == 2
    seen = reads.last_ingest_id(store)
    put(store, now - timedelta(minutes=5), 1)  # a newer answer this page has not been sent yet
    statements: list[str] = []
    sa.event.listen(store.engine, "before_cursor_execute",
                    lambda conn, cursor, statement, *rest: statements.append(statement))
    shared = aggregate(store, c, site="akl", now=now, seen=seen)
    assert shared["total"] == 2  # includes what it saw, and nothing counted or looked up anew
    assert not any("day_rollups" in q or "max(" in q.lower() for q in statements), statements
    newest = reads.last_ingest_id(store)
    fresh = aggregate(store, c, site="akl", now=now, seen=newest)  # it has seen the newer one: computed
    assert fresh["total"] == 3 and any("day_rollups" in q for q in statements)
    statements.clear()
    assert aggregate(store, c, site="akl", now=now, seen=newest)["total"] == 3
    assert not any("day_rollups" in q for q in statements)

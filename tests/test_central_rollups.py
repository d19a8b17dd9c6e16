"""The rollups (answers per desk and local day) say exactly what counting every answer says.

Hypothesis sends random answers (ratings, scales, flags, reasons, several sites in
several zones, duplicates, clocks set late so answers are re-timed) in random
batches to a real store (SQLite, and PostgreSQL when DESKPULSE_TEST_PG_URL is set),
then compares every day row and reason count read from the rollups with the same
numbers counted from ``events``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from central import reads
from central.store import Store
from sync import protocol
from tests.support.events import feedback_event

ZONES = ("UTC", "Europe/London", "Asia/Kolkata", "America/St_Johns", "Pacific/Kiritimati", "Asia/Kathmandu")
T0 = datetime(2026, 3, 28, 20, 0, tzinfo=UTC)  # the weekend Europe moves its clocks



def compare(store: Store, zones: dict[str, str], sites: list[str]) -> None:
    first, last = date(2026, 3, 25), date(2026, 4, 5)
    got, got_reasons = reads.days(store, lambda s: zones.get(s, "UTC"), first=first, last=last)
    with store.engine.connect() as conn:
        assert set(sites) <= set(store.rolled_up(conn)), "every site here is kept in the rollups"
    for site in sites:
        want, want_reasons = reads.days_from_events(store, ZoneInfo(zones[site]), site=site, first=first, last=last)
        assert sorted(r for r in got if r.site == site) == sorted(want), site
        assert sorted(r for r in got_reasons if r.site == site) == sorted(want_reasons), site


answer = st.fixed_dictionaries({
    "site": st.sampled_from(["s-a", "s-b", "s-c"]),
    "device": st.sampled_from(["d-1", "d-2"]),
    "minutes": st.integers(0, 5 * 24 * 60),
    "scale": st.sampled_from([3, 4, 5]),
    "rating": st.integers(1, 5),
    "flags": st.sampled_from([[], [], ["rapid_repeat"], ["test"], ["rapid_repeat", "test"]]),
    "reasons": st.lists(st.sampled_from(["wait_time", "outcome", "advice"]), max_size=2, unique=True),
    "synced": st.booleans(),
})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
          phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(answers=st.lists(answer, min_size=1, max_size=40), zones=st.tuples(*[st.sampled_from(ZONES)] * 3),
       batch=st.integers(1, 9), data=st.data())
def test_the_rollups_equal_counting_every_answer(store: Store, answers: list[dict[str, Any]], zones: tuple,
                                                 batch: int, data: st.DataObject) -> None:
    run = uuid.uuid4().hex[:6]  # each example its own sites, in one database
    zone_of = {f"{site}-{run}": zone for site, zone in zip(["s-a", "s-b", "s-c"], zones, strict=True)}
    store.zones = lambda s: zone_of.get(s, "UTC")
    boots: dict[tuple[str, str], str] = {}
    events = []
    for i, a in enumerate(answers):
        site = f"{a['site']}-{run}"
        boot = boots.setdefault((site, a["device"]), str(uuid.uuid4()))
        at = T0 + timedelta(minutes=a["minutes"])
        events.append(feedback_event(site, a["device"], seq=i + 1, epoch=boot, boot_id=boot,
                                     mono_ms=a["minutes"] * 60_000,
                                     ts=protocol.utc_timestamp(at), clock_synced=a["synced"],
                                     rating=min(a["rating"], a["scale"]), scale=a["scale"], flags=a["flags"],
                                     reasons=a["reasons"]))
    sent = events + data.draw(st.lists(st.sampled_from(events), max_size=10))  # redeliveries
    order = data.draw(st.permutations(sent))
    for first in range(0, len(order), batch):
        store.insert_events(order[first:first + batch])
    compare(store, zone_of, sorted({e["site"] for e in events}))
    # Read without the hours (the comparisons, the aggregates CSV): the same rows, hours at zero.
    first, last = date(2026, 3, 25), date(2026, 4, 5)
    full, _ = reads.days(store, lambda s: zone_of.get(s, "UTC"), first=first, last=last)
    lean, _ = reads.days(store, lambda s: zone_of.get(s, "UTC"), first=first, last=last, hours=False)
    assert [(r.site, r.device, r.day, r.scale, r.flagged, r.ratings) for r in full] == \
        [(r.site, r.device, r.day, r.scale, r.flagged, r.ratings) for r in lean]
    assert all(r.hours == r.steps == reads.NO_HOURS for r in lean if r.site in zone_of)  # (read from the rollups)
    # The heatmap's hours summed per site and day in the database: the full rows, summed.
    summed: dict[tuple, list[int]] = {}
    for r in full:
        acc = summed.setdefault((r.site, r.day, r.scale, r.flagged), [0] * 53)
        for i, v in enumerate((*r.ratings, *r.hours, *r.steps)):
            acc[i] += v
    got = reads.day_hours(store, lambda s: zone_of.get(s, "UTC"), first=first, last=last)
    assert sorted(((r.site, r.day, r.scale, r.flagged), [*r.ratings, *r.hours, *r.steps]) for r in got) == \
        sorted((k, v) for k, v in summed.items() if any(v[:5]))
    # Counting anew from events gives the same rows.
    store.rebuild_rollups(sorted({e["site"] for e in events}))
    compare(store, zone_of, sorted({e["site"] for e in events}))


def test_a_site_in_another_zone_is_read_from_events_until_rebuilt(store: Store) -> None:
    store.zones = lambda s: "UTC"
    late = T0.replace(hour=23, minute=30)  # 23:30 UTC: the next day in Kolkata
    store.insert_events([feedback_event("s-z", "d-1", seq=1, ts=protocol.utc_timestamp(late), rating=5)])
    first, last = date(2026, 3, 27), date(2026, 3, 30)

    def day_of_answer(zone: str) -> list[date]:
        rows, _ = reads.days(store, lambda s: zone, first=first, last=last)
        return [r.day for r in rows if r.site == "s-z"]

    assert day_of_answer("UTC") == [date(2026, 3, 28)]
    store.zones = lambda s: "Asia/Kolkata"  # central.toml now says Kolkata
    assert store.stale_rollups() == ["s-z"]
    assert day_of_answer("Asia/Kolkata") == [date(2026, 3, 29)]  # right at once, counted from events
    store.insert_events([feedback_event("s-z", "d-1", seq=2, ts=protocol.utc_timestamp(late), rating=4)])
    with store.engine.connect() as conn:
        assert "s-z" not in store.rolled_up(conn), "a batch does not mix zones in one site's rows"
    assert store.rebuild_rollups() == {"s-z": 2}
    assert store.stale_rollups() == []
    assert day_of_answer("Asia/Kolkata") == [date(2026, 3, 29)]
    rows, _ = reads.days(store, lambda s: "Asia/Kolkata", first=first, last=last)
    assert [r.hours[5] for r in rows if r.site == "s-z"] == [2]  # 05:00 local


def test_an_upgraded_store_is_counted_from_events_until_its_rollups_are_built(store: Store) -> None:
    """Answers stored before the rollups existed (their site has answers but no rollups)."""
    store.zones = lambda s: "UTC"
    store.insert_events([feedback_event("s-u", "d-1", seq=1, ts=protocol.utc_timestamp(T0))])
    with store.transaction() as conn:  # as after the migration: the tables empty, the answers there
        from central.store import day_rollups, rollup_zones

        conn.execute(day_rollups.delete())
        conn.execute(rollup_zones.delete())
    store.insert_events([feedback_event("s-u", "d-1", seq=2, ts=protocol.utc_timestamp(T0))])
    assert store.stale_rollups() == ["s-u"]  # not started on a half count
    rows, _ = reads.days(store, lambda s: "UTC", first=T0.date(), last=T0.date())
    assert [sum(r.ratings) for r in rows if r.site == "s-u"] == [2]
    store.rebuild_rollups(store.stale_rollups())
    rows, _ = reads.days(store, lambda s: "UTC", first=T0.date(), last=T0.date())
    assert [sum(r.ratings) for r in rows if r.site == "s-u"] == [2]


def test_a_store_left_without_rollups_counts_from_events_and_is_rebuilt_after(store: Store) -> None:
    """``--without-rollups`` (bench.ingest's comparison) never leaves the dashboard on stale rows."""
    store.zones = lambda s: "UTC"
    store.insert_events([feedback_event("s-w", "d-1", seq=1, ts=protocol.utc_timestamp(T0), rating=2)])
    store.leave_rollups()
    store.insert_events([feedback_event("s-w", "d-1", seq=2, ts=protocol.utc_timestamp(T0), rating=5)])
    with store.engine.connect() as conn:
        assert "s-w" not in store.rolled_up(conn)
    rows, _ = reads.days(store, lambda s: "UTC", first=T0.date(), last=T0.date())
    assert [r.ratings for r in rows if r.site == "s-w"] == [(0, 1, 0, 0, 1)]  # both, counted from events
    store.rollups = True  # the next ordinary start
    assert store.stale_rollups() == ["s-w"]
    store.rebuild_rollups(store.stale_rollups())
    compare(store, {"s-w": "UTC"}, ["s-w"])

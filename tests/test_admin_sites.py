"""Sites and desks edited in the dashboard (issue 16, admin): seen at once, audited, rollups kept right.

Real store (SQLite, and PostgreSQL when DESKPULSE_TEST_PG_URL is set), the real app
through FastAPI's TestClient (the guard, sessions and origin check included).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from central import reads, scores
from central.accounts import Accounts
from central.auth import hash_password
from central.sites import SiteBook, SiteError, audit_entries, parse_site_form
from central.store import Store
from tests.test_dashboard import make_app, make_config, put

ADMIN_PASSWORD = "the admin's long password"
VIEWER_PASSWORD = "the viewer's long password"
#: North hall's opening hours as central.toml gives them (make_config: open all day).
HOURS = {f"hours_{d}": "00:00-24:00" for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}



def add_accounts(store: Store) -> None:
    accounts = Accounts(store)
    accounts.add("boss", hash_password(ADMIN_PASSWORD), "admin")
    accounts.add("vera", hash_password(VIEWER_PASSWORD), "viewer")


def signed_in(app: Any, name: str, password: str) -> TestClient:
    client = TestClient(app, base_url="http://testserver")
    reply = client.post("/login", data={"name": name, "password": password, "next": "/"},
                        headers={"Origin": "http://testserver"}, follow_redirects=False)
    assert reply.status_code == 303, reply.text
    return client


SAME = {"Origin": "http://testserver"}


def site_form(**values: str) -> dict[str, str]:
    return {"action": "site", "site": "north", "name": "North hall", "timezone": "Europe/London", "target": "",
            **HOURS, **values}


def local_days(store: Store, config: Any) -> tuple[list[Any], list[Any]]:
    """What the dashboard reads per desk and local day over a wide window (rollups where kept)."""
    rows, reasons = reads.days(store, scores.zone_of(config), site="north", first=date(2026, 11, 1),
                               last=date(2026, 11, 30))
    return sorted(rows), sorted(reasons)


def from_events(store: Store, zone: str) -> tuple[list[Any], list[Any]]:
    from zoneinfo import ZoneInfo

    rows, reasons = reads.days_from_events(store, ZoneInfo(zone), site="north", first=date(2026, 11, 1),
                                           last=date(2026, 11, 30))
    return sorted(rows), sorted(reasons)


@pytest.mark.parametrize("store_url", ["sqlite", "postgresql"], indirect=True)
def test_a_new_time_zone_recounts_the_rollups_in_the_same_change(store: Store) -> None:
    base = make_config()
    store.zones = lambda slug: base.site(slug).timezone  # as central's cli sets it (central.toml)
    # Answers around the day boundaries of London and Tokyo (UTC+9): their local days differ.
    start = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
    for i in range(40):
        put(store, start + timedelta(hours=i * 1.7), 1 + i % 5, device="a" if i % 3 else "b",
            reasons=["wait_time"] if i % 4 == 0 else [])
    book = SiteBook(store, base)
    assert store.stale_rollups() == []
    assert local_days(store, book.config()) == from_events(store, "Europe/London")

    changes = book.save_site("north", parse_site_form("north", site_form(timezone="Asia/Tokyo", target="80")),
                             "boss")
    assert "timezone: Europe/London → Asia/Tokyo" in changes
    config = book.config()
    assert config.site("north").timezone == "Asia/Tokyo" and config.site("north").target == 80
    assert book.edited("north") == {"timezone", "target"}  # name and hours still follow central.toml
    sundays_closed = site_form(timezone="Asia/Tokyo", target="80", hours_sun="closed")
    assert book.save_site("north", parse_site_form("north", sundays_closed), "boss") == [
        "hours: sun 00:00-24:00 → sun closed"]
    assert book.edited("north") == {"timezone", "target", "hours"}
    assert book.config().site("north").hours[6] is None and book.config().site("north").is_open(0, time(3))
    with store.engine.connect() as conn:
        assert store.rolled_up(conn)["north"] == "Asia/Tokyo"  # read from the rollups, not from events
    assert store.stale_rollups() == []
    assert local_days(store, config) == from_events(store, "Asia/Tokyo")
    assert local_days(store, config) != from_events(store, "Europe/London")

    # The collector keeps counting new answers in the new zone (central.toml still says London).
    put(store, datetime(2026, 11, 20, 16, 30, tzinfo=UTC), 2, reasons=["wait_time"])  # 01:30 the 21st in Tokyo
    assert local_days(store, config) == from_events(store, "Asia/Tokyo")
    assert any(r.day == date(2026, 11, 21) for r in local_days(store, config)[0])

    # Back to central.toml: London again, counted again.
    assert book.reset_site("north", "boss")
    config = book.config()
    assert config.site("north").timezone == "Europe/London" and config.site("north").target is None
    assert local_days(store, config) == from_events(store, "Europe/London")
    actions = [(e.account, e.action, e.subject) for e in audit_entries(store)]
    assert actions == [("boss", "site-reset", "north"), ("boss", "site", "north"), ("boss", "site", "north")]


def test_another_process_sees_a_change_within_the_refresh(store_url: str, tmp_path: Any) -> None:
    with Store(store_url) as store:
        store.migrate()
        clock = [0.0]
        reader = SiteBook(store, make_config(), monotonic=lambda: clock[0])
        writer = SiteBook(store, make_config())
        assert reader.config().site("north").name == "North hall"
        writer.save_site("north", parse_site_form("north", site_form(name="North entrance hall")), "boss")
        assert reader.config().site("north").name == "North hall"  # asked again within the second
        clock[0] += 1.0
        assert reader.config().site("north").name == "North entrance hall"


@pytest.mark.parametrize(("values", "field", "words"), [
    ({"timezone": "Europe/Berlinn"}, "timezone", "not a known time zone"),
    ({"timezone": "Berlin"}, "timezone", "did you mean Europe/Berlin"),
    ({"hours_tue": "18:00-08:00"}, "hours_tue", "closes before it opens"),
    ({"hours_sat": "9 to 5"}, "hours_sat", 'must look like "08:00-18:00"'),
    ({"target": "120"}, "target", "from 0 to 100"),
    ({"target": "high"}, "target", "not a number"),
    ({"name": "   "}, "name", "give the site a name"),
])
def test_a_bad_value_names_its_field(values: dict[str, str], field: str, words: str) -> None:
    with pytest.raises(SiteError) as refused:
        parse_site_form("north", site_form(**values))
    assert refused.value.field == field and words in str(refused.value)


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_an_admin_renames_a_site_and_a_desk_and_every_page_shows_it_without_restart(store: Store) -> None:
    add_accounts(store)
    put(store, datetime.now(UTC), 5)
    app = make_app(store, make_config())
    admin = signed_in(app, "boss", ADMIN_PASSWORD)
    assert "North hall" in admin.get("/?site=north").text
    saved = admin.post("/admin/sites", data=site_form(name="Nordhalle"), headers=SAME, follow_redirects=False)
    assert saved.status_code == 303 and "saved+north" in saved.headers["location"]
    desk = admin.post("/admin/sites", data={"action": "desk", "site": "north", "device": "a", "name": "Schalter A"},
                      headers=SAME, follow_redirects=False)
    assert desk.status_code == 303
    overview = admin.get("/?site=north").text
    assert "Nordhalle" in overview and "Schalter A" in overview
    assert "Schalter A" in admin.get("/export/answers.csv").text
    page = admin.get("/admin/sites").text
    assert 'value="Nordhalle"' in page and "(set here)" in page
    audit = admin.get("/admin/audit").text
    assert "boss" in audit and "name: North hall → Nordhalle" in audit and "name: Desk Alpha → Schalter A" in audit
    book = app.state.web.sites
    assert book.edited("north") == {"name"} and book.desk_edited("north", "a")
    admin.post("/admin/sites", data={"action": "desk", "site": "north", "device": "b", "name": "  "}, headers=SAME)
    assert not book.desk_edited("north", "b") and book.config().site("north").desk("b").name == "Desk Bravo"
    assert [e.subject for e in audit_entries(store)] == ["north/a", "north"]  # nothing changed for b: no entry
    # Saved back to central.toml's value: no longer kept, it follows the file again.
    admin.post("/admin/sites", data=site_form(name="North hall"), headers=SAME)
    assert book.edited("north") == frozenset() and book.config().site("north").name == "North hall"
    refused = admin.post("/admin/sites", data=site_form(timezone="Mars/Olympus"), headers=SAME)
    assert refused.status_code == 200 and "is not a known time zone" in refused.text
    assert 'aria-invalid="true"' in refused.text


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_viewer_gets_403_and_a_cross_site_post_is_refused(store: Store) -> None:
    add_accounts(store)
    app = make_app(store, make_config())
    viewer = signed_in(app, "vera", VIEWER_PASSWORD)
    for path in ("/admin/sites", "/admin/audit", "/admin/surveys/north", "/admin/surveys/north/kiosks"):
        assert viewer.get(path).status_code == 403, path
    assert viewer.post("/admin/sites", data=site_form(name="Mine now"), headers=SAME).status_code == 403
    assert viewer.post("/admin/surveys/north", data={"action": "publish", "languages": "en", "scale": "5"},
                       headers=SAME).status_code == 403
    admin = signed_in(app, "boss", ADMIN_PASSWORD)
    evil = {"Origin": "https://evil.example"}
    assert admin.post("/admin/sites", data=site_form(name="Hijacked"), headers=evil).status_code == 403
    assert admin.post("/admin/surveys/north", data={"action": "publish", "languages": "en", "scale": "5"},
                      headers=evil).status_code == 403
    assert audit_entries(store) == []
    assert SiteBook(store, make_config()).config().site("north").name == "North hall"


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_values_broken_by_hand_in_the_database_fall_back_to_central_toml(store: Store) -> None:
    from central.store import site_settings

    base = make_config()
    store.zones = lambda slug: base.site(slug).timezone
    with store.transaction() as conn:
        conn.execute(site_settings.insert().values(site="north", name="Still named", timezone="Mars/Olympus",
                                                   hours="{not json", target=None, updated_at=datetime.now(UTC),
                                                   updated_by="someone with psql"))
    site = SiteBook(store, base).config().site("north")
    assert (site.name, site.timezone, site.hours) == ("Still named", "Europe/London", base.site("north").hours)
    put(store, datetime(2026, 11, 20, 23, 30, tzinfo=UTC), 4)  # the collector keeps storing and counting
    with store.engine.connect() as conn:
        assert store.zones_in(conn, ["north"]) == {"north": "Europe/London"}
    assert local_days(store, SiteBook(store, base).config()) == from_events(store, "Europe/London")

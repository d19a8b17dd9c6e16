"""The refreshed parts of the overview and the TV: rendered once, the same bytes for every page asking.

Counts the renderings (``pages.renders``) and the SQL statements, and checks that
nothing of one asker reaches another: each language gets its own HTML, no
account's name is in the shared parts, and a new answer or a kiosk's new status
is in the next parts served.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from central import pages, reads
from central.accounts import Accounts
from central.auth import hash_password
from central.store import Store
from sync import protocol
from tests.support.wait import wait_for
from tests.test_dashboard import TV_TOKEN, make_app, make_config, put

SAME = {"Origin": "http://testserver"}
PASSWORDS = {"boss-anna": "admin-password-123", "clerk-bert": "viewer-password-456"}


def seed(store: Store) -> None:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    for days in range(5):
        for i, rating in enumerate((5, 4, 2, 1, 5, 3)):
            put(store, now - timedelta(days=days, hours=1, minutes=i), rating, device="ab"[i % 2],
                reasons=["wait_time"] if rating <= 2 else [])
    accounts = Accounts(store)
    accounts.add("boss-anna", hash_password(PASSWORDS["boss-anna"]), "admin")
    accounts.add("clerk-bert", hash_password(PASSWORDS["clerk-bert"]), "viewer")


@pytest.fixture(autouse=True)
def _within_one_minute() -> None:
    """The shared parts are kept per minute: a test counting renders must not cross a minute's end
    (each takes a second or two; one that began 8 s before a new minute waits for the new one)."""
    wait_for(lambda: datetime.now(UTC).second < 52, timeout=10, what="a minute with time to spare")


def signed_in(app: Any, name: str) -> TestClient:
    client = TestClient(app, base_url="http://testserver")
    reply = client.post("/login", data={"name": name, "password": PASSWORDS[name], "next": "/"}, headers=SAME,
                        follow_redirects=False)
    assert reply.status_code == 303, reply.text
    return client


def count_statements(store: Store) -> list[str]:
    statements: list[str] = []
    sa.event.listen(store.engine, "before_cursor_execute",
                    lambda conn, cursor, statement, *rest: statements.append(statement))
    return statements


@pytest.mark.parametrize("store_url", ["sqlite", "postgresql"], indirect=True)
def test_the_overviews_parts_are_rendered_once_for_every_page_of_a_view(store: Store) -> None:
    seed(store)
    app = make_app(store, make_config())
    boss, clerk = signed_in(app, "boss-anna"), signed_in(app, "clerk-bert")
    seen = str(reads.last_ingest_id(store))
    before = pages.renders.get("overview", 0)
    first = boss.get("/partials/overview", params={"site": "north", "seen": seen})
    assert first.status_code == 200 and 'id="kpis" data-part' in first.text
    assert pages.renders.get("overview", 0) == before + 1
    statements = count_statements(store)
    # Ten more pages, of both accounts: the same bytes, no rendering, no numbers read again.
    for who in [boss, clerk] * 5:
        again = who.get("/partials/overview", params={"site": "north", "seen": seen})
        assert again.content == first.content
    assert pages.renders.get("overview", 0) == before + 1
    assert not any("day_rollups" in q for q in statements), statements
    # A new answer the pages have seen: rendered once more, with it, and shared again.
    put(store, datetime.now(UTC), 5, device="a", n=7)
    seen = str(reads.last_ingest_id(store))
    fresh = clerk.get("/partials/overview", params={"site": "north", "seen": seen})
    assert fresh.content != first.content and pages.renders.get("overview", 0) == before + 2
    assert boss.get("/partials/overview", params={"site": "north", "seen": seen}).content == fresh.content
    assert pages.renders.get("overview", 0) == before + 2
    # Without ?seen= (a page without its feed's cursor) the newest answers count: still shared when none is new.
    assert boss.get("/partials/overview", params={"site": "north"}).content == fresh.content
    assert pages.renders.get("overview", 0) == before + 2


def test_the_shared_parts_hold_the_new_answer_and_the_kiosks_new_status(store: Store) -> None:
    seed(store)
    client = signed_in(make_app(store, make_config()), "clerk-bert")
    params = {"site": "north", "device": "a", "from": (datetime.now(UTC) - timedelta(days=40)).date().isoformat()}
    before = client.get("/partials/overview", params=params).text
    assert "desk-vanished" not in before
    put(store, datetime.now(UTC), 1, device="a", n=3)
    after = client.get("/partials/overview", params={**params, "seen": str(reads.last_ingest_id(store))}).text
    # 15 answers at desk a (5 days × 3) and 3 new: the total in the shared parts counts them.
    assert '<strong id="total">15</strong>' in before
    assert '<strong id="total">18</strong>' in after
    # A kiosk's status changes no answer, yet the parts show it at once (its health is in the key).
    store.record_status({"schema": 1, "site": "north", "device": "a", "state": "offline",
                         "ts": protocol.utc_timestamp(datetime.now(UTC)), "version": "9.8.7",
                         "health": {"backlog": 0, "clock_synced": True, "last_error": "desk-vanished"}})
    status = client.get("/partials/overview", params={**params, "seen": str(reads.last_ingest_id(store))}).text
    assert "desk-vanished" in status and "9.8.7" in status


def test_each_language_gets_its_own_parts_and_no_account_reaches_another(store: Store) -> None:
    seed(store)
    app = make_app(store, make_config())
    boss, clerk = signed_in(app, "boss-anna"), signed_in(app, "clerk-bert")
    boss.post("/lang", data={"lang": "de", "next": "/"}, headers=SAME, follow_redirects=False)
    seen = str(reads.last_ingest_id(store))
    before = pages.renders.get("overview", 0)
    german = boss.get("/partials/overview", params={"seen": seen}).text
    english = clerk.get("/partials/overview", params={"seen": seen}).text
    assert "Kiosk-Zustand" in german and "Kiosk health" not in german
    assert "Kiosk health" in english and "Kiosk-Zustand" not in english
    assert pages.renders.get("overview", 0) == before + 2  # one per language
    # The German account's later refreshes are German, the English one's English, in any order.
    assert clerk.get("/partials/overview", params={"seen": seen}).text == english
    assert boss.get("/partials/overview", params={"seen": seen}).text == german
    for text in (german, english):
        assert "boss-anna" not in text and "clerk-bert" not in text
    # Whole pages stay each asker's own (not shared): each in its account's language.
    assert '<html lang="de">' in boss.get("/").text and '<html lang="en">' in clerk.get("/").text
    french = clerk.get("/partials/overview", params={"seen": seen, "lang": "fr"}).text
    assert french not in (english, german) and "boss-anna" not in french


def test_the_tv_parts_are_shared_by_every_tv_and_read_no_feed(store: Store) -> None:
    seed(store)
    client = TestClient(make_app(store, make_config()))
    seen = str(reads.last_ingest_id(store))
    before = pages.renders.get("tv", 0)
    first = client.get(f"/tv/{TV_TOKEN}/partial", params={"seen": seen})
    assert first.status_code == 200 and 'id="tv-date"' in first.text
    statements = count_statements(store)
    for _ in range(6):
        assert client.get(f"/tv/{TV_TOKEN}/partial", params={"seen": seen}).content == first.content
    assert pages.renders.get("tv", 0) == before + 1
    assert not any("FROM events" in q for q in statements), statements  # the parts show no feed rows
    assert client.get(f"/tv/{TV_TOKEN}/partial", params={"seen": seen, "lang": "de"}).content != first.content


def test_pages_that_saw_new_answers_share_one_computation_per_gap(store: Store) -> None:
    """Refreshing pages (``seen`` given) wait until VIEW_GAP_S after the view's last computation began,
    so pages asking meanwhile share the next computation; every page still gets what it has seen."""
    import threading

    from central import scores

    seed(store)
    config = make_config()
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    began = time.monotonic()
    first = scores.aggregate(store, config, site="north", now=now)  # a first load (no seen): computed at once
    put(store, datetime.now(UTC), 5, device="a", n=2)
    newest = reads.last_ingest_id(store)
    statements = count_statements(store)
    results: list[dict[str, Any]] = []

    def page() -> None:
        results.append(scores.aggregate(store, config, site="north", now=now, seen=newest))

    threads = [threading.Thread(target=page) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    waited = time.monotonic() - began
    assert len(results) == 5 and all(r["total"] == first["total"] + 2 for r in results)
    assert sum("FROM day_rollups" in q and "GROUP BY" not in q.upper() for q in statements) == 1, statements
    assert waited >= scores.VIEW_GAP_S - 0.05  # they waited for the gap, then shared one computation
    # The API and first loads (no seen) never wait: the newest answers at once.
    put(store, datetime.now(UTC), 1, device="b")
    started = time.monotonic()
    assert scores.aggregate(store, config, site="north", now=now)["total"] == first["total"] + 3
    assert time.monotonic() - started < scores.VIEW_GAP_S


def test_no_more_than_max_waiting_askers_wait_for_a_gap(store: Store) -> None:
    """Waiting askers hold the web server's worker threads: past MAX_WAITING, askers compute (and share) at once."""
    import threading

    from central import scores

    seed(store)
    config = make_config()
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    scores.aggregate(store, config, site="north", now=now)
    began = time.monotonic()
    put(store, datetime.now(UTC), 4, device="b")
    newest = reads.last_ingest_id(store)
    statements = count_statements(store)
    took: list[float] = []

    def page() -> None:
        assert scores.aggregate(store, config, site="north", now=now, seen=newest)["total"] > 0
        took.append(time.monotonic() - began)

    askers = scores.MAX_WAITING + 4
    threads = [threading.Thread(target=page) for _ in range(askers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(took) == askers
    early = [t for t in took if t < scores.VIEW_GAP_S - 0.3]
    assert len(early) >= askers - scores.MAX_WAITING  # those past the limit did not wait
    assert sum("FROM day_rollups" in q and "GROUP BY" not in q.upper() for q in statements) == 1, statements
    assert scores._WAITING[0] == 0

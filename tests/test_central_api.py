"""The JSON API's filters and aggregates, the CSV exports, sign-in and TV tokens, and a schemathesis run.

A real SQLite store (and PostgreSQL where the query differs), FastAPI's TestClient.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from central import auth as central_auth
from central import config as central_config
from central import reads
from central.store import Store
from central.web import create_app
from sync import protocol
from tests.support.events import feedback_event

TOKEN = "tv-token-for-the-lobby-screen-0001"
PASSWORD = "correct horse battery"



def make_config(accounts: bool = False, **dashboard: Any) -> central_config.CentralConfig:
    if accounts:
        dashboard["accounts"] = {"ann": central_auth.hash_password(PASSWORD)}
    return central_config.from_dict({
        "sites": {"akl": {"name": "=Auckland", "timezone": "Pacific/Auckland",
                          "desks": {"desk-1": {"name": "Luggage 1"}}}},
        "dashboard": {"tv": {"lobby": {"token": TOKEN, "site": "akl"}}, **dashboard},
    })


def client(store: Store, config: central_config.CentralConfig | None = None) -> TestClient:
    return TestClient(create_app(store, config or make_config(), poll_s=0.02, stream_idle_exit_s=0.3))


def put(store: Store, when: datetime, rating: int, n: int = 1, **fields: Any) -> None:
    store.insert_events([feedback_event(fields.pop("site", "akl"), fields.pop("device", "desk-1"), rating=rating,
                                        scale=4, ts=protocol.utc_timestamp(when), **fields) for _ in range(n)])


def test_events_filter_by_site_desk_time_and_flags(store: Store) -> None:
    t = datetime(2026, 11, 18, 9, 0, tzinfo=UTC)
    put(store, t, 4)
    put(store, t + timedelta(hours=1), 3, device="desk-2", flags=["test"])
    put(store, t + timedelta(hours=2), 2, site="ppg")
    c = client(store)

    def ratings(query: str) -> list[int]:
        reply = c.get(f"/api/events?{query}")
        assert reply.status_code == 200, reply.text
        return [e["rating"] for e in reply.json()]

    assert ratings("site=akl") == [4, 3]
    assert ratings("device=desk-1") == [4, 2]
    assert ratings("since=2026-11-18T09:30:00Z") == [3, 2]
    assert ratings("until=2026-11-18T23:00:00%2B13:00") == [4]  # 10:00 UTC, exclusive
    assert ratings("until=2026-11-18T23:30:00%2B13:00") == [4, 3]
    assert ratings("flagged=false") == [4, 2]
    reply = c.get("/api/events?since=2026-11-18T09:30:00")
    assert reply.status_code == 422 and "timezone" in reply.text
    assert c.get("/api/events?site=Not_A_Slug").status_code == 422


def test_aggregates_match_the_hand_computed_example(store: Store) -> None:
    day = datetime(2026, 11, 18, 0, 0, tzinfo=UTC)  # 13:00 in Auckland
    for rating, n in ((4, 126), (3, 60), (2, 16), (1, 17)):
        put(store, day, rating, n=n)
    put(store, day, 1, n=7, flags=["rapid_repeat"])
    c = client(store)
    body = c.get("/api/aggregates?site=akl&from=2026-11-18&to=2026-11-18").json()
    assert (body["total"], body["counted"], body["flagged"], round(body["index"])) == (226, 219, 7, 78)
    assert body["ratings"] == [17, 16, 60, 126] and body["timezone"] == "Pacific/Auckland"
    with_flagged = c.get("/api/aggregates?site=akl&from=2026-11-18&to=2026-11-18&flagged=true").json()
    assert with_flagged["counted"] == 226 and with_flagged["ratings"][0] == 24
    reply = c.get("/api/aggregates?from=2026-11-19&to=2026-11-18")
    assert reply.status_code == 422 and "before it starts" in reply.text
    assert reply.json()["detail"][0]["loc"] == ["query", "to"]
    assert c.get("/api/aggregates?from=yesterday").status_code == 422


def test_csv_exports_match_the_store(store: Store) -> None:
    day = datetime(2026, 11, 18, 0, 0, tzinfo=UTC)
    put(store, day, 4, n=5, reasons=["staff"])
    put(store, day + timedelta(hours=1), 1, n=2, flags=["test"])
    put(store, day - timedelta(days=3), 1, n=1)  # outside the range
    c = client(store)
    reply = c.get("/export/answers.csv?site=akl&from=2026-11-18&to=2026-11-18")
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/csv")
    assert 'filename="deskpulse-answers-akl-2026-11-18_2026-11-18.csv"' in reply.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(reply.text)))
    stored = {e["id"]: e for e in reads.events(store, after=0, limit=100)}
    assert len(rows) == 7 and {r["id"] for r in rows} <= set(stored)
    for row in rows:
        event = stored[row["id"]]
        assert (int(row["rating"]), row["flags"], row["reasons"]) == (
            event["rating"], ";".join(event["flags"]), ";".join(event["reasons"]))
        assert row["counted"] == ("no" if event["flags"] else "yes")
        assert row["local_date"] == "2026-11-18" and row["local_time"].endswith("+13:00")
        assert row["site_name"] == "'=Auckland"  # no formula in a spreadsheet
    agg = list(csv.DictReader(io.StringIO(c.get("/export/aggregates.csv?site=akl&from=2026-11-15"
                                                "&to=2026-11-18").text)))
    assert [(r["date"], r["answers"], r["counted"], r["flagged"], r["index"], r["rating_4"]) for r in agg] == [
        ("2026-11-15", "1", "1", "0", "", "0"),  # below the minimum of 5: no index
        ("2026-11-18", "7", "5", "2", "100.0", "5"),
    ]


def test_without_accounts_everything_but_a_wrong_tv_token_is_open(store: Store) -> None:
    c = client(store)
    assert c.get("/api/events").status_code == 200
    assert c.get("/tv/not-the-token/stream").status_code == 404
    with c.stream("GET", f"/tv/{TOKEN}/stream") as reply:
        assert reply.status_code == 200


def test_sign_in_guards_pages_api_and_exports(store: Store) -> None:
    c = client(store, make_config(accounts=True))
    page = c.get("/?site=akl", headers={"accept": "text/html"}, follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/login?next=%2F%3Fsite%3Dakl"
    for path in ("/api/events", "/api/aggregates", "/export/answers.csv", "/api/stream", "/openapi.json"):
        assert c.get(path).status_code == 401, path
    assert c.get("/healthz").status_code == 200
    form = c.get("/login?next=/x")
    assert form.status_code == 200 and 'name="password"' in form.text and 'value="/x"' in form.text
    wrong = c.post("/login", data={"name": "ann", "password": "nope", "next": "/"}, follow_redirects=False)
    assert wrong.status_code == 401 and "do not match" in wrong.text
    good = c.post("/login", data={"name": "ann", "password": PASSWORD, "next": "//evil.example/"},
                  follow_redirects=False)
    assert good.status_code == 303 and good.headers["location"] == "/"  # never off-site
    assert "httponly" in good.headers["set-cookie"].lower() and "samesite=lax" in good.headers["set-cookie"].lower()
    assert c.get("/api/events").status_code == 200
    c.post("/logout")
    assert c.get("/api/events").status_code == 401


def test_a_session_ends_on_logout_a_new_password_another_secret_or_its_lifetime(store: Store) -> None:
    from central.accounts import Accounts
    from central.sessions import SESSION_S, Sessions
    from central.throttle import Throttle
    from central.tvtokens import TvTokens

    config = make_config(accounts=True)
    now = [datetime.now(UTC)]
    sessions = Sessions(store, b"k" * 64, clock=lambda: now[0])
    def make(dashboard: central_config.DashboardConfig, sessions: Sessions) -> central_auth.Auth:
        return central_auth.Auth(dashboard, sessions, Throttle(store), Accounts(store, dashboard.accounts),
                                 TvTokens(store, dashboard))

    guard = make(config.dashboard, sessions)
    cookie = guard.begin("ann")
    assert getattr(guard.user(cookie), "name", None) == "ann"
    assert guard.user(cookie[:-1]) is None and guard.user("") is None and guard.user("x" * 5000) is None
    other_secret = make(config.dashboard, Sessions(store, b"j" * 64))
    assert other_secret.user(cookie) is None
    new_password = make(make_config(accounts=True).dashboard, sessions)
    assert new_password.user(cookie) is None
    now[0] += timedelta(seconds=SESSION_S - 1)
    assert getattr(guard.user(cookie), "name", None) == "ann"
    now[0] += timedelta(seconds=2)
    assert guard.user(cookie) is None  # an absolute lifetime
    second = guard.begin("ann")
    guard.end(second)
    assert guard.user(second) is None


def test_failed_sign_ins_slow_down_their_address_with_growing_delays(store: Store) -> None:
    from central.throttle import FREE_FAILURES, MAX_DELAY_S, Throttle, delay_after

    c = client(store, make_config(accounts=True))
    for _ in range(FREE_FAILURES):
        assert c.post("/login", data={"name": "ann", "password": "wrong"}).status_code == 401
    held = c.post("/login", data={"name": "ann", "password": PASSWORD})
    assert held.status_code == 429 and "Too many failed sign-ins" in held.text
    assert held.headers["retry-after"] == "1"
    assert [delay_after(n) for n in range(FREE_FAILURES + 5)] == [0] * FREE_FAILURES + [1, 2, 4, 8, 16]
    assert delay_after(10_000) == MAX_DELAY_S
    # Each try while held counts: the wait grows.
    assert int(c.post("/login", data={"name": "ann", "password": PASSWORD}).headers["retry-after"]) == 2
    assert Throttle(store).count() == 2  # the address and the account "ann"


def test_the_throttle_stays_bounded_and_keys_ipv6_by_its_64(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from central import throttle

    now = [datetime.now(UTC)]
    t = throttle.Throttle(store, clock=lambda: now[0])
    for i in range(30):
        t.failed(f"10.0.{i}.1", None)  # unknown names add no account rows
    t.failed("2001:db8::1", "ann")
    t.failed("2001:db8::ffff", None)
    assert throttle.address_key("2001:db8::1") == "2001:db8::/64" == throttle.address_key("2001:db8::ffff")
    assert throttle.address_key("::ffff:10.0.0.1") == "10.0.0.1"
    assert t.count() == 32
    now[0] += timedelta(seconds=throttle.FORGET_S + 1)
    t.failed("10.9.9.9", None)
    assert t.count() == 1  # quiet rows forgotten
    monkeypatch.setattr(throttle, "MAX_ROWS", 5)
    for i in range(8):
        t.failed(f"10.1.{i}.1", None)
    assert t.count() == 5  # the oldest addresses go first


def test_the_tv_token_opens_only_the_tv_view(store: Store) -> None:
    put(store, datetime.now(UTC), 4)
    c = client(store, make_config(accounts=True))
    with c.stream("GET", f"/tv/{TOKEN}/stream?after=0") as reply:
        assert reply.status_code == 200
        body = "".join(reply.iter_text())
    assert "event: feedback" in body
    for path in (f"/?token={TOKEN}", f"/api/events?token={TOKEN}", f"/export/answers.csv?token={TOKEN}"):
        assert c.get(path, follow_redirects=False).status_code in (303, 401), path
    assert c.get(f"/tv/{TOKEN[:-1]}x/stream").status_code == 404
    assert "deskpulse_session" not in c.cookies


def test_hash_password_and_new_token_commands(capsys, monkeypatch) -> None:
    from central import cli

    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert cli.main(["hash-password"]) == 0
    hashed = capsys.readouterr().out.strip()
    central_config.from_dict({"dashboard": {"accounts": {"ann": hashed}}})
    assert central_auth.verify(hashed, PASSWORD)
    assert cli.main(["new-token"]) == 0
    token = capsys.readouterr().out.strip()
    assert len(token) >= central_config.MIN_TOKEN_LENGTH
    central_config.from_dict({"dashboard": {"tv": {"t": {"token": token, "site": "a"}}}})


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    with Store(f"sqlite:///{tmp_path / 'central.sqlite3'}") as s:
        s.migrate()
        now = datetime.now(UTC)
        s.insert_events([feedback_event("akl", f"desk-{i % 3}", rating=1 + i % 4, scale=4,
                                        ts=protocol.utc_timestamp(now - timedelta(hours=7 * i)),
                                        flags=["test"] if i % 5 == 0 else []) for i in range(40)])
        yield s


def test_schemathesis_finds_no_server_error_or_schema_violation(sqlite_store: Store) -> None:
    """Every JSON API operation, fuzzed from its OpenAPI description: no 5xx, responses match their schema."""
    import hypothesis
    import schemathesis
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

    app = create_app(sqlite_store, make_config(), poll_s=0.01, stream_idle_exit_s=0.05)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    checked = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path == "/api/stream":
            continue  # an endless stream: tests/test_central_web.py covers it
        checked.append(operation.path)

        @hypothesis.settings(max_examples=40, deadline=None, database=None,
                             suppress_health_check=list(hypothesis.HealthCheck))
        @hypothesis.given(case=operation.as_strategy())
        def run(case: Any) -> None:
            response = case.call()
            case.validate_response(response, checks=[not_a_server_error, status_code_conformance,
                                                     response_schema_conformance])

        run()
    assert {"/api/events", "/api/aggregates", "/api/devices", "/healthz"} <= set(checked)
    assert date.today()  # the store's answers span today and the days before


def test_web_origins_let_a_proxy_origin_post_and_bad_ones_are_named(store: Store) -> None:
    config = central_config.from_dict({"web": {"origins": ["https://Dash.example"]}})
    assert config.origins == ("https://dash.example",)
    c = client(store, config)
    assert c.post("/logout", headers={"Origin": "https://dash.example"}, follow_redirects=False).status_code == 303
    assert c.post("/logout", headers={"Origin": "https://dash.example.evil"}).status_code == 403
    for bad in ("https://dash.example/", "dash.example", "ftp://x", 7):
        with pytest.raises(central_config.ConfigError, match=r"web\.origins each must be an origin"):
            central_config.from_dict({"web": {"origins": [bad]}})

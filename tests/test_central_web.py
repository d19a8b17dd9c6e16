"""Central's web app over a real SQLite store: health, JSON API, the live page and the event stream.

Event streams end through ``create_app(..., stream_idle_exit_s=...)``: once a
stream is caught up and idle that long, it closes, so no test can hang on it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from central import reads
from central.store import Store
from central.web import create_app
from sync import protocol
from tests.support.events import feedback_event


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(f"sqlite:///{tmp_path / 'central.sqlite3'}") as s:
        s.migrate()
        yield s


@pytest.fixture
def events(store: Store) -> list[dict[str, Any]]:
    batch = [feedback_event(device=f"desk-{i}", seq=i, rating=1 + i % 5) for i in range(1, 6)]
    store.insert_events(batch)
    return reads.events(store, after=0)


def client_for(store: Store, **options: Any) -> TestClient:
    options = {"poll_s": 0.02, "stream_idle_exit_s": 0.3, **options}
    return TestClient(create_app(store, **options))


def parse_sse(text: str) -> list[dict[str, str]]:
    """Split an event-stream body into messages (comments kept as ``comment``)."""
    messages = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        message: dict[str, str] = {}
        for line in block.split("\n"):
            field, _, value = line.partition(":")
            message[field or "comment"] = value.strip()
        messages.append(message)
    return messages


def stream(client: TestClient, url: str = "/api/stream", **headers: str) -> list[dict[str, str]]:
    with client.stream("GET", url, headers=headers) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        return parse_sse("".join(reply.iter_text()))


def test_healthz_counts_the_stored_events(store: Store, events: list[dict[str, Any]]) -> None:
    assert client_for(store).get("/healthz").json() == {"ok": True, "events": 5, "dead_letters": 0,
                                                         "dead_letter_bytes": 0, "dead_letter_budget_bytes": 64 << 20}


def test_api_events_pages_in_ingest_order(store: Store, events: list[dict[str, Any]]) -> None:
    client = client_for(store)
    first = client.get("/api/events", params={"after": 0, "limit": 2}).json()
    assert [e["ingest_id"] for e in first] == [e["ingest_id"] for e in events[:2]]
    rest = client.get("/api/events", params={"after": first[-1]["ingest_id"]}).json()
    assert [e["id"] for e in rest] == [e["id"] for e in events[2:]]
    sent = {k: v for k, v in rest[0].items() if k not in ("ingest_id", "received_at")}
    assert sent == {k: v for k, v in events[2].items() if k not in ("ingest_id", "received_at")}
    assert sent["schema"] == 1


def test_api_events_refuses_a_bad_limit(store: Store) -> None:
    client = client_for(store)
    assert client.get("/api/events", params={"limit": 0}).status_code == 422
    assert client.get("/api/events", params={"after": -1}).status_code == 422


def test_the_page_shows_stored_answers_without_a_cdn(store: Store, events: list[dict[str, Any]]) -> None:
    reply = client_for(store).get("/")
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/html")
    html = reply.text
    assert '<html lang="en">' in html
    assert "desk-3" in html and ">5<" in html  # a device and the total
    # the live feed continues after the newest row, in a script served from here
    assert f'data-stream="/api/stream?after={events[-1]["ingest_id"]}"' in html
    assert '<script src="/static/dashboard.js' in html
    assert "EventSource" in client_for(store).get("/static/dashboard.js").text
    assert "http://" not in html and "https://" not in html  # nothing loaded from elsewhere


def test_the_page_says_so_when_there_is_nothing_yet(store: Store) -> None:
    html = client_for(store).get("/").text
    assert "No answers yet" in html and 'data-stream="/api/stream?after=0"' in html


def test_the_api_is_described_and_no_cdn_docs_page_is_served(store: Store) -> None:
    client = client_for(store)
    spec = client.get("/openapi.json").json()
    assert {"/healthz", "/api/events", "/api/stream"} <= set(spec["paths"])
    assert client.get("/docs").status_code == 404


def test_stream_sends_events_after_the_given_id(store: Store, events: list[dict[str, Any]]) -> None:
    messages = stream(client_for(store), f"/api/stream?after={events[1]['ingest_id']}")
    feedback = [m for m in messages if m.get("event") == "feedback"]
    assert [int(m["id"]) for m in feedback] == [e["ingest_id"] for e in events[2:]]
    assert [json.loads(m["data"])["id"] for m in feedback] == [e["id"] for e in events[2:]]
    assert messages[0] == {"retry": "2000"}


def test_last_event_id_wins_over_after(store: Store, events: list[dict[str, Any]]) -> None:
    messages = stream(client_for(store), "/api/stream?after=0", **{"Last-Event-ID": str(events[3]["ingest_id"])})
    assert [int(m["id"]) for m in messages if "id" in m] == [events[4]["ingest_id"]]


def test_stream_without_a_cursor_starts_now(store: Store, events: list[dict[str, Any]]) -> None:
    assert [m for m in stream(client_for(store)) if m.get("event") == "feedback"] == []


def test_stream_delivers_events_stored_while_it_is_open(store: Store, events: list[dict[str, Any]]) -> None:
    later = [feedback_event(seq=100 + i) for i in range(3)]
    looked = threading.Event()  # the open stream has read the store once (and found nothing new)

    def store_later() -> None:
        looked.wait(10)
        for event in later:
            store.insert_events([event])

    def done_reading(*args: object) -> None:  # its connection goes back to the pool
        looked.set()

    sa.event.listen(store.engine, "checkin", done_reading)
    writer = threading.Thread(target=store_later)
    writer.start()
    try:
        messages = stream(client_for(store, stream_idle_exit_s=0.5), f"/api/stream?after={events[-1]['ingest_id']}")
    finally:
        looked.set()
        writer.join()
        sa.event.remove(store.engine, "checkin", done_reading)
    assert [json.loads(m["data"])["id"] for m in messages if "data" in m] == [e["id"] for e in later]


def test_an_idle_stream_sends_keepalive_comments(store: Store) -> None:
    messages = stream(client_for(store, keepalive_s=0.05, stream_idle_exit_s=0.3))
    assert {"comment": "keepalive"} in messages


def test_shutdown_ends_open_streams(store: Store) -> None:
    shutdown = threading.Event()
    client = client_for(store, shutdown=shutdown, stream_idle_exit_s=None)
    timer = threading.Timer(0.2, shutdown.set)
    timer.start()
    began = time.monotonic()
    stream(client)
    assert time.monotonic() - began < 3


def test_api_devices_shows_health_and_gaps(store: Store) -> None:
    epoch = protocol.uuid7()
    store.insert_events([feedback_event(device="desk-1", epoch=epoch, seq=s) for s in (1, 4)])
    store.insert_events([feedback_event(device="desk-2", epoch=epoch, seq=s) for s in (2, 3)])
    store.record_status({"schema": 1, "site": "test-site", "device": "desk-1", "state": "online",
                         "version": "0.9.1", "health": {"backlog": 2, "clock_synced": True,
                                                        "config_error": {"reason": "bad scale"}}})
    store.record_status({"schema": 1, "site": "other-site", "device": "desk-9", "state": "offline"})
    devices = client_for(store).get("/api/devices").json()
    by_name = {(d["site"], d["device"]): d for d in devices}
    assert set(by_name) == {("test-site", "desk-1"), ("test-site", "desk-2"), ("other-site", "desk-9")}
    desk1 = by_name[("test-site", "desk-1")]
    assert desk1["state"] == "online" and desk1["backlog"] == 2 and desk1["version"] == "0.9.1"
    assert desk1["config_error"] == {"reason": "bad scale"}
    assert desk1["gaps"] == [{"epoch": epoch, "first": 2, "last": 3}]
    desk2 = by_name[("test-site", "desk-2")]
    assert desk2["state"] is None and desk2["gaps"] == [{"epoch": epoch, "first": 1, "last": 1}]
    assert by_name[("other-site", "desk-9")]["state"] == "offline"
    only = client_for(store).get("/api/devices", params={"site": "other-site"}).json()
    assert [d["device"] for d in only] == ["desk-9"]
    assert client_for(store).get("/api/devices", params={"site": "Not A Slug"}).status_code == 422


def test_a_retired_device_shows_retired_and_needs_no_look(store: Store) -> None:
    store.record_status({"schema": 1, "site": "test-site", "device": "desk-1", "state": "online"})
    store.record_status({"schema": 1, "site": "test-site", "device": "desk-2", "state": "online"})
    store.retire_device("test-site", "desk-2")
    store.record_status({"schema": 1, "site": "test-site", "device": "desk-2", "state": "offline"})  # its will
    client = client_for(store)
    assert [(d["device"], d["state"]) for d in client.get("/api/devices").json()] == [
        ("desk-1", "online"), ("desk-2", "retired")]
    page = client.get("/").text
    assert "1 of 1 online" in page and "1 retired" in page and "all well" in page
    assert '<span class="state retired">retired</span>' in page


def test_the_fleet_view_shows_version_last_restart_alarms_and_test_mode(store: Store) -> None:
    store.record_status({"schema": 1, "site": "test-site", "device": "desk-1", "state": "online",
                         "ts": "2026-11-20T10:00:00Z", "version": "1.4.0", "health": {
                             "uptime_s": 7200.0, "alarms": [
                                 {"code": "test-mode", "message": "test mode: answers are flagged test"},
                                 {"code": "disk-low", "message": "only 12.0 MB free on the outbox's disk"}]}})
    store.record_status({"schema": 1, "site": "test-site", "device": "desk-2", "state": "online",
                         "ts": "2026-11-20T10:00:00Z", "version": "1.3.9", "health": {"uptime_s": 60}})
    client = client_for(store)
    desk1, desk2 = client.get("/api/devices").json()
    assert desk1["version"] == "1.4.0" and desk1["uptime_s"] == 7200.0
    assert desk1["restarted_at"] == "2026-11-20T08:00:00.000Z"
    assert desk1["test_mode"] is True and [a["code"] for a in desk1["alarms"]] == ["test-mode", "disk-low"]
    assert desk2["test_mode"] is False and desk2["alarms"] == [] and desk2["restarted_at"] == "2026-11-20T09:59:00.000Z"
    page = client.get("/").text
    assert "1 in test mode" in page and '<span class="badge test">test mode</span>' in page
    assert "v1.4.0 · <span title=" in page and "restarted " in page and "v1.3.9" in page
    assert "only 12.0 MB free on the outbox&#39;s disk" in page
    assert "1 needs a look" in page  # desk-1: its alarms

"""The dashboard in real headless Chromium over a real store and a real web server (uvicorn).

Answers are stored the way the collector stores them (``Store.insert_events``);
the kiosk-to-page path through MQTT is test_live_page.py's. What is checked here:
an answer appears live without a reload and the numbers follow; a cut stream
(the web server restarted) resumes with nothing missed or doubled; the filter
form puts its values in the URL and the numbers change; the TV token opens the
TV view only; the page fits a phone and works from the keyboard.
"""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from central import reads
from central.store import Store
from dev.broker import free_port
from tests.support.browser import chromium, chromium_path
from tests.support.events import feedback_event
from tests.support.wait import wait_for
from tests.test_central_health import status
from tests.test_dashboard import NOON, TV_TOKEN, make_app, make_config, put

pytestmark = pytest.mark.skipif(chromium_path() is None,
                                reason="chromium is not installed (make test installs it)")


class Web:
    """central's web app on uvicorn in a thread; stop() and start() again on the same port."""

    def __init__(self, store: Store, config: Any) -> None:
        self.store, self.config = store, config
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: Any = None
        self.thread: threading.Thread | None = None
        self.app: Any = None

    def start(self) -> Web:
        import uvicorn

        # The stream's own default poll (0.5 s): "within a second" is measured as deployed.
        self.app = make_app(self.store, self.config, poll_s=0.5, keepalive_s=1.0, stream_idle_exit_s=None)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    log_config=None, timeout_graceful_shutdown=1))
        self.thread = threading.Thread(target=self.server.run, name="test-web", daemon=True)
        self.thread.start()
        thread = self.thread

        def started() -> bool:
            assert thread.is_alive(), "the web server did not start"
            return bool(self.server.started)

        wait_for(started, timeout=10, what="the web server to start")
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.app.state.web.shutdown.set()  # ends open streams: browsers see the connection drop
            self.server.should_exit = True
            assert self.thread is not None
            self.thread.join(10)
            self.server = None



@pytest.fixture
def web(store: Store) -> Iterator[Web]:
    server = Web(store, make_config()).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    p = context.new_page()
    p.set_default_timeout(10_000)
    try:
        yield p
    finally:
        context.close()


def feed_ids(page: Any, selector: str = "#feed [data-id]") -> list[str]:
    return page.eval_on_selector_all(selector, "rows => rows.map(r => r.dataset.id)")


def stored_ids(store: Store, site: str | None = None) -> list[str]:
    return [str(e["ingest_id"]) for e in reads.recent(store, 1000) if site is None or e["site"] == site]


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_new_answer_appears_live_and_the_numbers_follow(store: Store, web: Web, page: Any) -> None:
    page.goto(web.url + "/?site=north")
    page.wait_for_selector("#live.on")
    assert feed_ids(page) == []
    # The page notes (on the machine's clock) when the row appears, so the delay measured is the
    # store -> stream -> page path alone, not this test's polling of the browser.
    page.evaluate("""() => { window.rowAt = new Promise((done) => new MutationObserver((_, seen) => {
        seen.disconnect(); done(Date.now()); }).observe(document.getElementById('feed'), {childList: true})); }""")
    put(store, datetime.now(UTC), 5, reasons=[])
    stored_at = time.time() * 1000
    shown_at = page.evaluate("window.rowAt")
    assert shown_at - stored_at < 1000, f"shown {shown_at - stored_at:.0f} ms after it was stored"
    row = page.locator("#feed tr").first.inner_text()
    assert "Desk Alpha" in row and "Very good" in row
    for rating in (1, 3, 4, 5):
        put(store, datetime.now(UTC), rating, device="b", reasons=["wait_time"] if rating == 1 else [])
    page.wait_for_function("document.querySelectorAll('#feed tr[data-id]').length === 5")
    assert feed_ids(page) == stored_ids(store)  # newest first
    # The numbers are fetched again: 5 answers today, (4 + 0 + 2 + 3 + 4) / (5 · 4) = 13/20 -> 65.
    page.wait_for_function("document.getElementById('today-index').textContent === '65'")
    assert page.locator("#today-count").inner_text() == "5"
    assert page.locator("#total").inner_text() == "5"  # the server's count, never a count of messages
    assert "Waiting time" in page.locator("#reasons").inner_text()
    assert page.locator("#feed tr").first.locator("time").inner_text().count(":") == 1  # local HH:MM


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_an_aggregated_desk_moves_the_numbers_but_never_shows_an_answer(store: Store, web: Web, page: Any) -> None:
    page.goto(web.url + "/?site=north")
    page.wait_for_selector("#live.on")
    put(store, datetime.now(UTC), 5, device="sum", n=3)  # "Totals desk": feed = "aggregated"
    page.wait_for_function("document.getElementById('today-count').textContent === '3'")  # a tick refreshed them
    put(store, datetime.now(UTC), 4, device="a")
    page.wait_for_selector("#feed tr[data-id]")
    assert len(feed_ids(page)) == 1 and "Totals desk" not in page.locator("#feed").inner_text()


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_the_page_shows_each_answer_once_whatever_the_stream_repeats(store: Store, web: Web, page: Any) -> None:
    put(store, datetime.now(UTC), 3)
    shown = stored_ids(store)[0]
    events = [{"ingest_id": int(shown), "site": "north", "device": "a", "rating": 3, "scale": 5, "reasons": [],
               "flags": [], "placed_at": "2026-11-10T12:00:00Z", "ts": "2026-11-10T12:00:00Z"}]
    events += [{**events[0], "ingest_id": 990 + i, "rating": 4} for i in range(2)]
    body = "retry: 100\n\n" + "".join(f"id: {e['ingest_id']}\nevent: feedback\ndata: {json.dumps(e)}\n\n"
                                         for e in events + events)  # all twice, and again on every reconnect
    connects: list[str] = []

    def fake_stream(route: Any) -> None:
        connects.append(route.request.url)
        route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=body)

    page.route("**/api/stream*", fake_stream)
    page.goto(web.url + "/")
    page.wait_for_function("document.querySelectorAll('#feed [data-id]').length === 3")
    while len(connects) < 3:  # the stream "drops" after each body: the browser reconnects and gets it again
        page.wait_for_timeout(100)
    assert sorted(feed_ids(page)) == sorted([shown, "990", "991"])


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_the_csv_link_downloads_the_answers_of_the_filter(store: Store, web: Web, page: Any) -> None:
    put(store, NOON, 5, n=2)
    put(store, NOON, 1, device="b", flags=["test"])
    put(store, NOON, 3, site="kiri", device="k")
    page.goto(web.url + "/?site=north&from=2026-11-10&to=2026-11-10")
    with page.expect_download() as download:
        page.click(".export a:text('answers')")
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert sorted(r["ingest_id"] for r in rows) == sorted(stored_ids(store, "north"))
    assert {r["flags"] for r in rows if r["device"] == "b"} == {"test"}


def test_a_cut_stream_resumes_with_nothing_missed_or_doubled(store: Store, web: Web, page: Any) -> None:
    page.goto(web.url + "/")
    page.wait_for_selector("#live.on")
    for r in (1, 2):
        put(store, datetime.now(UTC), r)
    page.wait_for_function("document.querySelectorAll('#feed [data-id]').length === 2")
    web.stop()  # every open stream ends, and nothing listens on the port
    page.wait_for_selector("#live.off")
    for r in (3, 4, 5):  # stored while the page cannot hear
        put(store, datetime.now(UTC), r, device="b")
    web.start()  # same port: the browser reconnects with Last-Event-ID
    page.wait_for_function("document.querySelectorAll('#feed [data-id]').length >= 5", timeout=15_000)
    page.wait_for_selector("#live.on")
    put(store, datetime.now(UTC), 5)
    page.wait_for_function("document.querySelectorAll('#feed [data-id]').length >= 6")
    ids = feed_ids(page)
    assert ids == stored_ids(store)  # each once, newest first
    assert len(ids) == len(set(ids)) == 6
    # A reload shows the same answers, rendered by the server this time.
    page.reload()
    page.wait_for_selector("#live.on")
    assert feed_ids(page) == ids


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_the_filter_form_puts_its_values_in_the_url_and_changes_the_numbers(store: Store, web: Web,
                                                                              page: Any) -> None:
    for r in (3, 3, 3, 4, 2, 5):  # Desk Bravo: 14/24 -> 58
        put(store, NOON, r, device="b")
    for r in (5, 5, 5, 5, 1):  # Desk Alpha: 16/20 -> 80
        put(store, NOON, r)
    put(store, NOON, 1, flags=["test"])
    page.goto(web.url + "/")
    page.select_option("#f-device", "b")  # picking a desk picks its site too
    assert page.input_value("#f-site") == "north"
    page.fill("#f-from", "2026-11-10")
    page.fill("#f-to", "2026-11-10")
    page.click("button[type=submit]")
    page.wait_for_url("**/?site=north&device=b&from=2026-11-10&to=2026-11-10")
    assert page.locator("#range-index").inner_text() == "58"
    # Both desks with the flagged one included: points 14/4 + 16/4 + 0 = 7.5 over 12 -> 62.5 -> 63.
    page.select_option("#f-device", "")
    page.check("#f-flagged")
    page.click("button[type=submit]")
    page.wait_for_url("**/?site=north&device=&from=2026-11-10&to=2026-11-10&flagged=1")
    assert page.locator("#range-index").inner_text() == "63"
    page.reload()  # a bookmark: the same view
    assert page.locator("#range-index").inner_text() == "63"
    assert page.is_checked("#f-flagged") and page.input_value("#f-from") == "2026-11-10"
    # The desk comparison links keep the dates and the switch.
    page.click("#desks a:text('Desk Alpha')")
    page.wait_for_url("**/?site=north&device=a&from=2026-11-10&to=2026-11-10&flagged=1")
    assert page.locator("#range-index").inner_text() == "67"  # 16/4 + 0 over 6 -> 66.67 -> 67


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_the_tv_token_opens_the_live_tv_view_and_nothing_else(store: Store, web: Web, page: Any) -> None:
    put(store, datetime.now(UTC), 4, site="kiri", device="k")  # another site: never on this TV
    page.set_viewport_size({"width": 1920, "height": 1080})
    assert page.goto(f"{web.url}/tv/not-the-token").status == 404
    assert page.goto(f"{web.url}/tv/{TV_TOKEN}").status == 200
    page.wait_for_selector("#live.on")
    assert page.locator("#today-index").inner_text() == "–"
    for r in (5, 5, 4, 4, 3):
        put(store, datetime.now(UTC), r)
    page.wait_for_function("document.querySelectorAll('#feed [data-id]').length === 5")
    # (4 + 4 + 3 + 3 + 2) / 20 = 0.8 -> 80
    page.wait_for_function("document.getElementById('today-index').textContent === '80'")
    assert page.locator("a, form, input, select").count() == 0
    assert "Kiritimati" not in page.content()
    fits = page.evaluate("document.documentElement.scrollWidth <= innerWidth "
                         "&& document.documentElement.scrollHeight <= innerHeight")
    assert fits, "the TV view scrolls"


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("size", [(390, 844), (1366, 768), (1920, 1080)], ids=["phone", "laptop", "full-hd"])
def test_the_overview_fits_the_screen_and_works_from_the_keyboard(store: Store, web: Web, page: Any,
                                                                  size: tuple[int, int]) -> None:
    for r in (1, 2, 3, 4, 5, 5):
        put(store, datetime.now(UTC), r, reasons=["wait_time"] if r < 3 else [], device="ab"[r % 2])
    # A kiosk in trouble, as wide as the health table gets: no name in the
    # configuration (its slug shows), a backlog, an error, a gap, test mode, an
    # alarm, its version and last restart.
    store.record_status(status("pharmacy-counter", "offline", site="north", backlog=12345,
                               last_error="broker unreachable", uptime_s=93_784.5, alarms=[
                                   {"code": "test-mode", "message": "test mode: answers are flagged test"},
                                   {"code": "sender-restarting", "message": "the sender's loop failed 12 times, "
                                    "last: OutboxError: cannot read the outbox's counts in /var/lib/deskpulse"}]))
    epoch = "0190a0a0-0000-7000-8000-000000000001"
    store.insert_events([feedback_event("north", "pharmacy-counter", seq=seq, epoch=epoch) for seq in (1, 5)])
    page.set_viewport_size({"width": size[0], "height": size[1]})
    page.goto(web.url + "/")
    page.wait_for_selector("#live.on")
    assert page.evaluate("document.documentElement.scrollWidth") <= size[0], "the page scrolls sideways"
    # Tables must fit their card too: a scrolling box hides columns (on a phone the trend and the
    # heatmap are drawn to fit: test_dashboard_glance_browser.py).
    hidden = page.evaluate("""[...document.querySelectorAll('.scroll')]
        .filter(box => box.querySelector('table.data') && box.scrollWidth > box.clientWidth + 1)
        .map(box => box.closest('section').id)""")
    assert page.locator("table.fleet").count() == 1
    assert hidden == [], f"tables cut off at {size[0]} px: {hidden}"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    page.keyboard.press("Tab")
    if size[0] < 640:  # a phone: the filters are folded under their summary (the numbers come first)
        assert page.evaluate("document.activeElement.parentElement.id") == "filter-box"
        page.keyboard.press("Enter")
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "f-site"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none", "no visible focus"


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_staff_sign_in_first_and_the_tv_needs_only_its_token(store: Store, browser: Any) -> None:
    from central.auth import hash_password

    web = Web(store, make_config(accounts={"manager": hash_password("a long pass phrase")})).start()
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.goto(web.url + "/?site=north&from=2026-11-10&to=2026-11-10")
        page.wait_for_url("**/login?next=*")
        page.fill("#name", "manager")
        page.fill("#password", "a long pass phrase")
        page.click("button[type=submit]")
        page.wait_for_url("**/?site=north&from=2026-11-10&to=2026-11-10")
        page.wait_for_selector("#live.on")  # the stream and the numbers go with the session
        put(store, datetime.now(UTC), 4)
        page.wait_for_selector("#feed tr[data-id]")
        tv = browser.new_context().new_page()  # a TV: no session
        assert tv.goto(f"{web.url}/tv/{TV_TOKEN}").status == 200
        tv.wait_for_selector("#live.on")
        assert tv.locator("#feed [data-id]").count() == 1
        tv.goto(f"{web.url}/?token={TV_TOKEN}")  # the token opens the TV view only
        assert "/login" in tv.url
        tv.context.close()
    finally:
        context.close()
        web.stop()

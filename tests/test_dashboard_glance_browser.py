"""The overview at a glance, in real headless Chromium over a real store and web server (uvicorn).

What a viewer sees without scrolling: at 1366×768 the comparisons and the
worst-first "needs attention" block; on a 390×844 phone today's numbers (not
the filter form), and the trend's newest day without scrolling sideways; no
text under 11 px on the phone; the change's colours pass WCAG AA as rendered;
a live answer from a site in another zone shows its date and zone as the
server would write them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from central.store import Store
from tests.support.browser import chromium_path
from tests.test_dashboard import put
from tests.test_dashboard_browser import Web, browser  # noqa: F401  (the module's Chromium, shared)
from tests.test_dashboard_compare import glance_config, london_noon, seed_week

pytestmark = [pytest.mark.skipif(chromium_path() is None, reason="chromium is not installed (make test installs it)"),
              pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)]



@pytest.fixture
def web(store: Store) -> Iterator[Web]:
    server = Web(store, glance_config()).start()
    try:
        yield server
    finally:
        server.stop()


def open_page(browser: Any, url: str, width: int, height: int) -> Any:  # noqa: F811
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.goto(url)
    page.wait_for_selector("#live.on")
    return page


def box(page: Any, selector: str) -> dict[str, float]:
    found = page.locator(selector).first.bounding_box()
    assert found is not None, f"{selector} is not shown"
    return dict(found)


def contrast(fg: tuple[float, ...], bg: tuple[float, ...]) -> float:
    def luminance(rgb: tuple[float, ...]) -> float:
        r, g, b = (c / 255 / 12.92 if c / 255 <= 0.03928 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in rgb[:3])
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    high, low = sorted((luminance(fg), luminance(bg)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_comparisons_and_the_worst_first_block_are_above_the_fold_on_a_laptop(store: Store, web: Web,
                                                                             browser: Any) -> None:  # noqa: F811
    from central.accounts import Accounts
    from central.auth import hash_password

    seed_week(store)
    Accounts(store).add("frontdesk", hash_password("a long pass phrase"), "viewer")  # a viewer, signed in
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        page.goto(web.url + "/?site=north")
        page.wait_for_url("**/login?next=*")
        page.fill("#name", "frontdesk")
        page.fill("#password", "a long pass phrase")
        page.click("button[type=submit]")
        page.wait_for_url("**/?site=north")
        page.wait_for_selector("#live.on")
        assert page.evaluate("scrollY") == 0
        # The site today: Alpha's 100; yesterday Alpha's 50 and Bravo's 25: (10 + 5) / 40 -> 37.5 -> 38.
        assert page.locator("#today-vs-yesterday").inner_text() == "▲ 62 points better than yesterday (38)"
        first_row = box(page, "#compare tbody tr")
        assert first_row["y"] + first_row["height"] <= 768, f"the comparisons start below the fold: {first_row}"
        worst = box(page, "#attention .rank li")
        assert worst["y"] + worst["height"] <= 768, f"the worst desk is below the fold: {worst}"
        assert page.locator("#attention .rank li").first.locator("a").inner_text() == "Desk Bravo"
        # Every change shown in colour passes AA (4.5:1) against what is behind it, as rendered.
        pairs = page.evaluate("""() => [...document.querySelectorAll('.delta')].map((el) => {
            let bg = el, colour = 'rgba(0, 0, 0, 0)';
            while (bg && (colour = getComputedStyle(bg).backgroundColor) === 'rgba(0, 0, 0, 0)') bg = bg.parentElement;
            return [el.className, getComputedStyle(el).color, colour];
        })""")
        assert {p[0] for p in pairs} >= {"delta better"}
        for cls, fg, bg in pairs:
            ratio = contrast(_rgb(fg), _rgb(bg))
            assert ratio >= 4.5, f"{cls}: {fg} on {bg} is {ratio:.2f}:1"
        # The filters are open here, their phone summary hidden; folded (a phone turned sideways), it shows.
        assert page.locator("#f-site").is_visible() and not page.locator("#filter-box > summary").is_visible()
        page.evaluate("document.getElementById('filter-box').open = false")
        page.click("#filter-box > summary")
        assert page.locator("#f-site").is_visible()
    finally:
        page.context.close()


def _rgb(css: str) -> tuple[float, ...]:
    inside = css[css.index("(") + 1:css.index(")")]
    return tuple(float(v) for v in inside.replace("/", ",").split(",")[:3])


def test_a_phone_sees_todays_numbers_first_and_the_newest_day_without_scrolling_sideways(
        store: Store, web: Web, browser: Any) -> None:  # noqa: F811
    seed_week(store)
    page = open_page(browser, web.url + "/?site=north", 390, 844)
    try:
        today = box(page, "#today-index")
        assert 0 <= today["y"] and today["y"] + today["height"] <= 844, f"below the first screen: {today}"
        assert page.locator("#today-vs-yesterday").is_visible()
        assert not page.locator("#f-site").is_visible(), "the filter form takes the first screen"
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        # The trend: the chart drawn for the phone, the newest day labelled and inside the screen.
        page.locator("#trend").scroll_into_view_if_needed()
        newest = page.locator("#trend .chart-phone text.newest")
        assert newest.is_visible() and not page.locator("#trend .chart-wide").is_visible()
        local_today = datetime.now(ZoneInfo("Europe/London")).date()
        assert newest.text_content() == f"{local_today.day} {local_today:%b}"
        label = box(page, "#trend .chart-phone text.newest")
        assert 0 <= label["x"] and label["x"] + label["width"] <= 390, f"the newest day is off screen: {label}"
        scrolls = page.evaluate("""[...document.querySelectorAll('#trend *, #heatmap *')]
            .filter((el) => !el.closest('.sr-only') && el.scrollWidth > el.clientWidth + 1
                          && getComputedStyle(el).overflowX !== 'visible')
            .map((el) => el.className || el.tagName)""")
        assert scrolls == [], f"scrolls sideways on a phone: {scrolls}"
        # The heatmap turned: every weekday a column, all inside the screen.
        heat = box(page, "#heatmap table.heat-phone")
        assert heat["x"] + heat["width"] <= 390
        # Opening the filters shows them; the keyboard reaches them through their summary.
        page.click("#filter-box > summary")
        assert page.locator("#f-site").is_visible()
    finally:
        page.context.close()


#: Every rendered text's size in CSS pixels as the reader sees it (SVG text scaled with its drawing).
TEXT_SIZES = """() => {
  const out = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode, el = node.parentElement;
    if (!node.textContent.trim() || !el || el.closest('.sr-only, script, style, template, title, desc')) continue;
    if (!el.getClientRects().length || getComputedStyle(el).visibility === 'hidden') continue;
    let size = parseFloat(getComputedStyle(el).fontSize);
    const svg = el.closest('svg');
    if (svg) size *= svg.getScreenCTM().a;
    out.push([size, node.textContent.trim().slice(0, 30), el.tagName]);
  }
  return out;
}"""


def test_no_text_on_a_phone_is_smaller_than_11_px(store: Store, web: Web, browser: Any) -> None:  # noqa: F811
    seed_week(store)
    put(store, datetime.now(UTC), 1, flags=["rapid_repeat"], reasons=["wait_time"])  # a flag chip in the feed
    put(store, datetime.now(UTC), 4, site="kiri", device="k")  # two zones: dates and zones in the feed
    page = open_page(browser, web.url + "/", 390, 844)
    try:
        page.click("#filter-box > summary")  # the filters too, opened
        page.locator("details:not(#filter-box) > summary").first.click()  # the trend's table
        sizes = page.evaluate(TEXT_SIZES)
        assert len(sizes) > 100 and any(tag == "text" for _, _, tag in sizes)  # SVG text is measured too
        small = [s for s in sizes if s[0] < 11 - 0.01]
        assert small == [], f"text under 11 px: {small[:10]}"
    finally:
        page.context.close()


def test_a_live_answer_from_another_zone_shows_its_date_and_zone_as_the_server_does(
        store: Store, web: Web, browser: Any) -> None:  # noqa: F811
    put(store, london_noon(0), 4)
    page = open_page(browser, web.url + "/", 1366, 768)
    try:
        put(store, datetime.now(UTC), 5, site="kiri", device="k")
        page.wait_for_function("document.querySelectorAll('#feed tr[data-id]').length === 2")
        live = page.locator("#feed tr").first.locator("td.time").inner_text()
        assert "UTC+14" in live
        page.reload()
        page.wait_for_selector("#live.on")
        assert page.locator("#feed tr").first.locator("td.time").inner_text() == live  # the server's rendering
    finally:
        page.context.close()


def test_the_weekly_report_prints_without_its_links(store: Store, web: Web, browser: Any) -> None:  # noqa: F811
    seed_week(store)
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    try:
        page = context.new_page()
        page.goto(web.url + "/report/weekly?site=north")
        assert page.locator("nav").is_visible() and page.locator("#week-index").is_visible()
        page.emulate_media(media="print")
        assert not page.locator("nav").is_visible(), "the links and form are printed"
        assert page.locator("#week-index").is_visible() and page.locator("#worst-desk").is_visible()
        assert page.pdf(format="A4")[:4] == b"%PDF"  # saves as PDF the way the browser's Print does
    finally:
        context.close()

"""The staff pages' language in real headless Chromium (its Accept-Language from the browser's locale).

A German browser gets German pages from the first (the sign-in page) on; an account
with its own language gets that one in the same browser; the picker changes it for
the account, and the live feed's script speaks the page's language too.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from central.accounts import Accounts
from central.auth import hash_password
from central.store import Store
from display import texts
from tests.support.browser import chromium, chromium_path
from tests.test_dashboard import make_config, put
from tests.test_dashboard_browser import Web

pytestmark = pytest.mark.skipif(chromium_path() is None,
                                reason="chromium is not installed (make test installs it)")

PASSWORD = "a-long-password-1"


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with Store(store_url) as s:
        s.migrate()
        accounts = Accounts(s)
        accounts.add("vera", hash_password(PASSWORD), "viewer")
        accounts.add("francoise", hash_password(PASSWORD), "viewer")
        accounts.set_lang("francoise", "fr")
        put(s, datetime.now(UTC) - timedelta(minutes=30), 2, reasons=["wait_time"])
        yield s


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


def german_page(browser: Any) -> Any:
    context = browser.new_context(viewport={"width": 1366, "height": 768}, locale="de-DE")
    page = context.new_page()
    page.set_default_timeout(10_000)
    return page


def sign_in(page: Any, url: str, name: str) -> None:
    page.goto(url + "/login")
    page.fill("#name", name)
    page.fill("#password", PASSWORD)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_selector("#kpis")


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_german_browser_gets_german_and_an_accounts_language_wins(store: Store, web: Web, browser: Any) -> None:
    page = german_page(browser)
    try:
        page.goto(web.url + "/login")
        assert page.get_attribute("html", "lang") == "de"
        assert page.inner_text("button[type=submit] >> nth=0") == "Anmelden"
        sign_in(page, web.url, "vera")
        assert page.get_attribute("html", "lang") == "de"
        assert page.inner_text("#kpis h2 >> nth=0") == "Index heute"
        assert texts.reason("de", "wait_time") in page.inner_text("#reasons")  # the kiosk's own word
        page.wait_for_selector("#live.on")
        assert page.inner_text("#live") == "live"
        # The picker: Ukrainian for this account from now on, in any browser.
        page.select_option("form.lang select", "uk")
        page.click("form.lang button")
        page.wait_for_selector("html[lang=uk]")
        assert page.inner_text("#kpis h2 >> nth=0") == "Індекс сьогодні"
        assert Accounts(store).get("vera").lang == "uk"  # type: ignore[union-attr]
        page.wait_for_selector("#live.on")
        assert page.inner_text("#live") == "наживо"  # the script's words are the page's
    finally:
        page.context.close()

    page = german_page(browser)
    try:
        sign_in(page, web.url, "francoise")
        assert page.get_attribute("html", "lang") == "fr"
        assert page.inner_text("#kpis h2 >> nth=0") == "Indice du jour"
        assert texts.reason("fr", "wait_time") in page.inner_text("#reasons")
    finally:
        page.context.close()

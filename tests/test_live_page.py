"""The live page in real headless Chromium: a tap on the kiosk appears without a reload."""

from __future__ import annotations

from pathlib import Path

import pytest

from device.kiosk import make_sender
from tests.support.browser import chromium, chromium_path
from tests.support.central import CentralProcess
from tests.support.kiosk import HeadlessKiosk

pytestmark = pytest.mark.skipif(chromium_path() is None,
                                reason="chromium is not installed (make test installs it)")

SHOTS = Path(__file__).resolve().parent.parent / "docs" / "img"


@pytest.fixture
def central(broker, tmp_path):
    with CentralProcess(broker, tmp_path / "central") as proc:
        yield proc


@pytest.mark.parametrize("viewport", [(1366, 768), (390, 844)], ids=["laptop", "phone"])
def test_a_tap_appears_live_without_a_reload(broker, central, kiosk_config, tmp_path, viewport) -> None:
    config = kiosk_config(broker.url)
    with chromium() as browser, HeadlessKiosk(config, sender=make_sender(config).start()) as k:
        page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
        page.goto(central.url)
        page.wait_for_selector("#live.on", timeout=10_000)  # the event stream is open
        assert page.locator("#feed tr").count() == 0
        k.tap_rating(5)
        page.wait_for_selector("#feed tr", timeout=10_000)
        k.kiosk.clock = lambda: 1e9  # past the thank-you
        k.pump()
        k.tap_rating(2)
        page.wait_for_function("document.querySelectorAll('#feed tr').length === 2", timeout=10_000)
        rows = page.locator("#feed tr")
        assert "2/5" in rows.nth(0).inner_text().replace(" ", "")  # newest first
        assert "5/5" in rows.nth(1).inner_text().replace(" ", "")
        page.wait_for_function("document.getElementById('total').textContent === '2'", timeout=5_000)
        shot = tmp_path / f"live-{viewport[0]}x{viewport[1]}.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000

"""Fixtures shared across the suite (and reused by later issues).

- ``broker``: a real Mosquitto on a free port (kill/restart/extra_config).
- ``mock_factory``: gpiozero's MockFactory, restored afterwards.
- ``kiosk``: the real kiosk on SDL's dummy driver, with tap/screenshot helpers.
"""

from __future__ import annotations

import os

# Headless SDL before anything imports pygame.
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.broker import Mosquitto


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A private Mosquitto for one test. Set ``broker.extra_config`` and call
    ``broker.restart()`` to change its configuration (ACLs, TLS)."""
    mosq = Mosquitto(tmp_path / "mosquitto").start()
    try:
        yield mosq
    finally:
        mosq.kill()


@pytest.fixture
def plugin_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A private Mosquitto with the dynamic-security plugin (only its administrator exists)."""
    mosq = Mosquitto(tmp_path / "mosquitto", dynsec=True).start()
    try:
        yield mosq
    finally:
        mosq.kill()


@pytest.fixture
def target() -> Iterator[Path]:
    """An empty target root for the installer that other users may traverse (pytest's tmp_path is 0700)."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="deskpulse-root-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


@pytest.fixture
def mock_factory() -> Iterator[object]:
    """gpiozero's MockFactory as the default pin factory; the old one is restored."""
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory

    saved = Device.pin_factory
    factory = MockFactory()
    Device.pin_factory = factory
    try:
        yield factory
    finally:
        factory.reset()
        Device.pin_factory = saved


@pytest.fixture
def kiosk_config(tmp_path: Path):
    """A kiosk configuration for tests: windowed 800x480, data in tmp_path."""
    from device.config import KioskConfig, from_dict

    def make(broker_url: str = "mqtt://127.0.0.1:9", **sections: dict) -> KioskConfig:
        data = {
            "device": {"site": "test-site", "name": "desk-1", "data_dir": str(tmp_path / "kiosk-data")},
            "broker": {"url": broker_url, "keepalive": 5},
            "screen": {"size": [800, 480], "mm": [154, 86], "fullscreen": False},
            "sync": {"resend_after_s": 2},
        }
        for name, values in sections.items():
            data.setdefault(name, {}).update(values)
        return from_dict(data, source="test")

    return make


@pytest.fixture
def kiosk(kiosk_config):
    """The real kiosk, headless, with no broker (answers stay in the outbox)."""
    from tests.support.kiosk import HeadlessKiosk

    with HeadlessKiosk(kiosk_config()) as k:
        yield k


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL: a SQLite file, and PostgreSQL when
    ``DESKPULSE_TEST_PG_URL`` is set (a database of its own, dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'central.sqlite3'}"
        return
    from tests.support.postgres import temporary_database

    base = os.environ.get("DESKPULSE_TEST_PG_URL")
    if not base:
        pytest.skip("DESKPULSE_TEST_PG_URL is not set (see README: PostgreSQL tests)")
    with temporary_database(base) as url:
        yield url


@pytest.fixture
def store(store_url: str):  # -> Iterator[central.store.Store]
    """A migrated central store on :func:`store_url` (a test module may define its own)."""
    from central.store import Store

    with Store(store_url) as s:
        s.migrate()
        yield s

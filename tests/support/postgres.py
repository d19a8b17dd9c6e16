"""A throw-away PostgreSQL database per test, on the server ``DESKPULSE_TEST_PG_URL`` names."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit


@contextmanager
def temporary_database(base_url: str) -> Iterator[str]:
    """Create ``deskpulse_test_<random>`` on the server, yield its URL, drop it."""
    import psycopg

    name = f"deskpulse_test_{uuid.uuid4().hex[:12]}"
    parts = urlsplit(base_url)
    admin = base_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

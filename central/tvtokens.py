"""Wall-TV display tokens: ``[dashboard.tv.<name>]`` of ``central.toml`` and the ``tv_tokens`` table.

An admin makes a token on the admin page (``/admin/accounts``): central shows
it once, in the TV's address, and keeps only its SHA-256, so a copy of the
database opens no TV. Removing it closes that TV at once. Tokens in the file
work as before and are changed only there.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from central.config import DashboardConfig, DisplayToken
from central.store import Store, tv_tokens
from sync.errors import ConfigError
from sync.protocol import SLUG_RE

_NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")


class TokenError(ConfigError):
    """A request about display tokens that cannot be done (the message says what and why)."""


@dataclass(frozen=True, slots=True)
class TvToken:
    """A display token as the admin page lists it (never the token itself)."""

    name: str
    site: str
    device: str | None
    source: Literal["file", "store"]


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TvTokens:
    """Every display token: the file's and the store's.

    Args:
        store: the migrated store.
        dashboard: ``[dashboard.tv]`` from the file.
    """

    def __init__(self, store: Store, dashboard: DashboardConfig) -> None:
        self.store = store
        self.dashboard = dashboard

    def find(self, token: str) -> DisplayToken | None:
        """The display ``token`` opens, or None (a file token compared in constant time, a stored one by digest)."""
        found = self.dashboard.display_token(token)
        if found is not None or not 24 <= len(token) <= 200:
            return found
        with self.store.engine.connect() as conn:
            row = conn.execute(sa.select(tv_tokens).where(tv_tokens.c.token_hash == _digest(token))).mappings().first()
        if row is None:
            return None
        return DisplayToken(name=row["name"], token=token, site=row["site"], device=row["device"])

    def all(self) -> list[TvToken]:
        """Every display token, by name."""
        with self.store.engine.connect() as conn:
            rows = conn.execute(sa.select(tv_tokens).order_by(tv_tokens.c.name)).mappings().all()
        listed = [_tv(r) for r in rows]
        listed += [TvToken(t.name, t.site, t.device, "file") for t in self.dashboard.tv]
        return sorted(listed, key=lambda t: t.name)

    def add(self, name: str, site: str, device: str | None) -> str:
        """Make a display token for ``site`` (one ``device`` of it, or all); returns the token (shown once).

        Raises:
            TokenError: a bad name, site or desk slug, or the name is taken.
        """
        if not _NAME_RE.fullmatch(name):
            raise TokenError(f"TV name {name[:70]!r}: use 1 to 64 of A-Z, a-z, 0-9 and . _ -")
        if not SLUG_RE.fullmatch(site):
            raise TokenError(f"site {site[:70]!r} is not a slug (a-z, 0-9 and '-', as the kiosks send it)")
        if device is not None and not SLUG_RE.fullmatch(device):
            raise TokenError(f"desk {device[:70]!r} is not a slug (a-z, 0-9 and '-')")
        if any(t.name == name for t in self.dashboard.tv):
            raise TokenError(f"TV {name!r} is in [dashboard.tv] of central.toml; change it there")
        token = secrets.token_urlsafe(32)
        try:
            with self.store.engine.begin() as conn:
                conn.execute(tv_tokens.insert().values(name=name, token_hash=_digest(token), site=site,
                                                       device=device, created_at=datetime.now(UTC)))
        except IntegrityError:
            raise TokenError(f"TV {name!r} exists already") from None
        return token

    def remove(self, name: str) -> None:
        """Remove a stored display token: its TV closes at once.

        Raises:
            TokenError: no such token in the store (or it is in the file).
        """
        if any(t.name == name for t in self.dashboard.tv):
            raise TokenError(f"TV {name!r} is in [dashboard.tv] of central.toml; remove it there and restart")
        with self.store.engine.begin() as conn:
            if not conn.execute(tv_tokens.delete().where(tv_tokens.c.name == name)).rowcount:
                raise TokenError(f"no TV {name[:70]!r}")


def _tv(row: Any) -> TvToken:
    """The one row-to-record function."""
    return TvToken(name=row["name"], site=row["site"], device=row["device"], source="store")

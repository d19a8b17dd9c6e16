"""Server-side sessions: a sign-in is a row in the store, so it can be ended at once.

A session cookie holds 32 random bytes (URL-safe). The store keeps only an
HMAC-SHA256 of it under central's secret (:func:`load_secret`), so neither a
copy of the database nor of ``central.toml`` lets anyone make a valid cookie.
A session lasts :data:`SESSION_S` from sign-in, however busy (an absolute
lifetime), and ends at once on logout, when the account's password changes (the
row keeps a digest of the password hash it began with) or when the account goes.
Several central processes on one database accept each other's sessions when they
share the secret file.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa

from central.store import Store, sessions
from sync.errors import ConfigError

log = logging.getLogger("deskpulse.central.sessions")

#: A session's absolute lifetime (seconds from sign-in).
SESSION_S: Final = 12 * 3600
#: Sessions one account may hold; signing in beyond ends its oldest.
MAX_PER_ACCOUNT: Final = 20
#: Bytes of randomness in a new secret file (written as hex).
SECRET_BYTES: Final = 32


@dataclass(frozen=True, slots=True)
class Session:
    """One signed-in session."""

    account: str
    credential: str
    created_at: datetime
    expires_at: datetime


def credential_of(password_hash: str) -> str:
    """A digest of a password hash: what a session remembers of the password it began with."""
    return hashlib.sha256(b"deskpulse-credential\0" + password_hash.encode()).hexdigest()


def load_secret(path: Path) -> bytes:
    """Central's session secret from ``path``, made (mode 0600) on first start.

    Args:
        path: the secret file (``web.secret_file``).

    Raises:
        ConfigError: the file cannot be made or read, is readable by group or
            others, or holds fewer than 32 characters.
    """
    try:
        if not path.exists():
            _create_secret(path)
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"{path}: the session secret is readable by others (mode {stat.filemode(mode)}); "
                              f"chmod 600 {path}")
        text = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot make or read the session secret (web.secret_file): "
                          f"{exc.strerror or exc}") from None
    if len(text) < SECRET_BYTES:
        raise ConfigError(f"{path}: the session secret is {len(text)} characters; at least {SECRET_BYTES} "
                          "(delete the file and central makes a new one, signing everyone out)")
    return text.encode()


def _create_secret(path: Path) -> None:
    """Write a new secret: a 0600 temporary file linked into place (a second central racing keeps the first's)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(SECRET_BYTES) + "\n")
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(temp, path)
            log.info("made a new session secret in %s", path)
        except FileExistsError:
            pass  # another central made it first: use theirs
    finally:
        temp.unlink(missing_ok=True)


class Sessions:
    """The sessions table, keyed by an HMAC of each cookie's token.

    Args:
        store: the migrated store.
        secret: the key (:func:`load_secret`).
        clock: the wall clock (tests pass their own).
    """

    def __init__(self, store: Store, secret: bytes, clock: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self._secret = secret
        self._clock = clock or (lambda: datetime.now(UTC))

    def _key(self, token: str) -> str:
        return hmac.new(self._secret, b"deskpulse-session\0" + token.encode(), hashlib.sha256).hexdigest()

    def begin(self, account: str, credential: str) -> str:
        """A new session for ``account``; returns the cookie's token.

        Also ends expired sessions and the account's oldest beyond :data:`MAX_PER_ACCOUNT`,
        so the table stays bounded.
        """
        token = secrets.token_urlsafe(32)
        now = self._clock()
        with self.store.engine.begin() as conn:
            conn.execute(sessions.delete().where(sessions.c.expires_at < now))
            conn.execute(sessions.insert().values(key=self._key(token), account=account, credential=credential,
                                                  created_at=now, expires_at=now + timedelta(seconds=SESSION_S)))
            keep = (sa.select(sessions.c.key).where(sessions.c.account == account)
                    .order_by(sessions.c.created_at.desc()).limit(MAX_PER_ACCOUNT))
            conn.execute(sessions.delete().where(sessions.c.account == account, sessions.c.key.not_in(keep)))
        return token

    def get(self, token: str) -> Session | None:
        """The live session ``token`` opens, or None (unknown, ended or expired)."""
        if not token or len(token) > 100:
            return None
        with self.store.engine.connect() as conn:
            row = conn.execute(sa.select(sessions).where(sessions.c.key == self._key(token))).mappings().first()
        if row is None:
            return None
        session = _session(row)
        return session if session.expires_at > self._clock() else None

    def end(self, token: str) -> bool:
        """End one session (logout); whether it existed."""
        with self.store.engine.begin() as conn:
            return bool(conn.execute(sessions.delete().where(sessions.c.key == self._key(token))).rowcount)

    def end_account(self, account: str) -> int:
        """End every session of ``account`` (password changed, account removed); how many."""
        with self.store.engine.begin() as conn:
            return int(conn.execute(sessions.delete().where(sessions.c.account == account)).rowcount)


def _session(row: Any) -> Session:
    """The one row-to-record function."""
    return Session(account=row["account"], credential=row["credential"], created_at=_utc(row["created_at"]),
                   expires_at=_utc(row["expires_at"]))


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)  # SQLite hands back naive UTC

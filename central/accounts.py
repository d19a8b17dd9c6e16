"""Staff accounts: the ``accounts`` table, and the ``[dashboard.accounts]`` of ``central.toml`` beside it.

An account has a name, an argon2id password hash and a role:

- ``viewer`` reads everything the dashboard shows (pages, JSON API, live feed, exports);
- ``admin`` also manages accounts (``/admin/accounts``, ``/api/admin/accounts``).

Accounts are added with ``deskpulse-central user add`` or on the admin page.
The entries of ``[dashboard.accounts]`` keep working as they are, read from the
file at start (not copied into the store), as admins; the store cannot add,
change or remove them (edit the file and restart), and a name in the file
cannot be added to the store.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from central.store import Store, accounts, sessions
from sync.errors import ConfigError

Role = Literal["viewer", "admin"]
ROLES: Final[tuple[Role, ...]] = ("viewer", "admin")
#: An account name: 1 to 64 letters, digits and . _ @ - (no spaces, so logs and pages stay plain).
NAME_RE: Final = re.compile(r"[A-Za-z0-9._@-]{1,64}")
MIN_PASSWORD: Final = 10


class AccountError(ConfigError):
    """A request about accounts that cannot be done (the message says what and why)."""


@dataclass(frozen=True, slots=True)
class Account:
    """One account: where it is kept (``file`` or ``store``), its role and password hash."""

    name: str
    role: Role
    password_hash: str
    source: Literal["file", "store"]
    #: The staff pages' language (one of central.i18n.LANGUAGES), or None: the browser's or the picker's.
    lang: str | None = None


def check_name(name: str) -> str:
    """``name`` if it is a valid account name.

    Raises:
        AccountError: saying what a name may hold.
    """
    if not NAME_RE.fullmatch(name):
        raise AccountError(f"account name {name[:70]!r}: use 1 to 64 of A-Z, a-z, 0-9 and . _ @ -")
    return name


def check_password(password: str) -> str:
    """``password`` if it is long enough and not too long (1,024 characters, as the sign-in form).

    Raises:
        AccountError: saying the limits.
    """
    if not MIN_PASSWORD <= len(password) <= 1024:
        raise AccountError(f"a password has {MIN_PASSWORD} to 1,024 characters")
    return password


def check_role(role: str) -> Role:
    """``role`` if it is one.

    Raises:
        AccountError: naming the roles.
    """
    for known in ROLES:
        if role == known:
            return known
    raise AccountError(f"role {role[:20]!r}: use viewer or admin")


class Accounts:
    """Every account: the file's (read only, admins) and the store's.

    Args:
        store: the migrated store.
        file_accounts: ``[dashboard.accounts]``: name -> argon2 hash.
    """

    def __init__(self, store: Store, file_accounts: Mapping[str, str] | None = None) -> None:
        self.store = store
        self.file = dict(file_accounts or {})

    def get(self, name: str) -> Account | None:
        """The account ``name``, or None."""
        if name in self.file:
            return Account(name, "admin", self.file[name], "file")
        if not NAME_RE.fullmatch(name):
            return None
        with self.store.engine.connect() as conn:
            row = conn.execute(sa.select(accounts).where(accounts.c.name == name)).mappings().first()
        return None if row is None else _account(row)

    def all(self) -> list[Account]:
        """Every account, by name."""
        with self.store.engine.connect() as conn:
            rows = conn.execute(sa.select(accounts).order_by(accounts.c.name)).mappings().all()
        stored = [_account(r) for r in rows if r["name"] not in self.file]
        kept = [Account(n, "admin", h, "file") for n, h in self.file.items()]
        return sorted(stored + kept, key=lambda a: a.name)

    def any(self) -> bool:
        """Whether anyone can sign in."""
        if self.file:
            return True
        with self.store.engine.connect() as conn:
            return conn.execute(sa.select(accounts.c.name).limit(1)).first() is not None

    def add(self, name: str, password_hash: str, role: str) -> Account:
        """Add an account to the store.

        Raises:
            AccountError: a bad name or role, or the name is taken (in the store or the file).
        """
        check_name(name)
        role_ = check_role(role)
        if name in self.file:
            raise AccountError(f"account {name!r} is in [dashboard.accounts] of central.toml; change it there")
        now = datetime.now(UTC)
        try:
            with self.store.engine.begin() as conn:
                conn.execute(accounts.insert().values(name=name, password_hash=password_hash, role=role_,
                                                      created_at=now, updated_at=now))
        except IntegrityError:
            raise AccountError(f"account {name!r} exists already") from None
        return Account(name, role_, password_hash, "store")

    def set_password(self, name: str, password_hash: str) -> None:
        """Give a store account a new password hash; its sessions end.

        Raises:
            AccountError: no such account in the store.
        """
        self._change(name, password_hash=password_hash, updated_at=datetime.now(UTC))

    def set_role(self, name: str, role: str) -> None:
        """Change a store account's role; its sessions end (they were granted the old role).

        Raises:
            AccountError: a bad role, or no such account in the store.
        """
        self._change(name, role=check_role(role), updated_at=datetime.now(UTC))

    def set_lang(self, name: str, lang: str | None) -> None:
        """Set a store account's language (None: the browser's); its sessions go on.

        Raises:
            AccountError: no such account in the store (a file account's language is the picker's cookie).
        """
        if name in self.file:
            raise AccountError(f"account {name!r} is in [dashboard.accounts] of central.toml; its language is "
                               "the browser's (or the picker's cookie)")
        with self.store.engine.begin() as conn:
            done = conn.execute(accounts.update().where(accounts.c.name == name).values(lang=lang)).rowcount
        if not done:
            raise AccountError(f"no account {name[:70]!r}")

    def remove(self, name: str) -> None:
        """Remove a store account and end its sessions.

        Raises:
            AccountError: no such account in the store.
        """
        self._change(name, remove=True)

    def _change(self, name: str, *, remove: bool = False, **values: Any) -> None:
        if name in self.file:
            raise AccountError(f"account {name!r} is in [dashboard.accounts] of central.toml; change it there "
                               "and restart central")
        with self.store.engine.begin() as conn:
            where = accounts.c.name == name
            done = conn.execute(accounts.delete().where(where) if remove else accounts.update().where(where)
                                .values(**values)).rowcount
            if not done:
                raise AccountError(f"no account {name[:70]!r}")
            conn.execute(sessions.delete().where(sessions.c.account == name))


def _account(row: Any) -> Account:
    """The one row-to-record function."""
    return Account(name=row["name"], role=check_role(row["role"]), password_hash=row["password_hash"],
                   source="store", lang=row.get("lang"))

"""The sign-in throttle: failed passwords slow down the address that sent them, kept in the store.

Two counts, each a row of ``sign_in_throttle``:

- **per client address** (an IPv4 address, or an IPv6 address's /64, since one
  machine commonly holds a whole /64): after :data:`FREE_FAILURES` failures the
  address waits 1 s, then 2, 4, 8 … up to :data:`MAX_DELAY_S`, before its next
  try; a try while it must wait counts as one more failure and is not checked;
- **per account** (only for names that are accounts, so guessing names adds no
  rows): the same delays, but they hold back only addresses that have failed
  themselves. A correct password from an address without failures still signs
  in, so nobody can lock staff out by failing on purpose from elsewhere.

A success clears the address's and the account's counts. Rows quiet for
:data:`FORGET_S` are deleted, and the table keeps at most :data:`MAX_ROWS`
address rows (the oldest go first), so it stays bounded whatever an attacker
sends. Counts live in the store, so a restart clears nothing, and several
central processes on one database share them.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from central.store import Store, sign_in_throttle

#: Failures before any delay.
FREE_FAILURES: Final = 5
#: The longest delay (seconds).
MAX_DELAY_S: Final = 15 * 60
#: A row without a failure for this long is forgotten (seconds).
FORGET_S: Final = 24 * 3600
#: The most address rows kept.
MAX_ROWS: Final = 10_000

ADDRESS: Final = "address"
ACCOUNT: Final = "account"


def delay_after(failures: int) -> int:
    """Seconds to wait after ``failures`` failures in a row: 0 for the first few, then doubling to the cap."""
    if failures < FREE_FAILURES:
        return 0
    return min(int(2 ** min(failures - FREE_FAILURES, 20)), MAX_DELAY_S)


def address_key(client: str) -> str:
    """What the per-address count is kept under: the IPv4 address, an IPv6 address's /64, else the text cut to 64."""
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return client[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class Throttle:
    """The throttle's rows in the store.

    Args:
        store: the migrated store.
        clock: the wall clock (tests pass their own); kept in the store, so it must survive restarts.
    """

    def __init__(self, store: Store, clock: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self._clock = clock or (lambda: datetime.now(UTC))

    def wait(self, client: str, account: str | None) -> int:
        """Seconds ``client`` must wait before a password for ``account`` is checked (0: check it now).

        A try while the address must wait counts as a failure of the address.

        Args:
            client: the client's address.
            account: the account tried, when it is one (None for an unknown name).
        """
        now = self._clock()
        address = address_key(client)
        with self.store.engine.begin() as conn:
            rows = {(r.kind, r.subject): r for r in conn.execute(
                sa.select(sign_in_throttle).where(
                    sa.or_(sa.and_(sign_in_throttle.c.kind == ADDRESS, sign_in_throttle.c.subject == address),
                           sa.and_(sign_in_throttle.c.kind == ACCOUNT, sign_in_throttle.c.subject == account)))
            )}
            own = rows.get((ADDRESS, address))
            waits = []
            if own is not None and own.blocked_until is not None:
                waits.append(_utc(own.blocked_until))
            held = rows.get((ACCOUNT, account)) if account is not None else None
            if own is not None and held is not None and held.blocked_until is not None:
                waits.append(_utc(held.blocked_until))  # the account's delay holds back failing addresses only
            until = max(waits, default=now)
            if until <= now:
                return 0
            if own is not None and own.blocked_until is not None and _utc(own.blocked_until) > now:
                self._fail(conn, ADDRESS, address, now)
            return max(1, math.ceil((until - now).total_seconds()))

    def failed(self, client: str, account: str | None) -> None:
        """Count a wrong password from ``client`` (and for ``account`` when it is one)."""
        now = self._clock()
        with self.store.engine.begin() as conn:
            conn.execute(sign_in_throttle.delete().where(
                sign_in_throttle.c.last_failure < now - timedelta(seconds=FORGET_S)))
            self._fail(conn, ADDRESS, address_key(client), now)
            if account is not None:
                self._fail(conn, ACCOUNT, account, now)
            kept = conn.execute(sa.select(sa.func.count()).select_from(sign_in_throttle)
                                .where(sign_in_throttle.c.kind == ADDRESS)).scalar_one()
            if kept > MAX_ROWS:
                oldest = (sa.select(sign_in_throttle.c.subject).where(sign_in_throttle.c.kind == ADDRESS)
                          .order_by(sign_in_throttle.c.last_failure).limit(kept - MAX_ROWS))
                conn.execute(sign_in_throttle.delete().where(sign_in_throttle.c.kind == ADDRESS,
                                                             sign_in_throttle.c.subject.in_(oldest)))

    def succeeded(self, client: str, account: str) -> None:
        """A correct password: the address's and the account's counts start again."""
        with self.store.engine.begin() as conn:
            conn.execute(sign_in_throttle.delete().where(sa.or_(
                sa.and_(sign_in_throttle.c.kind == ADDRESS, sign_in_throttle.c.subject == address_key(client)),
                sa.and_(sign_in_throttle.c.kind == ACCOUNT, sign_in_throttle.c.subject == account))))

    def count(self) -> int:
        """Rows in the throttle (for the health view and the tests)."""
        with self.store.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(sign_in_throttle)).scalar_one())

    def _fail(self, conn: Connection, kind: str, subject: str, now: datetime) -> None:
        """One more failure of (kind, subject): an atomic upsert, then its delay from the new count."""
        insert = postgresql.insert if self.store.dialect == "postgresql" else sqlite.insert
        stmt = insert(sign_in_throttle).values(kind=kind, subject=subject, failures=1, last_failure=now,
                                               blocked_until=None)
        stmt = stmt.on_conflict_do_update(index_elements=["kind", "subject"],
                                          set_={"failures": sign_in_throttle.c.failures + 1, "last_failure": now})
        conn.execute(stmt)
        failures = conn.execute(sa.select(sign_in_throttle.c.failures).where(
            sign_in_throttle.c.kind == kind, sign_in_throttle.c.subject == subject)).scalar_one()
        delay = delay_after(int(failures))
        if delay:
            conn.execute(sign_in_throttle.update().where(sign_in_throttle.c.kind == kind,
                                                         sign_in_throttle.c.subject == subject)
                         .values(blocked_until=now + timedelta(seconds=delay)))


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)  # SQLite hands back naive UTC

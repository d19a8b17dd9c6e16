"""What tests read from central's store beyond what central itself serves (central/reads.py has that).

Dead letters and single events by id are looked at by tests only; the web app
never shows them, so they live here rather than in the shipped read module.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from central.reads import event_row
from central.store import Store, dead_letters, events, utc
from sync import protocol


def get_event(store: Store, id_: str) -> dict[str, Any] | None:
    """One stored event by its id (as the API shows it), or None."""
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(events).where(events.c.id == id_)).first()
    return None if row is None else event_row(row)


def count_dead_letters(store: Store) -> int:
    """How many refused payloads are kept."""
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(dead_letters)).scalar_one())


def dead_letter_rows(store: Store, limit: int = 100) -> list[dict[str, Any]]:
    """The newest dead letters, newest first: ``dead_id``, ``received_at``, ``topic``, ``reason``, ``raw``."""
    stmt = sa.select(dead_letters).order_by(dead_letters.c.dead_id.desc()).limit(limit)
    with store.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(stmt)]
    for row in rows:
        row["received_at"] = protocol.utc_timestamp(utc(row["received_at"]))
        row["raw"] = bytes(row["raw"])
    return rows

"""The delivery promise, checked after a fault test.

Every witnessed answer (the kiosk wrote its id after the thank-you frame) is
stored centrally exactly once; ``seq`` is contiguous per (device, epoch); every
outbox row ends confirmed or rejected; ``PRAGMA integrity_check`` says ok.
"""

from __future__ import annotations

import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterable
from contextlib import closing
from pathlib import Path
from typing import Any

from sync.outbox import State


def witnessed(path: Path) -> list[str]:
    """Ids in a witness log; a torn last line (killed mid-write) is not a witness."""
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.split("\n")
    return [line for line in lines[:-1] if line]  # the part after the last newline is torn


def outbox_states(path: Path) -> dict[str, State]:
    with closing(sqlite3.connect(path)) as conn:
        return {i: State(s) for i, s in conn.execute("SELECT id, state FROM outbox")}


def assert_delivered(witness_ids: Iterable[str], central_events: list[dict[str, Any]],
                     outbox_paths: Iterable[Path]) -> None:
    """Assert the whole promise; the message says which part broke."""
    counts = Counter(e["id"] for e in central_events)
    doubled = [i for i, n in counts.items() if n > 1]
    assert not doubled, f"{len(doubled)} answers stored more than once, e.g. {doubled[:3]}"
    witness_ids = list(witness_ids)
    lost = [i for i in witness_ids if i not in counts]
    assert not lost, f"{len(lost)} of {len(witness_ids)} thanked-for answers never reached central, e.g. {lost[:3]}"

    seqs: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for e in central_events:
        seqs[(e["site"], e["device"], e["epoch"])].append(e["seq"])
    for key, numbers in seqs.items():
        numbers.sort()
        assert numbers == list(range(1, len(numbers) + 1)), f"seq of {key} has gaps: {numbers[:10]}…"

    for path in outbox_paths:
        states = outbox_states(path)
        open_rows = [i for i, s in states.items() if s not in (State.CONFIRMED, State.REJECTED)]
        assert not open_rows, f"{path}: {len(open_rows)} rows not settled, e.g. {open_rows[:3]}"
        with closing(sqlite3.connect(path)) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok", f"{path} is damaged"

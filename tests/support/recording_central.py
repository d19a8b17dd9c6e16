"""``deskpulse-central`` as a subprocess that also writes down which events *it* stored.

The store does not record which collector stored an event, and two collectors
on one database look the same from outside (one ``/healthz`` count, one API).
So this runs the real ``central.cli.main`` in a subprocess with one addition:
after each committed ``Store.insert_events`` transaction it appends the ids
that came back ``stored`` to a file of its own, one per line, flushed. The
record is a lower bound: a collector killed between its commit and the write
leaves out at most that one batch; it never lists an id it did not commit.

    python -m tests.support.recording_central RECORD_FILE [deskpulse-central options]
"""

from __future__ import annotations

import sys
import threading

from tests.support.central import CentralProcess


class RecordingCentral(CentralProcess):
    """A :class:`CentralProcess` whose stored ids are written to ``workdir/stored.log``."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.record_path = self.workdir / "stored.log"

    def entry(self) -> list[str]:
        return ["tests.support.recording_central", str(self.record_path)]

    def stored_ids(self) -> list[str]:
        """The ids this process committed as new, in order; a torn last line is left out."""
        if not self.record_path.exists():
            return []
        text = self.record_path.read_text()
        return [line for line in text.split("\n")[:-1] if line]


def _main(argv: list[str]) -> int:
    record = open(argv[0], "a", buffering=1)
    lock = threading.Lock()

    from central import store as store_module

    original = store_module.Store.insert_events

    def insert_events(self, batch, *, dead=(), conn=None):  # type: ignore[no-untyped-def]
        result = original(self, batch, dead=dead, conn=conn)
        if conn is None:  # it ran its own transaction, committed by now
            stored = [id_ for id_, outcome in result.items() if outcome == "stored"]
            if stored:
                with lock:
                    record.write("".join(f"{id_}\n" for id_ in stored))
                    record.flush()
        return result

    store_module.Store.insert_events = insert_events  # type: ignore[method-assign]
    from central.cli import main

    return main(argv[1:])


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))

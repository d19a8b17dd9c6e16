"""Two collectors on one store, one of them killed mid-stream (issue 5, "Central ingest").

Two real ``deskpulse-central`` processes share one database (one SQLite file,
or one PostgreSQL database) and one shared-subscription group on a real
Mosquitto. Four devices, each a real outbox and a real :class:`sync.sender.Sender`
(receipts, re-publish after ``resend_after_s``), send a paced stream of answers.
Once each collector has stored at least 20 % of the stream, one is SIGKILLed
while answers are still being written. Then every answer the devices wrote is
stored exactly once, each collector did its share before the kill, and the
survivor (with the devices' re-publishing) delivered the rest.

Which collector stored an event is not in the store; each process writes down
the ids it committed (:mod:`tests.support.recording_central`).
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from central.config import IngestConfig
from sync import protocol
from sync.broker import BrokerSettings
from sync.outbox import Outbox
from sync.sender import Sender, SenderSettings
from tests.support.broker import Mosquitto
from tests.support.delivery import assert_delivered, outbox_states
from tests.support.recording_central import RecordingCentral
from tests.support.wait import wait_for

pytestmark = pytest.mark.slow

SITE = "scale-site"
DEVICES = [f"desk-{n}" for n in range(1, 5)]
TOTAL = 4000  # answers in the stream, over all devices
RATE = 700.0  # answers per second written to the outboxes
SHARE = 0.2  # each collector stores at least this much of the stream before the kill


def answer(n: int, boot_id: str) -> dict:
    return {"ts": protocol.utc_timestamp(), "clock_synced": True, "boot_id": boot_id, "mono_ms": 1000 + n,
            "rating": 1 + n % 5, "scale": 5, "reasons": [], "lang": "en", "source": "touch", "survey": 0,
            "flags": []}


class Stream:
    """Writes ``TOTAL`` answers round-robin into the devices' outboxes at ``RATE``, on its own thread."""

    def __init__(self, paths: list[Path], senders: list[Sender]) -> None:
        self.paths, self.senders = paths, senders
        self.ids: list[str] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="stream", daemon=True)

    def _run(self) -> None:
        try:
            boxes = [Outbox(p, SITE, d) for p, d in zip(self.paths, DEVICES, strict=True)]  # this thread's handles
            boots = [str(uuid.uuid4()) for _ in boxes]
            began = time.monotonic()
            try:
                for n in range(TOTAL):
                    k = n % len(boxes)
                    self.ids.append(boxes[k].append(answer(n, boots[k])).id)
                    self.senders[k].notify()
                    ahead = began + (n + 1) / RATE - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)  # pacing the stream, not waiting for a condition
            finally:
                for box in boxes:
                    box.close()
        except BaseException as exc:  # surfaced by the test
            self.error = exc

    @property
    def done(self) -> bool:
        return not self.thread.is_alive()


def republished(path: Path) -> int:
    """Rows the device published more than once (for the log: how much the re-publishing did)."""
    with closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("SELECT count(*) FROM outbox WHERE attempts > 1").fetchone()[0])


def settled(paths: list[Path]) -> bool:
    return all(all(s >= 2 for s in outbox_states(p).values()) for p in paths)


@pytest.fixture
def senders(broker: Mosquitto, tmp_path: Path) -> Iterator[list[Sender]]:
    made = [Sender(tmp_path / d / "outbox.sqlite3", SITE, d, BrokerSettings(broker.host, broker.port, keepalive=5),
                   SenderSettings(resend_after_s=2.0, max_inflight=100), version="test") for d in DEVICES]
    try:
        yield made
    finally:
        for s in made:
            s.stop()


def test_two_collectors_one_killed_mid_stream_store_every_answer_once(broker, store_url, senders,
                                                                     tmp_path) -> None:
    began = time.monotonic()
    phases: dict[str, float] = {}
    # One after the other, so the first's start-up is not counted in the second's share
    # (collectors starting at once: tests/test_central_cli.py, the SQLite migration lock).
    first = RecordingCentral(broker, tmp_path / "central-a", db_url=store_url).start()
    second: RecordingCentral | None = None
    try:
        second = RecordingCentral(broker, tmp_path / "central-b", db_url=store_url).start()
        for s in senders:
            s.start()
        wait_for(lambda: all(s.status.connected and s.status.central_online for s in senders), timeout=15,
                 what="every device connected and seeing central online")
        phases["collectors and devices up"] = time.monotonic() - began
        stream = Stream([s.outbox_path for s in senders], senders)
        stream.thread.start()

        wait_for(lambda: min(len(first.stored_ids()), len(second.stored_ids())) >= SHARE * TOTAL
                 or stream.done, timeout=30, what=f"each collector to store {SHARE:.0%} of the stream")
        written_at_kill = len(stream.ids)
        phases["kill"] = time.monotonic() - began
        first.kill()  # SIGKILL: no clean stop, no offline status but its will
        killed = first.stored_ids()
        survivor_at_kill = set(second.stored_ids())

        assert stream.error is None, stream.error
        assert written_at_kill < TOTAL, "the stream had ended before the kill: not mid-stream"
        assert len(killed) >= SHARE * TOTAL, f"the killed collector stored {len(killed)} before the kill"
        assert len(survivor_at_kill) >= SHARE * TOTAL, f"the survivor stored {len(survivor_at_kill)} before"

        stream.thread.join(TOTAL / RATE + 30)
        assert stream.done and stream.error is None, stream.error
        assert len(stream.ids) == TOTAL
        phases["stream written"] = time.monotonic() - began
        paths = [s.outbox_path for s in senders]
        wait_for(lambda: settled(paths), timeout=40, what="every answer confirmed by a receipt")
        phases["every answer confirmed"] = time.monotonic() - began
        events = second.events()
        survivor = second.stored_ids()
    finally:
        first.kill()
        if second is not None:
            second.stop()

    resent = sum(republished(p) for p in paths)
    print(f"at the kill: {written_at_kill} of {TOTAL} written, the killed collector had stored {len(killed)}, "
          f"the survivor {len(survivor_at_kill)}; the survivor stored {len(survivor)} in all; "
          f"{resent} answers were published more than once; "
          + ", ".join(f"{name} at {t:.1f} s" for name, t in phases.items()))
    # Every written answer stored exactly once, seq without gaps, every outbox row settled.
    assert_delivered(stream.ids, events, paths)
    assert len(events) == TOTAL
    # The records agree with the store: each id committed by one collector only, none made up.
    stored = {e["id"] for e in events}
    assert set(killed) <= stored and set(survivor) <= stored
    assert not set(killed) & set(survivor), "an id was committed as new by both collectors"
    assert len(killed) == len(set(killed)) and len(survivor) == len(set(survivor))
    # The survivor took over: it stored everything the killed one had not, but for the killed
    # one's last transaction if it died between its commit and writing its record.
    after_kill = stored - set(killed) - survivor_at_kill
    assert after_kill, "nothing was left for the survivor"
    unrecorded = after_kill - set(survivor)
    assert len(unrecorded) <= IngestConfig().batch_size, f"{len(unrecorded)} stored ids no collector recorded"

"""Valid feedback events for tests, built the way a device builds them."""

from __future__ import annotations

import json
import uuid
from typing import Any

from sync import protocol


def feedback_event(site: str = "test-site", device: str = "desk-1", *, seq: int = 1,
                   epoch: str | None = None, check: bool = True, **fields: Any) -> dict[str, Any]:
    """A feedback event that passes ``feedback.v1.json``; ``fields`` override.

    ``check=False`` skips validation, to build an invalid event on purpose.
    """
    event: dict[str, Any] = {
        "schema": 1,
        "id": protocol.uuid7(),
        "site": site,
        "device": device,
        "epoch": epoch or str(uuid.uuid4()),
        "seq": seq,
        "ts": protocol.utc_timestamp(),
        "clock_synced": True,
        "boot_id": str(uuid.uuid4()),
        "mono_ms": 123_456,
        "rating": 4,
        "scale": 5,
        "reasons": [],
        "lang": "en",
        "source": "touch",
        "survey": 0,
        "flags": [],
    }
    event.update(fields)
    if check:
        protocol.validate("feedback", event)
    return event


def raw(event: dict[str, Any]) -> bytes:
    """Encode an event as a device would, without validating it."""
    return json.dumps(event, separators=(",", ":")).encode()

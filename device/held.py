"""The rating held while the follow-up is open, kept on disk so a power cut cannot lose it.

A rating that asks "why?" is stored in the outbox only when the follow-up ends
(reason, skip, timeout, or the kiosk stopping). Until then this small file holds
the answer as it would be stored without a reason, written atomically and
fsync'd. At start the kiosk stores a held answer it finds, unless the outbox
already has it (the kiosk died between the commit and removing the file): the
pair (``boot_id``, ``mono_ms``) names one tap (:meth:`sync.outbox.Outbox.has_tap`).
If the outbox cannot say, the file stays for the next start: storing on a guess
could count one tap twice under two ids, which central cannot see.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class HeldAnswer:
    """One JSON file next to the outbox.

    Args:
        path: the file (``held-answer.json`` in the data directory).
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def keep(self, answer: dict[str, Any]) -> None:
        """Write ``answer`` durably (temporary file, fsync, rename, fsync of the folder)."""
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(answer, f, ensure_ascii=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def load(self) -> dict[str, Any] | None:
        """The held answer, if any (an unreadable file counts as none)."""
        try:
            data = json.loads(self.path.read_text("utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def clear(self) -> None:
        """Forget the held answer (it is in the outbox now)."""
        self.path.unlink(missing_ok=True)

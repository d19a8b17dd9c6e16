"""The rating held while the follow-up is open, kept on disk so a power cut cannot lose it.

A rating that asks "why?" is stored in the outbox only when the follow-up ends
(reason, skip, timeout, or the kiosk stopping). Until then this small file holds
the answer as it would be stored without a reason, written atomically and
fsync'd. At start the kiosk stores a held answer it finds, unless the outbox
already has it (the kiosk died between the commit and removing the file): the
pair (``boot_id``, ``mono_ms``) names one tap (:meth:`sync.outbox.Outbox.has_tap`).
If the outbox cannot say, the answer is set aside in a file of its own
(``held-answer-<boot>-<mono_ms>.json``) for the next start, so the next held
rating cannot overwrite it: storing on a guess could count one tap twice under
two ids, which central cannot see.
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
        self._sync_folder()

    def _sync_folder(self) -> None:
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def load(self) -> dict[str, Any] | None:
        """The held answer, if any (an unreadable file counts as none)."""
        return _read(self.path)

    def clear(self) -> None:
        """Forget the held answer (it is in the outbox now)."""
        self.path.unlink(missing_ok=True)

    def set_aside(self, answer: dict[str, Any]) -> Path:
        """Move the held answer to a file of its own, for a later start (the next held rating needs the file)."""
        aside = self.path.with_name(f"{self.path.stem}-{str(answer.get('boot_id'))[:8]}-{answer.get('mono_ms')}.json")
        os.replace(self.path, aside)
        self._sync_folder()
        return aside

    def set_aside_answers(self) -> list[tuple[Path, dict[str, Any]]]:
        """Every answer set aside by an earlier start, with its file."""
        found = []
        for path in sorted(self.path.parent.glob(f"{self.path.stem}-*.json")):
            answer = _read(path)
            if answer is not None:
                found.append((path, answer))
        return found


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None

"""Logging that an attacker cannot turn into a flood: the first line of a kind at once, then a count.

:class:`SummaryLog` logs a message the first time its kind is seen in an
interval, counts the repeats, and logs one summary line per kind when the
interval is over (``N more like this in the last 60 s, the last: …``). The kind
is the message (or a given key) with its digits blanked, so "rating 7" and
"rating 9" are one kind. At most :data:`MAX_KINDS` kinds are kept per interval;
more share one line. The collector uses it for refused payloads, the web app
for refused sign-ins and cross-site requests.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Final

#: Seconds between summaries.
INTERVAL_S: Final = 60.0
#: Kinds counted per interval; more share the "(other kinds)" line.
MAX_KINDS: Final = 50
_DIGITS: Final = re.compile(r"\d+")


class SummaryLog:
    """Warnings with repeats summarised (thread-safe).

    Args:
        logger: where the lines go (at WARNING).
        interval_s: seconds between summaries.
        clock: a monotonic clock (tests pass their own).
    """

    def __init__(self, logger: logging.Logger, *, interval_s: float = INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._since = clock()
        self._seen: dict[str, list[object]] = {}  # kind -> [repeats since logged, the last message]

    def warning(self, message: str, *, key: str | None = None) -> None:
        """Log ``message`` if it is the first of its kind this interval; else count it.

        Args:
            message: the whole line (cut to 500 characters).
            key: what makes two messages one kind (default: the message); digits are blanked.
        """
        self.flush()
        message = message[:500]
        kind = _DIGITS.sub("#", key if key is not None else message)[:200]
        with self._lock:
            if kind not in self._seen and len(self._seen) >= MAX_KINDS:
                kind = "(other kinds)"
            entry = self._seen.get(kind)
            if entry is not None:
                entry[0] = int(str(entry[0])) + 1
                entry[1] = message
                return
            self._seen[kind] = [0, message]
        self.logger.warning("%s", message)

    def flush(self, force: bool = False) -> None:
        """Log the summaries when the interval is over (or ``force``), and start a new interval."""
        with self._lock:
            now = self._clock()
            if not force and now - self._since < self.interval_s:
                return
            lines = [(int(str(count)), str(last)) for count, last in self._seen.values() if count]
            took = now - self._since
            self._seen.clear()
            self._since = now
        for count, last in lines:
            self.logger.warning("%d more like this in the last %.0f s, the last: %s", count, took, last)

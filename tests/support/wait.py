"""Waiting on a condition with a deadline (never a bare long sleep)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def until(value: Callable[[], T | None], timeout: float = 10.0, what: str = "condition") -> T:
    """Poll ``value`` until it is truthy and return it; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if got := value():
            return got
        time.sleep(0.02)  # the polling interval
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_for(condition: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``condition`` until it is true; fail the test after ``timeout`` seconds."""
    until(condition, timeout, what)

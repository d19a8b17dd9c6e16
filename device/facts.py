"""Facts about the machine that go into each answer: boot id, monotonic time, clock sync."""

from __future__ import annotations

import ctypes
import ctypes.util
import time
import uuid
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sync import protocol

if TYPE_CHECKING:
    from device.flow import Save

_TIME_ERROR = 5  # adjtimex(2): the clock is not synchronised


@cache
def boot_id() -> str:
    """This boot's id (Linux); a random id per process elsewhere."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return str(uuid.uuid4())


def mono_ms() -> int:
    """Milliseconds since boot (counts suspend), paired with :func:`boot_id` so
    central can re-time answers recorded before the wall clock was set."""
    clock = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)
    return int(time.clock_gettime(clock) * 1000)


@cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name, use_errno=True) if name else None
    except OSError:
        return None


def clock_synced() -> bool:
    """True when the kernel says the wall clock is synchronised (NTP).

    ``adjtimex`` with no modes only reads; it returns TIME_ERROR while the
    clock is unsynchronised. A Pi has no RTC, so until NTP answers after boot
    its clock may be far off.
    """
    libc = _libc()
    if libc is None or not hasattr(libc, "adjtimex"):
        return False
    buf = ctypes.create_string_buffer(512)  # struct timex, zeroed: modes = 0
    state = libc.adjtimex(buf)
    return state not in (-1, _TIME_ERROR)


def answer(effect: Save, survey: int) -> dict[str, Any]:
    """The feedback event's fields for a flow's :class:`~device.flow.Save`, stamped now.

    The outbox adds the rest (id, site, device, epoch, seq). The kiosk and
    ``deskpulse-sim`` both build their answers here.
    """
    return {
        "ts": protocol.utc_timestamp(datetime.now(UTC)),
        "clock_synced": clock_synced(),
        "boot_id": boot_id(),
        "mono_ms": mono_ms(),
        "rating": effect.rating,
        "scale": effect.scale,
        "reasons": list(effect.reasons),
        "lang": effect.lang,
        "source": effect.source,
        "survey": survey,
        "flags": list(effect.flags),
    }


def undervoltage() -> bool | None:
    """Whether a Raspberry Pi's supply is too weak right now (None if not a Pi).

    The Pi's firmware reports it through the ``rpi_volt`` hwmon device.
    """
    for hwmon in Path("/sys/class/hwmon").glob("hwmon*"):
        try:
            if (hwmon / "name").read_text().strip() != "rpi_volt":
                continue
            return (hwmon / "in0_lcrit_alarm").read_text().strip() == "1"
        except OSError:
            continue
    return None

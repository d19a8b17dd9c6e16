"""Staff mode: a hidden gesture and a PIN open the status screen and test mode.

The gesture is :data:`GESTURE_TAPS` taps on the (invisible) top-left corner of
the customer screen within :data:`GESTURE_WINDOW_S`; Escape, a window close or
Alt-F4 in fullscreen kiosk mode open the PIN pad too, and nothing else leaves
the kiosk. The configuration holds only a salted PBKDF2 hash of the PIN
(``deskpulse-kiosk hash-pin`` makes one). Wrong PINs are rate-limited: after
:data:`FREE_TRIES` wrong PINs each further try waits, doubling from
:data:`LOCK_S` up to :data:`MAX_LOCK_S`; the count and the lockout are kept in a
small file (``staff-lock.json`` in the data directory), so restarting the kiosk
does not reset them. Logic with a monotonic clock passed in; the kiosk draws,
translates the notices and routes touches.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import os
import re
import secrets
import time
from pathlib import Path
from typing import Literal

GESTURE_TAPS = 5
GESTURE_WINDOW_S = 4.0
FREE_TRIES = 3
LOCK_S = 30.0
MAX_LOCK_S = 900.0
IDLE_S = 60.0  # the staff screens close by themselves after this
TEST_MODE_S = 15 * 60.0  # test mode ends by itself after this (default)
MAX_PIN_DIGITS = 12
ITERATIONS = 200_000
_HASH_RE = re.compile(r"^pbkdf2_sha256\$(\d{4,7})\$([0-9a-f]{16,64})\$([0-9a-f]{64})$")

StaffScreen = Literal["pin", "status"]
#: What the PIN pad tells staff: nothing, a wrong PIN, or the lockout (see :meth:`StaffMode.lock_left`).
Notice = Literal["", "wrong_pin", "locked"]

log = logging.getLogger("deskpulse.staff")


def hash_pin(pin: str, *, iterations: int = ITERATIONS, salt: bytes | None = None) -> str:
    """A storable hash of ``pin``: ``pbkdf2_sha256$ITERATIONS$SALT$HASH`` (hex)."""
    if not pin.isdigit() or not 4 <= len(pin) <= MAX_PIN_DIGITS:
        raise ValueError(f"a PIN is 4 to {MAX_PIN_DIGITS} digits")
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", pin.encode(), salt, iterations)
    return f"pbkdf2_sha256${iterations}${salt.hex()}${digest.hex()}"


def check_hash_format(value: str) -> str | None:
    """None if ``value`` looks like :func:`hash_pin`'s output, else what is wrong."""
    if _HASH_RE.fullmatch(value):
        return None
    return "must be a hash made by `deskpulse-kiosk hash-pin` (pbkdf2_sha256$...), never the PIN itself"


def pin_matches(pin: str, stored: str) -> bool:
    """Whether ``pin`` matches the stored hash (constant-time comparison)."""
    m = _HASH_RE.fullmatch(stored)
    if m is None:
        return False
    iterations, salt, want = int(m.group(1)), bytes.fromhex(m.group(2)), m.group(3)
    got = hashlib.pbkdf2_hmac("sha256", pin.encode(), salt, iterations).hex()
    return hmac.compare_digest(got, want)


class StaffMode:
    """The staff state: which staff screen is open, the PIN typed so far, the lockout.

    Args:
        pin_hash: the configured hash; None disables staff mode (the gesture does nothing).
        test_mode_s: test mode ends by itself this long after staff switched it on.
        lock_file: where the wrong-PIN count and lockout survive a restart (None: memory only).
    """

    def __init__(self, pin_hash: str | None, *, test_mode_s: float = TEST_MODE_S,
                 lock_file: Path | None = None) -> None:
        self.pin_hash = pin_hash
        self.test_mode_s = test_mode_s
        self.lock_file = lock_file
        self.screen: StaffScreen | None = None
        self.digits = ""
        self.notice: Notice = ""
        #: Monotonic time test mode ends (None: off).
        self.test_mode_until: float | None = None
        self.wrong = 0
        self.locked_until = 0.0
        self.last_input = 0.0
        self._corner_taps: list[float] = []

    @property
    def enabled(self) -> bool:
        return self.pin_hash is not None

    def restore(self, now: float) -> None:
        """Take up the lockout a previous run left (``now`` is the monotonic clock).

        The file holds the wall-clock end of the lockout (the monotonic clock
        restarts with the machine); what is left is capped at :data:`MAX_LOCK_S`,
        so a wall clock that jumps cannot lock staff out for longer.
        """
        if self.lock_file is None:
            return
        try:
            data = json.loads(self.lock_file.read_text("utf-8"))
            wrong, until = int(data["wrong"]), float(data["locked_until"])
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.warning("ignored the unreadable staff lock file %s: %s", self.lock_file, exc)
            return
        self.wrong = max(0, wrong)
        left = min(MAX_LOCK_S, max(0.0, until - time.time()))
        self.locked_until = now + left if left > 0 else 0.0

    def _keep(self, now: float) -> None:
        """Write the count and lockout (atomically); a failure is logged, the lockout stays in memory."""
        if self.lock_file is None:
            return
        try:
            if self.wrong == 0:
                self.lock_file.unlink(missing_ok=True)
                return
            tmp = self.lock_file.with_suffix(".tmp")
            until = time.time() + max(0.0, self.locked_until - now)
            tmp.write_text(json.dumps({"wrong": self.wrong, "locked_until": until}), "utf-8")
            os.replace(tmp, self.lock_file)
        except OSError as exc:
            log.error("staff lockout not kept on disk (it holds until a restart): %s", exc)

    def lock_left(self, now: float) -> int:
        """Whole seconds the PIN pad stays locked (0: not locked)."""
        return math.ceil(self.locked_until - now) if now < self.locked_until else 0

    @property
    def test_mode(self) -> bool:
        """Whether answers are flagged ``test`` now."""
        return self.test_mode_until is not None

    def test_mode_left(self, now: float) -> float:
        """Seconds until test mode ends by itself (0.0 when it is off)."""
        return 0.0 if self.test_mode_until is None else max(0.0, self.test_mode_until - now)

    def corner_tap(self, now: float) -> bool:
        """A tap on the hidden corner; True when the gesture is complete (the PIN pad opens)."""
        self._corner_taps = [t for t in self._corner_taps if now - t < GESTURE_WINDOW_S] + [now]
        if len(self._corner_taps) >= GESTURE_TAPS:
            self._corner_taps = []
            return self.open(now)
        return False

    def open(self, now: float) -> bool:
        """Show the PIN pad (Escape, window close, the gesture). False if staff mode is off."""
        if not self.enabled:
            return False
        self.screen, self.digits, self.last_input = "pin", "", now
        self.notice = "locked" if self.lock_left(now) else ""
        return True

    def close(self) -> None:
        """Back to the customer screens (test mode stays as it is)."""
        self.screen, self.digits, self.notice = None, "", ""

    def key(self, kind: str, value: int | str | None, now: float) -> None:
        """A key of the PIN pad or a button of the status screen."""
        self.last_input = now
        if self.screen == "pin":
            if kind == "digit" and len(self.digits) < MAX_PIN_DIGITS:
                self.digits += str(value)
                self.notice = "locked" if self.lock_left(now) else ""
            elif kind == "pin_back":
                if not self.digits:
                    self.close()
                    return
                self.digits = self.digits[:-1]
            elif kind == "pin_ok":
                self._try(now)
            elif kind == "pin_cancel":
                self.close()
        elif self.screen == "status":
            if kind == "test_mode":
                self.test_mode_until = None if self.test_mode else now + self.test_mode_s
            elif kind == "close":
                self.close()

    def _try(self, now: float) -> None:
        pin, self.digits = self.digits, ""
        if now < self.locked_until:
            self.notice = "locked"
            return
        assert self.pin_hash is not None
        if pin and pin_matches(pin, self.pin_hash):
            had_failures = self.wrong > 0
            self.wrong, self.screen, self.notice = 0, "status", ""
            if had_failures:
                self._keep(now)
            return
        self.wrong += 1
        if self.wrong >= FREE_TRIES:
            self.locked_until = now + min(MAX_LOCK_S, LOCK_S * 2 ** (self.wrong - FREE_TRIES))
            self.notice = "locked"
        else:
            self.notice = "wrong_pin"
        self._keep(now)

    def tick(self, now: float) -> None:
        """Close the staff screens after :data:`IDLE_S` without input; end test mode when its time is up."""
        if self.screen is not None and now - self.last_input >= IDLE_S:
            self.close()
        if self.test_mode_until is not None and now >= self.test_mode_until:
            self.test_mode_until = None

    def deadline(self) -> float | None:
        """When :meth:`tick` may change something (None: nothing open, test mode off)."""
        times = [t for t in (None if self.screen is None else self.last_input + IDLE_S, self.test_mode_until)
                 if t is not None]
        return min(times) if times else None

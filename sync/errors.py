"""The one exception tree of DeskPulse.

Every error our code raises on purpose derives from :class:`DeskPulseError`.
Leaves also subclass the builtin a caller would naturally catch (``ValueError``
for bad input, ``OSError`` for storage), following gpiozero's habit.
"""

from __future__ import annotations


class DeskPulseError(Exception):
    """Root of all DeskPulse errors."""


class ConfigError(DeskPulseError, ValueError):
    """A configuration file or value is wrong; the message names file, key and reason."""


class ProtocolError(DeskPulseError, ValueError):
    """A payload or topic does not follow the DeskPulse protocol."""


class OutboxError(DeskPulseError, OSError):
    """The device's outbox cannot store an answer (full disk, unreadable database)."""

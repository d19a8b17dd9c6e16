"""DeskPulse central: the MQTT collector, the event store and the staff dashboard.

Central uses ``sync`` (the protocol both ends share) and never imports the
kiosk's ``device`` package.
"""

from __future__ import annotations

from importlib import metadata as _metadata

try:
    __version__: str = _metadata.version("deskpulse")
except _metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.1.0"

__all__ = ["__version__"]

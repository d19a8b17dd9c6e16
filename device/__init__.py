"""The kiosk: the customer flow, hardware (buttons, LEDs) and the wiring of display and sync."""

import os as _os

# pygame prints a banner on import; a kiosk's journal does not need it.
_os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

__version__ = "0.1.0"

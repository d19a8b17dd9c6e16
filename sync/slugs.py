"""The one pattern of site and device slugs (``sync.protocol`` re-exports it).

A module of its own, importing nothing, so the installer's helpers
(:mod:`sync.installconf`, :mod:`sync.provision`) run on a bare ``python3``.
"""

from __future__ import annotations

import re
from typing import Final

#: A site or device slug, as a pattern string (for web frameworks' query patterns) and compiled.
SLUG_PATTERN: Final = r"^[a-z0-9-]{1,64}$"
SLUG_RE: Final = re.compile(SLUG_PATTERN)

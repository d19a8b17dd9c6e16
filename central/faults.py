"""Named fault points, for the crash tests of the delivery contract.

Set ``DESKPULSE_FAULT_POINT=name`` (or ``name:N`` for the N-th time the point
is reached) in central's environment and the process SIGKILLs itself there,
exactly as a power cut would stop it. Unset (always, in production) a point
costs one dictionary lookup. The points, in the order a batch passes them:

- ``after-receive``: messages received, nothing committed;
- ``after-commit``: the batch is committed, no PUBACK sent;
- ``after-ack``: PUBACKs are on the wire, no receipt sent.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

POINTS = ("after-receive", "after-commit", "after-ack")

_name, _, _nth = os.environ.get("DESKPULSE_FAULT_POINT", "").partition(":")
_armed: dict[str, int] = {_name: int(_nth or 1)} if _name in POINTS else {}


def point(name: str, before: Callable[[], object] | None = None) -> None:
    """Die here if this point is armed and reached for the armed time.

    Args:
        name: one of :data:`POINTS`.
        before: called just before dying (e.g. to push PUBACKs onto the wire).
    """
    if name not in _armed:
        return
    _armed[name] -= 1
    if _armed[name] == 0:
        if before is not None:
            before()
        os.kill(os.getpid(), signal.SIGKILL)

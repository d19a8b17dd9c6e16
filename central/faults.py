"""Named fault points, for the crash tests of the delivery contract.

A test starts central with the hidden option ``--fault-point name`` (or
``name:N`` for the N-th time the point is reached; ``deskpulse-central run``
only, left out of ``--help``) and the process SIGKILLs itself there, exactly
as a power cut would stop it. The option becomes a :class:`Faults` handed to
the collector; nothing reads the environment, so no stray variable can arm a
point in production. Unarmed (always, in production) a point costs one
dictionary lookup. The points, in the order a batch passes them:

- ``after-receive``: messages received, nothing committed;
- ``after-commit``: the batch is committed, no PUBACK sent;
- ``after-ack``: PUBACKs are on the wire, no receipt sent.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Final

POINTS: Final = ("after-receive", "after-commit", "after-ack")


class Faults:
    """The fault points armed in this process (none by default).

    Args:
        armed: ``{point: N}``: die the N-th time ``point`` is reached.

    Raises:
        ValueError: an unknown point, or N below 1.
    """

    def __init__(self, armed: dict[str, int] | None = None) -> None:
        self._armed = dict(armed or {})
        for name, nth in self._armed.items():
            if name not in POINTS or nth < 1:
                raise ValueError(f"fault point {name}:{nth}: not one of {', '.join(POINTS)} with N >= 1")

    def __repr__(self) -> str:
        return f"Faults({self._armed!r})"

    def __bool__(self) -> bool:
        return bool(self._armed)

    @classmethod
    def parse(cls, spec: str) -> Faults:
        """``name`` or ``name:N`` (the N-th time; default the first), as the command line gives it.

        Raises:
            ValueError: not a known point, or N not a whole number of at least 1.
        """
        name, _, nth = spec.partition(":")
        try:
            count = int(nth or 1)
        except ValueError:
            raise ValueError(f"fault point {spec!r}: N must be a whole number") from None
        return cls({name: count})

    def point(self, name: str, before: Callable[[], object] | None = None) -> None:
        """Die here if this point is armed and reached for the armed time.

        Args:
            name: one of :data:`POINTS`.
            before: called just before dying (e.g. to push PUBACKs onto the wire).
        """
        if name not in self._armed:
            return
        self._armed[name] -= 1
        if self._armed[name] == 0:
            if before is not None:
                before()
            os.kill(os.getpid(), signal.SIGKILL)

"""Remote survey configuration on the device: validate, keep the last good one, report a bad one.

Central publishes a retained ``config`` for a site and, optionally, for one
device; the device's own replaces the site's as a whole. A configuration is
applied only after it passed the schema and the checks below; the last good
one is kept in the data directory (under systemd ``/etc`` is read-only) so a
restart without a broker still shows the same survey. A refused one is kept
out and reported in the device's status as ``config_error``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Literal

from sync import protocol
from sync.errors import ProtocolError

log = logging.getLogger("deskpulse.sync.survey")

Scope = Literal["site", "device"]


def check(config: dict[str, Any]) -> None:
    """What the schema cannot say: values that must agree with each other.

    Raises:
        ProtocolError: naming the field and why.
    """
    scale = config["scale"]
    too_high = [r for r in config.get("followup_ratings", []) if r > scale]
    if too_high:
        raise ProtocolError(f"config invalid at followup_ratings: {too_high} exceed the scale of {scale}")
    languages = config.get("languages")
    default = config.get("default_lang")
    if languages is not None and default is not None and default not in languages:
        raise ProtocolError(f"config invalid at default_lang: {default!r} is not one of languages {languages}")


class SurveyConfigs:
    """The device's view of its remote configuration.

    Args:
        path: where the last good configuration is kept (JSON).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._offered: dict[Scope, dict[str, Any]] = {}
        self.error: dict[str, Any] | None = None
        self.current: dict[str, Any] | None = self._load()

    def _load(self) -> dict[str, Any] | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.error("cannot read the last survey configuration %s: %s", self.path, exc)
            return None
        try:
            config: dict[str, Any] = protocol.decode("config", raw)
            check(config)
        except ProtocolError as exc:
            log.error("ignoring the kept survey configuration %s: %s", self.path, exc)
            return None
        return config

    def _save(self, config: dict[str, Any]) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(protocol.encode("config", config))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def offer(self, scope: Scope, raw: bytes) -> dict[str, Any] | None:
        """Take a retained ``config`` message; returns the new configuration if it changed.

        An empty payload clears the retained configuration of that scope (the
        last good one stays in force until another arrives).
        """
        if not raw:
            self._offered.pop(scope, None)
            return None
        try:
            config: dict[str, Any] = protocol.decode("config", raw)
            check(config)
        except ProtocolError as exc:
            version = _version_of(raw)
            self.error = {"version": version, "reason": str(exc)[:500]}
            log.error("refused the %s survey configuration (version %s): %s", scope, version, exc)
            return None
        self._offered[scope] = config
        chosen = self._offered.get("device") or self._offered.get("site")
        if chosen is None or chosen == self.current:
            if chosen is not None:
                self.error = None
            return None
        try:
            self._save(chosen)
        except OSError as exc:  # a full disk: apply it anyway, say it was not kept
            log.error("survey configuration %s applied but not kept: %s", chosen["version"], exc)
        self.current, self.error = chosen, None
        log.info("survey configuration version %d applied (%s)", chosen["version"],
                 "device" if "device" in self._offered else "site")
        return chosen


def _version_of(raw: bytes) -> int | None:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    version = body.get("version") if isinstance(body, dict) else None
    return version if isinstance(version, int) and not isinstance(version, bool) else None

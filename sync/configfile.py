"""Reading TOML configuration files: typed values with the file and key in every error.

Both ends use it (the kiosk's ``device.config`` and ``central.config``), so a
wrong value reads the same way everywhere: ``FILE: section.key reason``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, cast

from sync.broker import BrokerSettings, parse_broker_url
from sync.errors import ConfigError


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file.

    Raises:
        ConfigError: the file is missing, unreadable or not TOML.
    """
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return data


class TableReader:
    """Reads typed values from one TOML table, naming file and key in errors."""

    def __init__(self, source: str, table: dict[str, Any], prefix: str, allowed: set[str]) -> None:
        self.source, self.table, self.prefix = source, table, prefix
        unknown = sorted(set(table) - allowed)
        if unknown:
            raise ConfigError(
                f"{source}: unknown key {prefix}{unknown[0]} (known: {', '.join(sorted(allowed))})"
            )

    def fail(self, key: str, reason: str) -> ConfigError:
        return ConfigError(f"{self.source}: {self.prefix}{key} {reason}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any) -> Any:
        value = self.table.get(key, default)
        if value is default:
            return value
        if isinstance(value, bool) and kind is not bool:
            raise self.fail(key, f"must be {type_name(kind)}, not a boolean")
        if not isinstance(value, kind):
            raise self.fail(key, f"must be {type_name(kind)}, got {type(value).__name__} {value!r}")
        return value

    def number(self, key: str, default: float, lo: float, hi: float) -> float:
        value = float(self.get(key, (int, float), default))
        if not lo <= value <= hi:
            raise self.fail(key, f"must be between {lo:g} and {hi:g}, got {value:g}")
        return value

    def pair(self, key: str, default: tuple[Any, Any], kind: type | tuple[type, ...]) -> tuple[Any, Any]:
        if key not in self.table:
            return default
        value: list[Any] = self.get(key, list, None)

        def good(v: Any) -> bool:
            if isinstance(v, bool) or not isinstance(v, kind):
                return False
            return float(cast(float, v)) > 0

        if len(value) != 2 or not all(good(v) for v in value):
            raise self.fail(key, f"must be two positive numbers like [800, 480], got {value!r}")
        return (value[0], value[1])

    def path(self, key: str, base: Path, default: Path | None) -> Path | None:
        value = self.get(key, str, None)
        if value is None:
            return default
        p = Path(value)
        return p if p.is_absolute() else (base / p)


def type_name(kind: type | tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false", list: "a list"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)




#: Keys every ``[broker]`` table may hold.
BROKER_KEYS = frozenset({"url", "username", "password_file", "ca_file", "cert_file", "key_file", "keepalive"})


def read_broker(reader: TableReader, base: Path) -> BrokerSettings:
    """Broker settings from a ``[broker]`` table; the password comes from a file.

    Raises:
        ConfigError: a bad URL, an unreadable password file, a bad keepalive.
    """
    url = reader.get("url", str, "mqtt://127.0.0.1:1883")
    host, port, tls = parse_broker_url(url, where=f"{reader.source}: {reader.prefix}url")
    password = None
    password_file = reader.path("password_file", base, None)
    if password_file is not None:
        try:
            password = password_file.read_text("utf-8").strip()
        except OSError as exc:
            raise reader.fail("password_file", f"cannot be read: {exc}") from None
    return BrokerSettings(
        host=host,
        port=port,
        tls=tls,
        username=reader.get("username", str, None),
        password=password,
        ca_file=reader.path("ca_file", base, None),
        cert_file=reader.path("cert_file", base, None),
        key_file=reader.path("key_file", base, None),
        keepalive=int(reader.number("keepalive", 30, 5, 3600)),
    )

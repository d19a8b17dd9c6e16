"""Central's configuration: one TOML file, validated at start into frozen dataclasses.

Every key is described in docs/configuration.md. A wrong value fails at start
with the file, the key and the reason; unknown keys are errors. Nothing reads
the file or the environment later. Command-line options (``--broker``,
``--db``, ``--bind``) override the file through :meth:`CentralConfig.with_overrides`.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from sync.broker import BrokerSettings, parse_broker_url
from sync.configfile import BROKER_KEYS, TableReader, read_broker, read_toml
from sync.errors import ConfigError
from sync.protocol import SLUG_RE

DEFAULT_PATH = Path("/etc/deskpulse/central.toml")
DEFAULT_DATA_DIR = Path("/var/lib/deskpulse")
DEFAULT_DB = f"sqlite:///{DEFAULT_DATA_DIR / 'central.sqlite3'}"
DEFAULT_BIND = "127.0.0.1:8080"
DEFAULT_GROUP = "deskpulse-central"

#: Database drivers central supports; ``postgresql`` means psycopg 3.
_DRIVERS = frozenset({"sqlite", "sqlite+pysqlite", "postgresql", "postgresql+psycopg"})
#: MQTT allows any UTF-8 client id; we keep to characters every broker accepts.
_CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def default_client_id() -> str:
    """``deskpulse-central-<host>-<pid>``: unique per process.

    Two collectors with one client id would take the session from each other
    in a loop, so the default includes the process id.
    """
    host = "".join(c if c.isalnum() or c == "-" else "-" for c in socket.gethostname().lower())[:40]
    return f"deskpulse-central-{host or 'host'}-{os.getpid()}"


@dataclass(frozen=True, slots=True)
class IngestConfig:
    """How the collector batches its commits: by size or by time, whichever comes first."""

    batch_size: int = 200
    batch_ms: int = 100


@dataclass(frozen=True, slots=True)
class CentralConfig:
    """Everything central needs, validated.

    Attributes:
        broker: where and how to connect to MQTT.
        client_id: this collector's MQTT client id (unique per process).
        group: the shared-subscription group; collectors in one group split the load.
        database_url: ``sqlite:///…`` (absolute path) or ``postgresql://…``.
        bind_host: the web server's address.
        bind_port: the web server's port.
        ingest: batching of the collector's commits.
        source: where the configuration came from (for messages).
    """

    broker: BrokerSettings = BrokerSettings()
    client_id: str = field(default_factory=default_client_id)
    group: str = DEFAULT_GROUP
    database_url: str = DEFAULT_DB
    bind_host: str = "127.0.0.1"
    bind_port: int = 8080
    ingest: IngestConfig = IngestConfig()
    source: str = "<defaults>"

    @property
    def dashboard_url(self) -> str:
        """The dashboard's address as a browser on this machine reaches it."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.bind_host, self.bind_host)
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.bind_port}/"

    @property
    def safe_database_url(self) -> str:
        """The database URL without its password (safe to log)."""
        return make_url(self.database_url).render_as_string(hide_password=True)

    def with_overrides(self, *, broker: str | None = None, db: str | None = None,
                       bind: str | None = None) -> CentralConfig:
        """This configuration with command-line values in place of the file's.

        Raises:
            ConfigError: naming the option and what is wrong.
        """
        config = self
        if broker is not None:
            host, port, tls = parse_broker_url(broker, where="--broker")
            config = replace(config, broker=replace(config.broker, host=host, port=port, tls=tls))
        if db is not None:
            config = replace(config, database_url=check_database_url(db, "--db", Path.cwd()))
        if bind is not None:
            host, port = parse_bind(bind, "--bind")
            config = replace(config, bind_host=host, bind_port=port)
        return config


def parse_bind(value: str, where: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[::1]:8080`` for IPv6) into host and port.

    Raises:
        ConfigError: naming ``where`` and what is wrong.
    """
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{where}: {value!r} must look like 127.0.0.1:8080 (a port from 1 to 65535)")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if ":" in host and not value.startswith("["):
        raise ConfigError(f"{where}: {value!r}: write an IPv6 address in brackets, like [::1]:8080")
    return host or "127.0.0.1", int(port)


def check_database_url(url: str, where: str, base: Path) -> str:
    """Validate a database URL; a relative SQLite path is made absolute against ``base``.

    Accepts ``sqlite:///path`` and ``postgresql://user@host/db`` (psycopg 3).

    Raises:
        ConfigError: naming ``where`` and what is wrong.
    """
    try:
        parsed: URL = make_url(url)
    except ArgumentError:
        raise ConfigError(f"{where}: {url!r} is not a database URL (sqlite:///path or postgresql://…)") from None
    except ValueError as exc:  # e.g. a port that is not a number
        raise ConfigError(f"{where}: {url!r} is not a valid URL: {exc}") from None
    if parsed.drivername not in _DRIVERS:
        raise ConfigError(f"{where}: {parsed.drivername}:// is not supported; use sqlite:///path or postgresql://…")
    if parsed.drivername.startswith("sqlite"):
        if not parsed.database or parsed.database == ":memory:":
            raise ConfigError(f"{where}: {url!r} names no database file (sqlite:///path/central.sqlite3)")
        path = Path(parsed.database)
        if not path.is_absolute():
            parsed = parsed.set(database=str((base / path).resolve()))
        return parsed.render_as_string(hide_password=False)
    if not parsed.database:
        raise ConfigError(f"{where}: {url!r} names no database (postgresql://user@host/dbname)")
    return url


def load(path: Path | str) -> CentralConfig:
    """Read and validate a central TOML file.

    Relative paths in the file (password and certificate files, a SQLite
    database) are relative to the file's folder.

    Raises:
        ConfigError: the file is missing, not TOML, or a value is wrong.
    """
    path = Path(path)
    return from_dict(read_toml(path), source=str(path), base=path.parent.resolve())


def from_dict(data: dict[str, Any], *, source: str = "<config>", base: Path | None = None) -> CentralConfig:
    """Validate a configuration given as a dict (as parsed from TOML).

    Args:
        data: the parsed TOML document.
        source: the file name, used in error messages.
        base: the folder relative paths are resolved against (default: cwd).

    Raises:
        ConfigError: naming ``source``, the key and the reason.
    """
    base = base or Path.cwd()
    top = TableReader(source, data, "", {"broker", "database", "web", "ingest"})
    tables = {name: top.get(name, dict, {}) for name in ("broker", "database", "web", "ingest")}

    br = TableReader(source, tables["broker"], "broker.", set(BROKER_KEYS) | {"client_id", "group"})
    broker = read_broker(br, base)
    group = br.get("group", str, DEFAULT_GROUP)
    if not SLUG_RE.fullmatch(group):
        raise br.fail("group", f"must be a slug of a-z, 0-9 and '-' (1 to 64), got {group!r}")
    client_id = br.get("client_id", str, None)
    if client_id is None:
        client_id = default_client_id()
    elif not _CLIENT_ID_RE.fullmatch(client_id):
        raise br.fail("client_id", f"must be 1 to 128 of A-Z, a-z, 0-9 and . _ : -, got {client_id!r}")

    db = TableReader(source, tables["database"], "database.", {"url"})
    url = check_database_url(db.get("url", str, DEFAULT_DB), f"{source}: database.url", base)

    web = TableReader(source, tables["web"], "web.", {"bind"})
    host, port = parse_bind(web.get("bind", str, DEFAULT_BIND), f"{source}: web.bind")

    ing = TableReader(source, tables["ingest"], "ingest.", {"batch_size", "batch_ms"})
    ingest = IngestConfig(
        batch_size=_integer(ing, "batch_size", 200, 1, 10_000),
        batch_ms=_integer(ing, "batch_ms", 100, 1, 60_000),
    )
    return CentralConfig(broker=broker, client_id=client_id, group=group, database_url=url,
                         bind_host=host, bind_port=port, ingest=ingest, source=source)


def _integer(reader: TableReader, key: str, default: int, lo: int, hi: int) -> int:
    value: int = reader.get(key, int, default)
    if not lo <= value <= hi:
        raise reader.fail(key, f"must be between {lo} and {hi}, got {value}")
    return value

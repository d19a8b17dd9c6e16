"""Central's configuration: one TOML file, validated at start into frozen dataclasses.

Every key is described in docs/configuration.md. A wrong value fails at start
with the file, the key and the reason; unknown keys are errors. Nothing reads
the file or the environment later. Command-line options (``--broker``,
``--db``, ``--bind``) override the file through :meth:`CentralConfig.with_overrides`.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import re
import socket
from dataclasses import dataclass, field, replace
from datetime import time
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

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
#: The session secret's default place when the database is not a SQLite file.
DEFAULT_SECRET = Path("/var/lib/deskpulse/central-secret")
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
    #: Dead letters kept at most (MiB, counting each row's payload, reason and topic).
    dead_letters_max_mb: int = 64
    #: Dead letters older than this many days are deleted.
    dead_letters_max_days: int = 30


#: Days of the week as written in ``[sites.<slug>.hours]``, Monday first (``date.weekday()``).
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: How a desk's answers appear in the live feed (privacy; docs/dashboard.md).
FeedMode = Literal["live", "delayed", "aggregated"]
_FEED_MODES = ("live", "delayed", "aggregated")
#: A display token is a secret in a URL: long enough not to be guessed.
MIN_TOKEN_LENGTH = 24
_HOURS_RE = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")
#: Opening hours of one day: (open, close) local times, close after open; None = closed.
Hours = tuple[time, time] | None
#: A day that is open all day; ``time.max`` stands for 24:00.
ALL_DAY: tuple[time, time] = (time(0, 0), time.max)


@dataclass(frozen=True, slots=True)
class DeskConfig:
    """A desk (a device) as the dashboard names it, and how its answers reach the live feed.

    ``feed``: ``live`` (at once), ``delayed`` (``delay_min`` minutes after they
    are stored) or ``aggregated`` (never one by one: only in the numbers).
    """

    slug: str
    name: str
    feed: FeedMode = "live"
    delay_min: int = 0


@dataclass(frozen=True, slots=True)
class SiteConfig:
    """A site: its name, time zone (every date and hour on the dashboard is local), opening hours and desks."""

    slug: str
    name: str
    timezone: str = "UTC"
    hours: MappingProxyType[int, Hours] = field(
        default_factory=lambda: MappingProxyType(dict.fromkeys(range(7), ALL_DAY)))
    desks: MappingProxyType[str, DeskConfig] = field(default_factory=lambda: MappingProxyType({}))
    #: The index the site aims for (0 to 100), or None: shown beside today's index and in the weekly report.
    target: float | None = None

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def desk(self, slug: str) -> DeskConfig:
        """The desk's configuration; a desk not in the file is shown by its slug, live."""
        return self.desks.get(slug) or DeskConfig(slug=slug, name=slug)

    def is_open(self, weekday: int, at: time) -> bool:
        """Whether the site is open at local time ``at`` on ``weekday`` (0 = Monday)."""
        hours = self.hours.get(weekday)
        return hours is not None and hours[0] <= at < hours[1]


@dataclass(frozen=True, slots=True)
class DisplayToken:
    """A read-only token for a wall TV: opens ``/tv/<token>`` for one site (or one desk) and nothing else."""

    name: str
    token: str = field(repr=False)
    site: str
    device: str | None = None


@dataclass(frozen=True, slots=True)
class DashboardConfig:
    """The dashboard's settings.

    Attributes:
        min_answers: no index is shown for fewer counted answers than this.
        rank_min_answers: a desk is ranked in "needs attention" from this many
            counted answers in the last 7 days (at least ``min_answers``).
        include_flagged: the default of the "include flagged answers" switch.
        accounts: staff sign-in: name -> argon2 password hash. Empty: the
            dashboard is open to whoever reaches ``web.bind``.
        tv: display tokens for wall TVs.
        open: the dashboard may be served without accounts on an address other
            than loopback (``dashboard.open = true``, said explicitly).
    """

    min_answers: int = 5
    rank_min_answers: int = 20
    include_flagged: bool = False
    accounts: MappingProxyType[str, str] = field(default_factory=lambda: MappingProxyType({}))
    tv: tuple[DisplayToken, ...] = ()
    open: bool = False

    def display_token(self, token: str) -> DisplayToken | None:
        """The display token ``token`` is, or None (compared in constant time)."""
        found = None
        for candidate in self.tv:
            if hmac.compare_digest(candidate.token.encode(), token.encode()):
                found = candidate
        return found


@dataclass(frozen=True, slots=True)
class FleetConfig:
    """Device provisioning on a broker with the dynamic-security plugin (``deskpulse-central device …``).

    Attributes:
        admin_username: the plugin's administrator client central logs in as.
        admin_password: its password (from ``fleet.admin_password_file``); None: not configured.
        device_broker_url: the broker URL written into provisioning files (the
            address kiosks reach); None: ``broker.url``.
        device_ca_file: the CA certificate copied into provisioning files; None: ``broker.ca_file``.
    """

    admin_username: str = "deskpulse-admin"
    admin_password: str | None = None
    device_broker_url: str | None = None
    device_ca_file: Path | None = None


#: Where an alert rule on unhappy answers looks: each desk alone, the whole site, or both.
AlertScope = Literal["desk", "site", "both"]
_ALERT_SCOPES = ("desk", "site", "both")
#: Keys of an alert rule (``[alerts]``, ``[alerts.sites.<site>]``, ``[alerts.sites.<site>.desks.<desk>]``).
_RULE_KEYS = {"enabled", "unhappy_pct", "window_min", "min_answers", "offline_min", "backlog_min", "test_mode_min",
              "refused_survey"}
#: How an SMTP connection is secured: STARTTLS on a plain port, TLS from the start, or none (a local relay).
MailSecurity = Literal["starttls", "ssl", "none"]
_MAIL_SECURITY = ("starttls", "ssl", "none")
_ADDRESS_RE = re.compile(r"^[^@\s<>\"]+@[^@\s<>\"]+$")


@dataclass(frozen=True, slots=True)
class AlertRule:
    """When alerts are raised for one site or desk (docs/central.md, "Alerts").

    Attributes:
        enabled: whether this site or desk raises alerts at all.
        unhappy_pct: an alert when at least this share (percent) of the counted
            answers in a window are unhappy (the two lowest faces of their scale).
        window_min: the window's length, in minutes of the answers' own time.
        min_answers: ... and the window holds at least this many counted answers.
        offline_min: a kiosk offline for longer than this (minutes); 0: never.
        backlog_min: a kiosk whose oldest unconfirmed answer is older than this (minutes); 0: never.
        test_mode_min: a kiosk left in test mode for longer than this (minutes); 0: never.
        refused_survey: an alert when a kiosk refuses the survey configuration.
    """

    enabled: bool = True
    unhappy_pct: int = 50
    window_min: int = 15
    min_answers: int = 4
    offline_min: int = 15
    backlog_min: int = 30
    test_mode_min: int = 30
    refused_survey: bool = True


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """``[alerts.webhook]``: alerts POSTed as JSON to ``url`` (None: no webhook), retried with backoff."""

    url: str | None = None
    timeout_s: float = 10.0
    max_attempts: int = 10


@dataclass(frozen=True, slots=True)
class AlertsConfig:
    """``[alerts]``: the default rule, per-site and per-desk overrides, and where alerts are sent.

    Attributes:
        default: the rule of every site and desk not overridden.
        scope: the unhappy-answers rule looks at each desk, each site, or both.
        sites: ``[alerts.sites.<site>]``: the site's rule (the default with its overrides).
        site_scopes: a site's own ``scope``.
        desks: ``[alerts.sites.<site>.desks.<desk>]``: the desk's rule (the site's with its overrides).
        late_after_min: an alert whose window ended more than this many minutes
            before central raised it is marked late: kept and listed, never sent.
        check_every_s: how often the collector looks at kiosks' health and new answers.
        email_to: who gets each alert by e-mail (needs ``[mail]``); empty: nobody.
        webhook: the webhook.
    """

    default: AlertRule = AlertRule()
    scope: AlertScope = "desk"
    sites: MappingProxyType[str, AlertRule] = field(default_factory=lambda: MappingProxyType({}))
    site_scopes: MappingProxyType[str, AlertScope] = field(default_factory=lambda: MappingProxyType({}))
    desks: MappingProxyType[tuple[str, str], AlertRule] = field(default_factory=lambda: MappingProxyType({}))
    late_after_min: int = 15
    check_every_s: float = 30.0
    email_to: tuple[str, ...] = ()
    webhook: WebhookConfig = WebhookConfig()

    def rule(self, site: str, device: str | None = None) -> AlertRule:
        """The rule of a desk (``device``), or of the site as a whole (``device`` None)."""
        if device is not None and (site, device) in self.desks:
            return self.desks[(site, device)]
        return self.sites.get(site, self.default)

    def scope_of(self, site: str) -> AlertScope:
        """Where the unhappy-answers rule looks at ``site``."""
        return self.site_scopes.get(site, self.scope)


@dataclass(frozen=True, slots=True)
class MailConfig:
    """``[mail]``: the SMTP server central sends e-mail through (alerts, reports). ``host`` None: no e-mail.

    Attributes:
        host: the SMTP server.
        port: its port (default 587 for starttls, 465 for ssl, 25 for none).
        sender: the ``From`` address (``mail.from``).
        security: ``starttls`` (default), ``ssl`` or ``none``.
        user: the login name; None: no login.
        password: the login's password (from ``mail.password_file``).
        timeout_s: how long a connection may take.
    """

    host: str | None = None
    port: int = 587
    sender: str = "deskpulse@localhost"
    security: MailSecurity = "starttls"
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout_s: float = 20.0

    @property
    def configured(self) -> bool:
        return self.host is not None


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
        origins: origins (``https://dash.example``) besides the request's own
            ``Host`` that may send state-changing requests (a reverse proxy
            that rewrites ``Host``).
        secret_file: the session secret (``web.secret_file``); None: see
            :attr:`session_secret_path`.
        ingest: batching of the collector's commits.
        sites: the sites the file names (time zone, hours, desks); others get defaults.
        dashboard: index minimum, flagged default, accounts, wall-TV tokens.
        fleet: the broker administrator and what provisioning files say.
        alerts: alert rules and where alerts go (``[alerts]``).
        mail: the SMTP server (``[mail]``).
        source: where the configuration came from (for messages).
    """

    broker: BrokerSettings = BrokerSettings()
    client_id: str = field(default_factory=default_client_id)
    group: str = DEFAULT_GROUP
    database_url: str = DEFAULT_DB
    bind_host: str = "127.0.0.1"
    bind_port: int = 8080
    origins: tuple[str, ...] = ()
    secret_file: Path | None = None
    ingest: IngestConfig = IngestConfig()
    sites: MappingProxyType[str, SiteConfig] = field(default_factory=lambda: MappingProxyType({}))
    dashboard: DashboardConfig = DashboardConfig()
    fleet: FleetConfig = FleetConfig()
    alerts: AlertsConfig = AlertsConfig()
    mail: MailConfig = MailConfig()
    source: str = "<defaults>"

    def site(self, slug: str) -> SiteConfig:
        """The site's configuration; a site not in the file is UTC, always open, named by its slug."""
        return self.sites.get(slug) or SiteConfig(slug=slug, name=slug)

    @property
    def dashboard_url(self) -> str:
        """The dashboard's address as a browser on this machine reaches it."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.bind_host, self.bind_host)
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.bind_port}/"

    @property
    def loopback_only(self) -> bool:
        """Whether the web server listens on a loopback address only (127.0.0.0/8, ::1, localhost)."""
        if self.bind_host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.bind_host).is_loopback
        except ValueError:
            return False  # a host name: it may resolve to anything

    def check_open(self, *, store_accounts: bool = False) -> None:
        """Refuse to serve everyone by accident: no accounts on a non-loopback address needs ``dashboard.open``.

        Args:
            store_accounts: whether the database holds accounts (``deskpulse-central user add``).

        Raises:
            ConfigError: no account at all, ``web.bind`` (or ``--bind``) is not a
                loopback address, and ``dashboard.open = true`` is not set.
        """
        if not (self.dashboard.accounts or store_accounts or self.dashboard.open or self.loopback_only):
            raise ConfigError(
                f"{self.source}: web.bind {self.bind_host}:{self.bind_port} is reachable from other machines and "
                "there are no accounts, so anyone could read every answer; add one ('deskpulse-central user add "
                "NAME --role admin'), bind to 127.0.0.1, or set dashboard.open = true to serve it open on purpose")

    @property
    def session_secret_path(self) -> Path:
        """Where the session secret is: ``web.secret_file``, else ``central-secret`` next to a SQLite
        database, else ``/var/lib/deskpulse/central-secret``."""
        if self.secret_file is not None:
            return self.secret_file
        url = make_url(self.database_url)
        if url.drivername.startswith("sqlite") and url.database:
            return Path(url.database).parent / "central-secret"
        return DEFAULT_SECRET

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
    names = ("broker", "database", "web", "ingest", "sites", "dashboard", "fleet", "alerts", "mail")
    top = TableReader(source, data, "", set(names))
    tables = {name: top.get(name, dict, {}) for name in names}

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

    web = TableReader(source, tables["web"], "web.", {"bind", "origins", "secret_file"})
    host, port = parse_bind(web.get("bind", str, DEFAULT_BIND), f"{source}: web.bind")
    origins = _origins(web, web.get("origins", list, []))
    secret_file = web.path("secret_file", base, None)

    ing = TableReader(source, tables["ingest"], "ingest.",
                      {"batch_size", "batch_ms", "dead_letters_max_mb", "dead_letters_max_days"})
    ingest = IngestConfig(
        batch_size=_integer(ing, "batch_size", 200, 1, 10_000),
        batch_ms=_integer(ing, "batch_ms", 100, 1, 60_000),
        dead_letters_max_mb=_integer(ing, "dead_letters_max_mb", 64, 1, 1_000_000),
        dead_letters_max_days=_integer(ing, "dead_letters_max_days", 30, 1, 3650),
    )
    sites = {slug: _site(source, slug, table) for slug, table in tables["sites"].items()}
    dashboard = _dashboard(source, tables["dashboard"], sites)
    fleet = _fleet(source, tables["fleet"], base)
    mail = _mail(source, tables["mail"], base)
    alerts = _alerts(source, tables["alerts"], mail)
    return CentralConfig(broker=broker, client_id=client_id, group=group, database_url=url,
                         bind_host=host, bind_port=port, origins=origins, secret_file=secret_file, ingest=ingest,
                         sites=MappingProxyType(sites), dashboard=dashboard, fleet=fleet, alerts=alerts, mail=mail,
                         source=source)


def _rule(reader: TableReader, base: AlertRule) -> AlertRule:
    """``base`` with the rule keys ``reader``'s table sets."""
    return AlertRule(
        enabled=reader.get("enabled", bool, base.enabled),
        unhappy_pct=_integer(reader, "unhappy_pct", base.unhappy_pct, 1, 100),
        window_min=_integer(reader, "window_min", base.window_min, 1, 24 * 60),
        min_answers=_integer(reader, "min_answers", base.min_answers, 1, 100_000),
        offline_min=_integer(reader, "offline_min", base.offline_min, 0, 7 * 24 * 60),
        backlog_min=_integer(reader, "backlog_min", base.backlog_min, 0, 7 * 24 * 60),
        test_mode_min=_integer(reader, "test_mode_min", base.test_mode_min, 0, 7 * 24 * 60),
        refused_survey=reader.get("refused_survey", bool, base.refused_survey),
    )


def _scope(reader: TableReader, default: str) -> AlertScope:
    scope = reader.get("scope", str, default)
    if scope not in _ALERT_SCOPES:
        raise reader.fail("scope", f"must be one of {', '.join(_ALERT_SCOPES)}, got {scope!r}")
    found: AlertScope = scope
    return found


def _alerts(source: str, table: dict[str, Any], mail: MailConfig) -> AlertsConfig:
    r = TableReader(source, table, "alerts.", _RULE_KEYS | {"scope", "late_after_min", "check_every_s", "email_to",
                                                            "webhook", "sites"})
    default = _rule(r, AlertRule())
    scope = _scope(r, "desk")
    emails: list[str] = []
    for value in r.get("email_to", list, []):
        if not isinstance(value, str) or not _ADDRESS_RE.fullmatch(value.strip()):
            raise r.fail("email_to", f"each must be an e-mail address like manager@example.com, got {value!r}")
        emails.append(value.strip())
    if emails and not mail.configured:
        raise r.fail("email_to", "names recipients but there is no [mail] table with the SMTP server's host")
    w = TableReader(source, r.get("webhook", dict, {}), "alerts.webhook.", {"url", "timeout_s", "max_attempts"})
    url = w.get("url", str, None)
    if url is not None and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
        raise w.fail("url", f"must be an http:// or https:// address, got {url!r}")
    webhook = WebhookConfig(url=url, timeout_s=w.number("timeout_s", 10.0, 0.5, 300.0),
                            max_attempts=_integer(w, "max_attempts", 10, 1, 1000))
    sites: dict[str, AlertRule] = {}
    scopes: dict[str, AlertScope] = {}
    desks: dict[tuple[str, str], AlertRule] = {}
    for slug, site_table in r.get("sites", dict, {}).items():
        where = f"alerts.sites.{slug}"
        if not SLUG_RE.fullmatch(slug):
            raise ConfigError(f"{source}: {where}: a site slug is 1 to 64 of a-z, 0-9 and '-'")
        if not isinstance(site_table, dict):
            raise ConfigError(f"{source}: {where} must be a table, got {type(site_table).__name__}")
        s = TableReader(source, site_table, where + ".", _RULE_KEYS | {"scope", "desks"})
        sites[slug] = _rule(s, default)
        if "scope" in site_table:
            scopes[slug] = _scope(s, scope)
        for desk, desk_table in s.get("desks", dict, {}).items():
            desk_where = f"{where}.desks.{desk}"
            if not SLUG_RE.fullmatch(desk):
                raise ConfigError(f"{source}: {desk_where}: a desk slug is 1 to 64 of a-z, 0-9 and '-'")
            if not isinstance(desk_table, dict):
                raise ConfigError(f"{source}: {desk_where} must be a table, got {type(desk_table).__name__}")
            desks[(slug, desk)] = _rule(TableReader(source, desk_table, desk_where + ".", _RULE_KEYS), sites[slug])
    return AlertsConfig(
        default=default, scope=scope, sites=MappingProxyType(sites), site_scopes=MappingProxyType(scopes),
        desks=MappingProxyType(desks),
        late_after_min=_integer(r, "late_after_min", 15, 1, 7 * 24 * 60),
        check_every_s=r.number("check_every_s", 30.0, 0.05, 3600.0),
        email_to=tuple(emails), webhook=webhook)


def _mail(source: str, table: dict[str, Any], base: Path) -> MailConfig:
    r = TableReader(source, table, "mail.", {"host", "port", "from", "security", "user", "password_file",
                                             "timeout_s"})
    host = r.get("host", str, None)
    if host is None:
        if table:
            raise r.fail("host", "is missing: name the SMTP server (or remove the [mail] table)")
        return MailConfig()
    if not host.strip() or any(c.isspace() for c in host):
        raise r.fail("host", f"must be a host name or address, got {host!r}")
    security = r.get("security", str, "starttls")
    if security not in _MAIL_SECURITY:
        raise r.fail("security", f"must be one of {', '.join(_MAIL_SECURITY)}, got {security!r}")
    port = _integer(r, "port", {"starttls": 587, "ssl": 465, "none": 25}[security], 1, 65535)
    sender = r.get("from", str, "deskpulse@localhost")
    if not _ADDRESS_RE.fullmatch(sender.rsplit("<", 1)[-1].rstrip(">").strip()):
        raise r.fail("from", f"must be an e-mail address (or 'Name <address>'), got {sender!r}")
    user = r.get("user", str, None)
    password = _secret_file(r, "password_file", base)
    if (user is None) != (password is None):
        raise r.fail("user", "and mail.password_file go together: give both or neither")
    return MailConfig(host=host, port=port, sender=sender, security=security, user=user, password=password,
                      timeout_s=r.number("timeout_s", 20.0, 0.5, 300.0))


def _secret_file(r: TableReader, key: str, base: Path) -> str | None:
    """The password in the file ``key`` names (stripped), or None without one; an unreadable or empty file fails."""
    path = r.path(key, base, None)
    if path is None:
        return None
    try:
        secret = path.read_text("utf-8").strip()
    except OSError as exc:
        raise r.fail(key, f"cannot be read: {exc}") from None
    if not secret:
        raise r.fail(key, f"{path} is empty")
    return secret


def _fleet(source: str, table: dict[str, Any], base: Path) -> FleetConfig:
    r = TableReader(source, table, "fleet.", {"admin_username", "admin_password_file", "device_broker_url",
                                              "device_ca_file"})
    admin = r.get("admin_username", str, "deskpulse-admin")
    if not _CLIENT_ID_RE.fullmatch(admin):
        raise r.fail("admin_username", f"must be 1 to 128 of A-Z, a-z, 0-9 and . _ : -, got {admin!r}")
    password = _secret_file(r, "admin_password_file", base)
    url = r.get("device_broker_url", str, None)
    if url is not None:
        parse_broker_url(url, where=f"{source}: fleet.device_broker_url")
    return FleetConfig(admin_username=admin, admin_password=password, device_broker_url=url,
                       device_ca_file=r.path("device_ca_file", base, None))


_ORIGIN_RE = re.compile(r"https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


def _origins(reader: TableReader, values: list[Any]) -> tuple[str, ...]:
    """``web.origins``: each ``scheme://host[:port]``, nothing after it, lower-cased."""
    out: list[str] = []
    for value in values:
        if not isinstance(value, str) or not _ORIGIN_RE.fullmatch(value):
            raise reader.fail("origins", f"each must be an origin like https://dash.example or "
                                         f"http://10.0.0.5:8080 (no path, no trailing '/'), got {value!r}")
        out.append(value.lower())
    return tuple(out)


def _site(source: str, slug: str, table: Any) -> SiteConfig:
    where = f"sites.{slug}"
    if not SLUG_RE.fullmatch(slug):
        raise ConfigError(f"{source}: {where}: a site slug is 1 to 64 of a-z, 0-9 and '-' (as the kiosks send it)")
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: {where} must be a table, got {type(table).__name__}")
    r = TableReader(source, table, where + ".", {"name", "timezone", "hours", "desks", "target"})
    name = r.get("name", str, slug).strip() or slug
    zone = r.get("timezone", str, "UTC")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        near = sorted(z for z in available_timezones() if z.lower().endswith(zone.lower().rsplit("/", 1)[-1]))
        hint = f" (did you mean {near[0]}?)" if near else " (an IANA name like Europe/Berlin)"
        raise r.fail("timezone", f"is not a known time zone: {zone!r}{hint}") from None
    hours_table = r.get("hours", dict, None)
    hours = dict.fromkeys(range(7), ALL_DAY) if hours_table is None else _hours(source, where, hours_table)
    desks: dict[str, DeskConfig] = {}
    for desk_slug, desk_table in r.get("desks", dict, {}).items():
        desks[desk_slug] = _desk(source, f"{where}.desks.{desk_slug}", desk_slug, desk_table)
    target = r.get("target", (int, float), None)
    if target is not None and not 0 <= target <= 100:
        raise r.fail("target", f"must be an index from 0 to 100 (the dashboard's scale), got {target:g}")
    return SiteConfig(slug=slug, name=name, timezone=zone, hours=MappingProxyType(hours),
                      desks=MappingProxyType(desks), target=None if target is None else float(target))


def _hours(source: str, where: str, table: dict[str, Any]) -> dict[int, Hours]:
    """``default = "08:00-18:00"``, ``sat = "09:00-13:00"``, ``sun = "closed"``; a day not named takes the default."""
    r = TableReader(source, table, where + ".hours.", {"default", *WEEKDAYS})

    def parse(key: str, value: str) -> Hours:
        if value.strip().lower() == "closed":
            return None
        m = _HOURS_RE.fullmatch(value.strip())
        if not m:
            raise r.fail(key, f'must look like "08:00-18:00" or "closed", got {value!r}')
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2):
            raise r.fail(key, f"{value!r} is not a time of day (00:00 to 24:00)")
        opens, closes = time(h1, m1), time.max if h2 == 24 else time(h2, m2)
        if closes <= opens:
            raise r.fail(key, f"{value!r} closes before it opens (hours past midnight are not supported; "
                              'write "24:00" for midnight)')
        return (opens, closes)

    default = parse("default", r.get("default", str, "00:00-24:00"))
    return {day: parse(name, r.get(name, str, "")) if name in table else default
            for day, name in enumerate(WEEKDAYS)}


def _desk(source: str, where: str, slug: str, table: Any) -> DeskConfig:
    if not SLUG_RE.fullmatch(slug):
        raise ConfigError(f"{source}: {where}: a desk slug is 1 to 64 of a-z, 0-9 and '-' (the kiosk's device id)")
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: {where} must be a table, got {type(table).__name__}")
    r = TableReader(source, table, where + ".", {"name", "feed", "delay_min"})
    feed = r.get("feed", str, "live")
    if feed not in _FEED_MODES:
        raise r.fail("feed", f"must be one of {', '.join(_FEED_MODES)}, got {feed!r}")
    delay = _integer(r, "delay_min", 15 if feed == "delayed" else 0, 0, 7 * 24 * 60)
    if feed == "delayed" and delay == 0:
        raise r.fail("delay_min", 'must be at least 1 for feed = "delayed"')
    return DeskConfig(slug=slug, name=r.get("name", str, slug).strip() or slug, feed=feed, delay_min=delay)


def _dashboard(source: str, table: dict[str, Any], sites: dict[str, SiteConfig]) -> DashboardConfig:
    r = TableReader(source, table, "dashboard.",
                    {"min_answers", "rank_min_answers", "include_flagged", "accounts", "tv", "open"})
    accounts: dict[str, str] = {}
    for name, hashed in r.get("accounts", dict, {}).items():
        if not isinstance(hashed, str) or not hashed.startswith("$argon2"):
            raise ConfigError(f"{source}: dashboard.accounts.{name} must be an argon2 hash made by "
                              "'deskpulse-central hash-password' (never the password itself)")
        accounts[name] = hashed
    tokens: list[DisplayToken] = []
    for name, entry in r.get("tv", dict, {}).items():
        where = f"dashboard.tv.{name}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{source}: {where} must be a table with token and site")
        t = TableReader(source, entry, where + ".", {"token", "site", "device"})
        token = t.get("token", str, None)
        if token is None or len(token) < MIN_TOKEN_LENGTH or not token.isascii() or not token.isprintable() \
                or "/" in token or " " in token:
            raise t.fail("token", f"must be at least {MIN_TOKEN_LENGTH} printable ASCII characters without "
                                  "'/' or spaces ('deskpulse-central new-token' makes one)")
        if any(hmac.compare_digest(token, other.token) for other in tokens):
            raise t.fail("token", "is used by another TV; give each its own")
        site = t.get("site", str, None)
        if site is None or not SLUG_RE.fullmatch(site):
            raise t.fail("site", f"must name the site the TV shows (a slug), got {site!r}")
        device = t.get("device", str, None)
        if device is not None and not SLUG_RE.fullmatch(device):
            raise t.fail("device", f"must be a desk slug, got {device!r}")
        tokens.append(DisplayToken(name=name, token=token, site=site, device=device))
    min_answers = _integer(r, "min_answers", 5, 1, 1_000_000)
    rank_min_answers = _integer(r, "rank_min_answers", max(20, min_answers), 1, 1_000_000)
    if rank_min_answers < min_answers:
        raise r.fail("rank_min_answers", f"must be at least dashboard.min_answers ({min_answers}): a desk is "
                                         f"ranked by its index, shown from {min_answers} answers; "
                                         f"got {rank_min_answers}")
    return DashboardConfig(
        min_answers=min_answers,
        rank_min_answers=rank_min_answers,
        include_flagged=r.get("include_flagged", bool, False),
        accounts=MappingProxyType(accounts),
        tv=tuple(tokens),
        open=r.get("open", bool, False),
    )


def _integer(reader: TableReader, key: str, default: int, lo: int, hi: int) -> int:
    value: int = reader.get(key, int, default)
    if not lo <= value <= hi:
        raise reader.fail(key, f"must be between {lo} and {hi}, got {value}")
    return value

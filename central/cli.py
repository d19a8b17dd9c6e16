"""``deskpulse-central``: ingest feedback from MQTT and serve the live page, in one process.

The entry point only wires the parts together: the configuration
(:mod:`central.config`), the store and its migrations (:mod:`central.store`),
the collector thread (:mod:`central.ingest`), the alert threads
(:mod:`central.notify`) and the web app
(:mod:`central.web`) on uvicorn, on a thread of its own. The main thread
handles SIGTERM and Ctrl-C and stops both cleanly.
"""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from central import __version__
from central.config import DEFAULT_PATH, CentralConfig, load
from central.faults import Faults
from sync.errors import DeskPulseError

if TYPE_CHECKING:
    from central.accounts import Accounts
    from central.store import Store

log = logging.getLogger("deskpulse.central")

EPILOG = f"""\
commands:
  run            migrate the database, then collect feedback, raise alerts and serve the
                 web page (default)
  migrate        create or upgrade the database schema, then exit
  rebuild-rollups
                 count every site's answers per desk and local day anew (the dashboard's
                 numbers), then exit; run does it by itself for a site that needs it
  check-config   validate the configuration file, then exit
  hash-password  read a password (asked twice, or one line on stdin) and print its argon2
                 hash for [dashboard.accounts]
  new-token      print a new random display token for [dashboard.tv.<name>]
  device add|remove|list
                 kiosks' broker credentials on Mosquitto's dynamic-security plugin
                 (deskpulse-central device --help)
  broker init|setup
                 the plugin's first file; the collectors' and dashboard's clients
                 (deskpulse-central broker --help)
  weekly-report --site SITE [--week YYYY-Www] --out FILE
                 write a site's weekly report as HTML, the e-mail's (deskpulse-central
                 weekly-report --help)
  user add NAME [--role viewer|admin]   add a staff account to the database (password
                 asked twice, or one line on stdin; never an argument); default role viewer
  user passwd NAME   set a new password (ends that account's sessions)
  user role NAME --role viewer|admin   change the role (ends its sessions)
  user remove NAME   remove the account (ends its sessions)
  user list      list every account: name, role, and where it is kept (store | file)

examples:
  deskpulse-central --config /etc/deskpulse/central.toml
  deskpulse-central --broker mqtt://127.0.0.1:1883 --db sqlite:///central.sqlite3 --bind 127.0.0.1:8080
  deskpulse-central migrate --db postgresql://deskpulse@db.example/deskpulse
  deskpulse-central check-config --config central.toml
  deskpulse-central hash-password
  deskpulse-central user add manager --role admin --config /etc/deskpulse/central.toml

Without --config, {DEFAULT_PATH} is read if it exists; otherwise the defaults
apply (broker mqtt://127.0.0.1:1883, database sqlite:////var/lib/deskpulse/central.sqlite3,
web 127.0.0.1:8080). --broker, --db and --bind override the file. Every key is
described in docs/configuration.md.

When the web server listens, "Dashboard: http://HOST:PORT/" is printed on
standard output. Logs go to standard error (the journal, under systemd).
Without any account (in the database or [dashboard.accounts]), central serves
only a loopback address unless the file says [dashboard] open = true. Exit status: 0 done, 1 the database or
the web address failed, 2 a bad configuration or option.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deskpulse-central",
        usage="deskpulse-central [run | migrate | rebuild-rollups | check-config | hash-password | new-token"
              " | user …] [options]\n"
              "       deskpulse-central {device,broker,weekly-report} ...",
        description="DeskPulse central: stores every kiosk answer exactly once (from MQTT, with "
        "receipts to the kiosks) and shows staff a live web page.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", nargs="?", default="run", help=argparse.SUPPRESS,
                        choices=["run", "migrate", "rebuild-rollups", "check-config", "hash-password", "new-token",
                                 "user"])
    parser.add_argument("words", nargs="*", help=argparse.SUPPRESS)  # user's action and name
    parser.add_argument("--version", action="version", version=f"deskpulse-central {__version__}")
    parser.add_argument("-c", "--config", type=Path, default=None, metavar="FILE",
                        help=f"central TOML file (default: {DEFAULT_PATH} if it exists)")
    parser.add_argument("--broker", metavar="URL", help="MQTT broker: mqtt://host:port or mqtts://host:port")
    parser.add_argument("--db", metavar="URL",
                        help="database: sqlite:///path/central.sqlite3 or postgresql://user@host/dbname")
    parser.add_argument("--bind", metavar="HOST:PORT", help="the web server's address (default 127.0.0.1:8080)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                        help="how much to log on stderr (default: info)")
    parser.add_argument("--role", choices=["viewer", "admin"], default=None,
                        help="user add / user role: the account's role (add's default: viewer)")
    # For DeskPulse's own crash tests only (tests/test_sync_faults.py): SIGKILL central at a named
    # point (central/faults.py). Left out of --help so nobody arms it by accident.
    parser.add_argument("--fault-point", type=_faults, default=None, metavar="NAME[:N]", help=argparse.SUPPRESS)
    # For bench/ingest.py only: store answers without the rollups, to measure what they cost
    # (Store.leave_rollups: the dashboard then counts every answer until the next ordinary start).
    parser.add_argument("--without-rollups", action="store_true", help=argparse.SUPPRESS)
    return parser


def _faults(spec: str) -> Faults:
    try:
        return Faults.parse(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _config(args: argparse.Namespace) -> CentralConfig:
    if args.config is not None:
        config = load(args.config)
    elif args.command == "check-config" or DEFAULT_PATH.exists():
        config = load(DEFAULT_PATH)
    else:
        config = CentralConfig()
    return config.with_overrides(broker=args.broker, db=args.db, bind=args.bind)


def _store_has_accounts(config: CentralConfig) -> bool:
    """Whether the database already holds accounts (for check-config; False when it cannot be read)."""
    from sqlalchemy.exc import SQLAlchemyError

    from central.accounts import Accounts
    from central.store import Store

    try:
        with Store(config.database_url) as store:
            return store.revision() is not None and Accounts(store).any()
    except (SQLAlchemyError, OSError):
        return False


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``deskpulse-central``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["device"], ["broker"]):
        from central import fleet

        return fleet.main(argv)
    if argv[:1] == ["weekly-report"]:
        from central import report

        return report.main(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    if args.words and args.command != "user":
        parser.error(f"unexpected {' '.join(args.words)!r} after {args.command}")
    if args.command in ("hash-password", "new-token"):
        return _secret(args.command)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.log_level != "debug":
        logging.getLogger("alembic").setLevel(logging.WARNING)  # its INFO lists plugins; ours says the revision
    try:
        config = _config(args)
    except DeskPulseError as exc:
        print(f"deskpulse-central: {exc}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        try:
            config.check_open(store_accounts=_store_has_accounts(config))
        except DeskPulseError as exc:
            print(f"deskpulse-central: {exc}", file=sys.stderr)
            return 2
        print(f"{config.source}: ok (broker {config.broker.url}, database {config.safe_database_url}, "
              f"web {config.dashboard_url})")
        return 0

    from sqlalchemy.exc import SQLAlchemyError

    from central.store import Store

    try:
        store = Store(config.database_url)
        store.migrate()
        store.zones = lambda slug: config.site(slug).timezone  # local days in the rollups
        if args.command == "rebuild-rollups":
            counted = store.rebuild_rollups(progress=lambda site, n: print(f"{site}: {n} answers counted"))
            print(f"rollups rebuilt for {len(counted)} sites ({sum(counted.values())} answers)")
            store.close()
            return 0
    except (SQLAlchemyError, OSError) as exc:
        print(f"deskpulse-central: database {config.safe_database_url}: {exc}", file=sys.stderr)
        return 1
    if args.command == "migrate":
        store.close()
        return 0
    from central.accounts import Accounts

    accounts = Accounts(store, config.dashboard.accounts)
    if args.command == "user":
        try:
            return _user(args.words, args.role, accounts)
        finally:
            store.close()
    try:
        config.check_open(store_accounts=accounts.any())
        secret = _session_secret(config, accounts.any())
    except DeskPulseError as exc:
        print(f"deskpulse-central: {exc}", file=sys.stderr)
        store.close()
        return 2
    try:
        if args.without_rollups:
            log.warning("storing answers without the rollups (a benchmark option): the dashboard counts every "
                        "answer until central starts without it")
            store.leave_rollups()
        else:
            _refresh_rollups(store)
    except SQLAlchemyError as exc:
        print(f"deskpulse-central: database {config.safe_database_url}: {exc}", file=sys.stderr)
        store.close()
        return 1
    try:
        return serve(config, store, log_level=args.log_level, faults=args.fault_point, secret=secret)
    finally:
        store.close()


def _session_secret(config: CentralConfig, accounts: bool) -> bytes | None:
    """The session secret from ``web.secret_file`` (made on first start) when anyone can sign in; else None
    (a random key for this run: the first account added while central runs gets sessions until a restart)."""
    if not accounts:
        return None
    from central.sessions import load_secret

    return load_secret(config.session_secret_path)


USER_USAGE = "deskpulse-central user add NAME [--role viewer|admin] | passwd NAME | role NAME --role R | " \
             "remove NAME | list"


def _user(words: list[str], role: str | None, accounts: Accounts) -> int:
    """``user add|passwd|role|remove|list``: manage the store's accounts; a password is read, never an argument."""
    from central import auth
    from central.accounts import AccountError, check_name, check_password

    action, names = (words[0], words[1:]) if words else ("", [])
    try:
        if action == "list" and not names:
            for account in accounts.all():
                print(f"{account.name}\t{account.role}\t{account.source}")
            return 0
        if action not in ("add", "passwd", "role", "remove") or len(names) != 1:
            print(f"deskpulse-central: usage: {USER_USAGE}", file=sys.stderr)
            return 2
        name = check_name(names[0])
        if action == "remove":
            accounts.remove(name)
            print(f"removed {name}; their sessions ended")
        elif action == "role":
            accounts.set_role(name, role or "")
            print(f"{name} is now {role}; their sessions ended")
        else:
            if action == "add" and accounts.get(name) is not None:
                raise AccountError(f"account {name!r} exists already")
            password = _read_password()
            if password is None:
                return 2
            hashed = auth.hash_password(check_password(password))
            if action == "add":
                accounts.add(name, hashed, role or "viewer")
                print(f"added {name} ({role or 'viewer'})")
            else:
                accounts.set_password(name, hashed)
                print(f"new password for {name}; their sessions ended")
        return 0
    except AccountError as exc:
        print(f"deskpulse-central: {exc}", file=sys.stderr)
        return 2


def _read_password() -> str | None:
    """A password asked twice on a terminal, or the first line of standard input; None when the two differ."""
    if sys.stdin.isatty():
        import getpass

        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Again: "):
            print("deskpulse-central: the two passwords differ; nothing changed", file=sys.stderr)
            return None
        return password
    return sys.stdin.readline().rstrip("\r\n")


def _secret(command: str) -> int:
    from central import auth

    if command == "new-token":
        print(auth.new_token())
        return 0
    password = _read_password()
    if password is None:
        return 2
    if len(password) < 10:
        print("deskpulse-central: use a password of at least 10 characters", file=sys.stderr)
        return 2
    print(auth.hash_password(password))
    return 0


def _refresh_rollups(store: Store) -> None:
    """Count the answers of sites whose rollups are missing (an upgraded store) or in another zone."""
    stale = store.stale_rollups()
    if not stale:
        return
    log.warning("counting the answers of %d sites per desk and local day (%s): the dashboard reads them from "
                "the answers themselves until this is done", len(stale), ", ".join(stale))
    store.rebuild_rollups(stale, progress=lambda site, n: log.info("rollups of %s: %d answers counted", site, n))


def serve(config: CentralConfig, store: Store, *, log_level: str = "info", faults: Faults | None = None,
          secret: bytes | None = None) -> int:
    """Run the web server and the collector until SIGTERM or Ctrl-C.

    The collector starts once the web server listens, so central announces
    itself online only when its dashboard answers too.

    Args:
        config: central's configuration.
        store: the migrated store.
        log_level: uvicorn's log level.
        faults: fault points armed for a crash test (``--fault-point``); None in production.
        secret: the session secret (``web.secret_file``); None: a random one for this run.

    Returns:
        0 after a clean stop; 1 when the web server could not start or died.
    """
    import uvicorn

    from central.ingest import Collector
    from central.notify import AlertService
    from central.web import create_app

    stop = threading.Event()
    restore = _handle_signals(lambda: stop.set())
    shutdown = threading.Event()
    server = uvicorn.Server(uvicorn.Config(
        create_app(store, config, shutdown=shutdown, secret=secret), host=config.bind_host, port=config.bind_port,
        log_level=log_level, log_config=None, access_log=log_level == "debug",
        timeout_graceful_shutdown=5,
    ))
    # On a thread of its own, uvicorn installs no signal handlers: ours stay in charge.
    web = threading.Thread(target=server.run, name="deskpulse-web", daemon=True)
    web.start()
    collector: Collector | None = None
    alerting: AlertService | None = None
    status = 0
    try:
        while not server.started and web.is_alive() and not stop.wait(0.05):
            pass
        if not server.started:
            if not stop.is_set():
                print(f"deskpulse-central: the web server could not listen on {config.bind_host}:"
                      f"{config.bind_port} (see the log above)", file=sys.stderr)
                status = 1
            return status
        print(f"Dashboard: {config.dashboard_url}", flush=True)
        if not config.dashboard.accounts and not config.loopback_only:
            log.warning("the dashboard is open to anyone who reaches %s (dashboard.open = true, no accounts): "
                        "every page says so", config.dashboard_url)
        log.info("dashboard at %s; database %s; broker %s", config.dashboard_url, config.safe_database_url,
                 config.broker.url)
        if faults:
            log.warning("fault points armed (a test option): %r; central will SIGKILL itself there", faults)
        # What start-up made (the app, its templates, SQLAlchemy's caches) lives as long as the process:
        # kept out of the garbage collector's full passes, which otherwise walk it while ingest runs
        # (about a tenth of a collector's time under load, measured by bench.ingest).
        gc.collect()
        gc.freeze()
        collector = Collector(config, store, faults=faults).start()
        alerting = AlertService(config, store).start()
        while not stop.wait(0.5):
            if not web.is_alive():
                print("deskpulse-central: the web server stopped unexpectedly", file=sys.stderr)
                status = 1
                break
        log.info("stopping")
        return status
    finally:
        shutdown.set()  # ends open event streams, so uvicorn need not wait for browsers
        server.should_exit = True
        if alerting is not None:
            alerting.stop()
        if collector is not None:
            collector.stop()
        web.join(10)
        restore()


def _handle_signals(callback: Callable[[], None]) -> Callable[[], None]:
    """Call ``callback`` on SIGTERM and SIGINT; returns a function restoring the old handlers.

    A SIGINT that is ignored (a parent such as ``make demo`` wants Ctrl-C for
    itself) stays ignored. Outside the main thread nothing is installed.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: FrameType | None) -> None:
        log.info("received %s", signal.Signals(signum).name)
        callback()

    previous: dict[int, Any] = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        if sig == signal.SIGINT and signal.getsignal(sig) == signal.SIG_IGN:
            continue
        previous[sig] = signal.signal(sig, handler)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


if __name__ == "__main__":
    sys.exit(main())

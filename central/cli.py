"""``deskpulse-central``: ingest feedback from MQTT and serve the live page, in one process."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from types import FrameType

from central import __version__
from central.config import DEFAULT_PATH, CentralConfig, load
from sync.errors import DeskPulseError

EPILOG = f"""\
commands:
  (none)         migrate the database, then collect feedback and serve the web page
  migrate        create or upgrade the database schema and exit
  check-config   validate the configuration file and exit

examples:
  deskpulse-central                                   use {DEFAULT_PATH}
  deskpulse-central --broker mqtt://127.0.0.1:1883 --db sqlite:///central.sqlite3 --bind 127.0.0.1:8080
  deskpulse-central --db postgresql://deskpulse@db.example/deskpulse migrate

Without --config, {DEFAULT_PATH} is read if it exists; otherwise the defaults
apply (broker mqtt://127.0.0.1:1883, sqlite:///central.sqlite3, 127.0.0.1:8080).
Command-line options override the file. Every key: docs/configuration.md.
Logs go to stderr (the journal, under systemd).
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deskpulse-central",
        usage="deskpulse-central [options] [run | migrate | check-config]",
        description="DeskPulse central: stores every kiosk answer exactly once (from MQTT) and "
        "shows staff a live web page.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", nargs="?", choices=["run", "migrate", "check-config"], default="run",
                        help=argparse.SUPPRESS)
    parser.add_argument("--version", action="version", version=f"deskpulse-central {__version__}")
    parser.add_argument("-c", "--config", type=Path, default=None,
                        help=f"central TOML file (default: {DEFAULT_PATH} if it exists)")
    parser.add_argument("--broker", metavar="URL", help="MQTT broker, mqtt://host:port or mqtts://host:port")
    parser.add_argument("--db", metavar="URL", help="database, sqlite:///path or postgresql://user@host/db")
    parser.add_argument("--bind", metavar="HOST:PORT", help="web address (default 127.0.0.1:8080)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser


def _config(args: argparse.Namespace) -> CentralConfig:
    if args.config is not None:
        config = load(args.config)
    elif DEFAULT_PATH.exists():
        config = load(DEFAULT_PATH)
    else:
        config = CentralConfig()
    return config.with_overrides(broker=args.broker, db=args.db, bind=args.bind)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``deskpulse-central``."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        config = _config(args)
        if args.command == "check-config":
            print(f"{config.source}: ok (broker {config.broker.url}, database {_safe(config.database_url)}, "
                  f"web {config.dashboard_url})")
            return 0
        from central.store import Store

        store = Store(config.database_url)
        revision = store.migrate()
        logging.getLogger("deskpulse.central").info("database %s at revision %s",
                                                    _safe(config.database_url), revision)
        if args.command == "migrate":
            return 0
        return serve(config, store)
    except DeskPulseError as exc:
        print(f"deskpulse-central: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a database that cannot be opened, a port in use
        if type(exc).__module__.startswith(("sqlalchemy", "alembic")):
            print(f"deskpulse-central: database {_safe(getattr(config, 'database_url', '?'))}: {exc}",
                  file=sys.stderr)
            return 1
        raise


def _safe(url: str) -> str:
    """A database URL without its password (for logs)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparsable url>"


def serve(config: CentralConfig, store: object) -> int:
    """Run the collector thread and the web server until SIGTERM or Ctrl-C."""
    import uvicorn

    from central.ingest import Collector
    from central.store import Store
    from central.web import create_app

    assert isinstance(store, Store)
    collector = Collector(config, store).start()
    server = uvicorn.Server(uvicorn.Config(create_app(store), host=config.bind_host, port=config.bind_port,
                                           log_level="warning", access_log=False))

    def stop(signum: int, frame: FrameType | None) -> None:
        server.should_exit = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    print(f"Dashboard: {config.dashboard_url}", flush=True)
    try:
        server.run()  # returns when should_exit is set (uvicorn leaves our handlers in place)
    finally:
        collector.stop()
        store.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not server.started:
        print(f"deskpulse-central: the web server could not start on {config.bind_host}:{config.bind_port}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Central's web app: the routers wired together.

One router per concern, each in its own module: sign-in and TV tokens
(:mod:`central.auth`), the JSON API and its live stream (:mod:`central.api`),
the CSV exports (:mod:`central.exports`), the dashboard's pages
(:mod:`central.pages`) and the weekly report's (:mod:`central.report`). They share the store, the configuration and the
stream settings through :mod:`central.deps` (a :class:`~central.deps.WebState`
set on ``app.state`` here, once), so none imports another. No CDN, no build
step. (FastAPI's /docs page would load Swagger UI from a CDN, so it is off; the
OpenAPI description is at /openapi.json.)
"""

from __future__ import annotations

import secrets
import threading
from pathlib import Path
from typing import Final

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from central import __version__, admin, alertsweb, api, auth, exports, pages, report, siteadmin
from central.accounts import Accounts
from central.config import CentralConfig
from central.deps import WebState
from central.sessions import Sessions
from central.sites import SiteBook
from central.store import Store
from central.throttle import Throttle
from central.tvtokens import TvTokens

STATIC_DIR: Final = Path(__file__).resolve().parent / "static"


def create_app(
    store: Store,
    config: CentralConfig | None = None,
    *,
    poll_s: float = 0.5,
    keepalive_s: float = 15.0,
    stream_idle_exit_s: float | None = None,
    shutdown: threading.Event | None = None,
    secret: bytes | None = None,
) -> FastAPI:
    """The web app over ``store``.

    Args:
        store: the store to read (migrated).
        config: sites, desks, dashboard settings (default: none configured).
        poll_s: how often an event stream looks for new events.
        keepalive_s: how often an idle stream sends a comment (keeps proxies
            from closing it).
        stream_idle_exit_s: for tests and scripts: end an event stream once it
            has been caught up with no new event for this long. None (the
            default) streams until the client goes away.
        shutdown: set it to end every open event stream (the server is
            stopping; browsers reconnect to the next one with Last-Event-ID).
        secret: the key sessions are kept under (``deskpulse-central`` reads
            it from ``web.secret_file``); None: a random one for this app alone.
    """
    config = config or CentralConfig()
    app = FastAPI(title="DeskPulse central", version=__version__,
                  description="Live customer feedback from DeskPulse kiosks.", docs_url=None, redoc_url=None)
    book = SiteBook(store, config)
    app.state.web = WebState(store=store, sites=book, poll_s=poll_s, keepalive_s=keepalive_s,
                             stream_idle_exit_s=stream_idle_exit_s, shutdown=shutdown or threading.Event())
    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    sessions = Sessions(store, secret or secrets.token_hex(32).encode())
    # The guard in front of every route below.
    accounts = Accounts(store, config.dashboard.accounts)
    auth.install(app, config.dashboard, sessions, Throttle(store), accounts, TvTokens(store, config.dashboard),
                 config.origins)
    for router in (auth.router, admin.router, siteadmin.router, alertsweb.router, api.router, exports.router,
                   pages.router, report.router):
        app.include_router(router)
    return app

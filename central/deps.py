"""What the web app's routers share, as FastAPI dependencies.

:func:`central.web.create_app` puts the parts on ``app.state`` once (a
:class:`WebState`); the routers (:mod:`central.api`, :mod:`central.pages`,
:mod:`central.exports`, :mod:`central.auth`) take them from there through the
functions below, so no router imports another or the module that wires them.
The dashboard's filters (:mod:`central.filters`) are read here for the JSON
API and the exports alike.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from fastapi import Query, Request
from fastapi.exceptions import RequestValidationError

from central import filters
from central.config import CentralConfig
from central.sites import SiteBook
from central.store import Store


@dataclass(frozen=True, slots=True)
class WebState:
    """The web app's parts, set once on ``app.state.web`` by :func:`central.web.create_app`.

    Args:
        store: the store to read (migrated).
        sites: central.toml with the sites page's changes on top; :attr:`config` is its
            current merged configuration (sites, desks, dashboard settings).
        poll_s: how often an event stream looks for new events.
        keepalive_s: how often an idle stream sends a comment.
        stream_idle_exit_s: end a caught-up, idle event stream after this
            long (tests and scripts); None streams until the client goes.
        shutdown: set when the server stops: every open event stream ends.
    """

    store: Store
    sites: SiteBook
    poll_s: float = 0.5
    keepalive_s: float = 15.0
    stream_idle_exit_s: float | None = None
    shutdown: threading.Event = field(default_factory=threading.Event)

    @property
    def config(self) -> CentralConfig:
        """Central's configuration as it is now (sites edited in the dashboard included)."""
        return self.sites.config()


def web_state(request: Request) -> WebState:
    """The app's :class:`WebState`."""
    state: WebState = request.app.state.web
    return state


def store(request: Request) -> Store:
    """The store the app reads."""
    return web_state(request).store


def config(request: Request) -> CentralConfig:
    """Central's configuration."""
    return web_state(request).config


def query_error(name: str, message: str) -> RequestValidationError:
    """A 422 in FastAPI's own shape (what the OpenAPI description promises), naming a query parameter."""
    return refused([filters.FilterError(name, message)])


def refused(errors: Iterable[filters.FilterError]) -> RequestValidationError:
    """A 422 naming every query parameter refused."""
    return RequestValidationError([{"loc": ("query", e.name), "msg": str(e), "type": "value_error"} for e in errors])


_SLUG_HELP: Final = "a slug: a-z, 0-9 and '-', 1 to 64; empty or missing: every "
_DATE_HELP: Final = (f"a local date at each site, YYYY-MM-DD, {filters.EARLIEST} to {filters.LATEST}; "
                     f"a range ends on or after it starts and spans at most {filters.MAX_DAYS} days")


def dashboard_filters(
    site: str | None = Query(None, description="only this site: " + _SLUG_HELP + "site"),
    device: str | None = Query(None, description="only this desk: " + _SLUG_HELP + "desk"),
    from_: str | None = Query(None, alias="from", description="first day: " + _DATE_HELP
                              + " (default: 29 days before `to`)"),
    to: str | None = Query(None, description="last day: " + _DATE_HELP + " (default: today at the site)"),
    flagged: str | None = Query(None, description="count flagged answers too: 1, true, yes, on or 0, false, no, "
                                                  "off (default: the config's dashboard.include_flagged)"),
) -> filters.Filters:
    """The dashboard's filters from the query (:func:`central.filters.parse`); a 422 naming any value refused."""
    found, errors = filters.parse({"site": site, "device": device, "from": from_, "to": to, "flagged": flagged})
    if errors:
        raise refused(errors)
    return found

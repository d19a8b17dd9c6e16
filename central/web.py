"""Central's web app: the JSON API, the live feed (server-sent events), and the wiring of the rest.

Everything reads the store, never a collector's memory: several collectors may
be writing. The live feed follows the store's ingest id (central/feed.py: per-desk
privacy, a cursor a reconnecting browser sends back as ``Last-Event-ID``).
The dashboard's pages are central/pages.py, sign-in and TV tokens
central/auth.py, the CSV exports central/exports.py. No CDN, no build step.
(FastAPI's /docs page would load Swagger UI from a CDN, so it is off; the
OpenAPI description is at /openapi.json.)
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final, Literal

import anyio.to_thread
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.responses import StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy.exc import SQLAlchemyError

from central import __version__, auth, deps, exports, pages, reads, scores
from central.config import CentralConfig
from central.feed import Cursor, Feed
from central.filters import Filters
from central.store import Store
from sync import protocol

log = logging.getLogger("deskpulse.central.web")

STATIC_DIR: Final = Path(__file__).resolve().parent / "static"

#: A site or desk in a query: the protocol's slug.
SLUG_PATTERN: Final = protocol.SLUG_PATTERN

#: How many events one read of the stream or one page of the API returns at most.
STREAM_PAGE: Final = 200

class FeedbackEvent(BaseModel):
    """One stored answer: the protocol's fields as the device sent them, plus central's."""

    model_config = ConfigDict(populate_by_name=True)

    ingest_id: int = Field(description="central's monotonic id; the live feed's and the API's cursor")
    schema_: int = Field(alias="schema", description="payload schema version")
    id: str = Field(description="UUIDv7 made by the device; the deduplication key")
    site: str
    device: str
    epoch: str
    seq: int
    ts: str = Field(description="the device's UTC clock, ISO 8601")
    clock_synced: bool
    boot_id: str
    mono_ms: int
    rating: int = Field(description="1 (worst) to scale")
    scale: int
    reasons: list[str]
    lang: str
    source: str
    survey: int
    flags: list[str]
    received_at: str = Field(description="when central stored it, ISO 8601 UTC")
    placed_at: str = Field(description="when the answer was given, as central places it, ISO 8601 UTC "
                                       "(see time_source)")
    time_source: Literal["device", "retimed", "received"] = Field(
        description="how placed_at was found: the device's synchronised clock, re-timed from a later "
                    "synchronised answer of the same boot, or central's receipt time")


class Gap(BaseModel):
    """Answers a device numbered but central has not stored: seq ``first`` to ``last``, both missing."""

    epoch: str = Field(description="the device outbox's epoch; seq counts from 1 in each")
    first: int
    last: int


class DeviceHealth(BaseModel):
    """A device's latest status (retained status or last will) and its gaps."""

    site: str
    device: str
    state: Literal["online", "offline"] | None = Field(
        description="from the device's status; offline from its last will; null if it never sent one")
    last_seen: str | None = Field(description="when central last received its status, ISO 8601 UTC")
    status_ts: str | None = Field(description="the status's own ts (the device's clock)")
    version: str | None
    backlog: int | None = Field(description="answers the device holds not yet confirmed by central")
    oldest_pending_age_s: float | None
    clock_synced: bool | None
    last_error: str | None
    config_error: dict[str, Any] | None = Field(description="the remote configuration the device refused, "
                                                            "with the reason")
    health: dict[str, Any] | None = Field(description="the status's whole health object")
    gaps: list[Gap] = Field(description="missing seq ranges per epoch")


class Health(BaseModel):
    """Central answers and its store is readable."""

    ok: bool
    events: int


class DayScore(BaseModel):
    date: str = Field(description="a local date at the site(s), ISO 8601")
    counted: int
    index: float | None
    open: bool = Field(description="whether any site in view is open that weekday")


class WeekScore(BaseModel):
    week: str = Field(description="ISO week, e.g. 2026-W47")
    start: str = Field(description="its Monday")
    counted: int
    index: float | None


class HeatCell(BaseModel):
    hour: int
    counted: int
    index: float | None
    open: bool


class Heatmap(BaseModel):
    hours: list[int] = Field(description="local hours shown: the opening hours, and any other with answers")
    cells: list[list[HeatCell]] = Field(description="seven rows, Monday first, one cell per hour in `hours`")


class ReasonCount(BaseModel):
    reason: str
    count: int


class TodayScore(BaseModel):
    """Today at each answer's own site (local date), whatever the date range."""

    total: int
    counted: int
    flagged: int
    index: float | None
    scale: int | None
    ratings: list[int]


class DeskScore(BaseModel):
    site: str
    device: str
    name: str
    site_name: str
    total: int
    counted: int
    flagged: int
    index: float | None
    today_counted: int
    today_index: float | None


class Aggregates(BaseModel):
    """The dashboard's numbers for one filter (docs/dashboard.md has the rules)."""

    formula: str
    min_answers: int = Field(description="no index below this many counted answers")
    include_flagged: bool
    timezone: str | None = Field(description="the site's time zone; null when several sites are in view "
                                             "(each answer in its own site's time)")
    start: str
    end: str
    total: int = Field(description="every answer in range, flagged ones included")
    counted: int = Field(description="the answers the scores count")
    flagged: int = Field(description="answers flagged rapid_repeat or test")
    index: float | None = Field(description="0 to 100; null below min_answers")
    scale: int | None = Field(description="the most common scale in range")
    ratings: list[int] = Field(description="counted answers per rating of `scale`, worst first")
    ratings_by_scale: dict[str, list[int]]
    reasons: list[ReasonCount]
    days: list[DayScore]
    weeks: list[WeekScore]
    heatmap: Heatmap
    today: TodayScore
    desks: list[DeskScore]


def sse_event(event: dict[str, Any], cursor: Cursor | str | None = None, kind: str = "feedback") -> str:
    """One server-sent event: ``kind`` with JSON data; ``cursor`` (default: its ingest id) as its id."""
    data = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    ident = event["ingest_id"] if cursor is None else cursor
    return f"id: {ident}\nevent: {kind}\ndata: {data}\n\n"


def create_app(
    store: Store,
    config: CentralConfig | None = None,
    *,
    poll_s: float = 0.5,
    keepalive_s: float = 15.0,
    stream_idle_exit_s: float | None = None,
    shutdown: threading.Event | None = None,
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
    """
    app = FastAPI(
        title="DeskPulse central",
        version=__version__,
        description="Live customer feedback from DeskPulse kiosks.",
        docs_url=None,
        redoc_url=None,
    )
    stopping = shutdown or threading.Event()
    config = config or CentralConfig()
    app.state.store = store
    app.state.config = config
    app.state.shutdown = stopping
    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    auth.install(app, config.dashboard)
    exports.install(app, store, config)

    @app.get("/healthz", response_model=Health)
    def healthz() -> dict[str, Any]:
        """Liveness: the store answers, and how many events it holds."""
        return {"ok": True, "events": reads.count_events(store)}

    @app.get("/api/events", response_model=list[FeedbackEvent])
    def api_events(
        after: int = Query(0, ge=0, le=2**63 - 1, description="return events with a larger ingest id"),
        limit: int = Query(100, ge=1, le=1000, description="at most this many"),
        site: str | None = Query(None, pattern=SLUG_PATTERN, description="only this site"),
        device: str | None = Query(None, pattern=SLUG_PATTERN, description="only this desk"),
        since: AwareDatetime | None = Query(None, description="placed at or after this ISO 8601 date-time "
                                                              "(with a zone)"),
        until: AwareDatetime | None = Query(None, description="placed before this ISO 8601 date-time "
                                                              "(with a zone)"),
        flagged: bool = Query(True, description="include answers flagged rapid_repeat or test"),
    ) -> list[dict[str, Any]]:
        """Stored feedback events in ingest order; page with ``after`` = the last ``ingest_id`` seen."""
        return reads.events(store, site=site, device=device, since=since, until=until, after=after,
                              limit=limit, include_flagged=flagged)

    @app.get("/api/aggregates", response_model=Aggregates)
    def api_aggregates(f: Filters = Depends(deps.dashboard_filters)) -> dict[str, Any]:
        """Index, counts, shares, reasons, trend, heatmap and desks for a site, desk and local date range."""
        return scores.aggregate(store, config, site=f.site, device=f.device, start=f.start, end=f.end,
                                include_flagged=f.flagged)

    @app.get("/api/devices", response_model=list[DeviceHealth])
    def api_devices(
        site: str | None = Query(None, pattern=SLUG_PATTERN, description="only this site"),
    ) -> list[dict[str, Any]]:
        """Every device with a status or a missing seq range: its health and its gaps."""
        return reads.device_health(store, site)

    @app.get(
        "/api/stream",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}},
                         "description": "`event: feedback` (data: a stored event) and `event: tick` (data: "
                                        "{site, device}: an answer at a desk whose feed is aggregated); "
                                        "`id:` is a cursor to resume from"}},
    )
    async def api_stream(
        request: Request,
        site: str | None = Query(None, pattern=SLUG_PATTERN, description="only this site"),
        device: str | None = Query(None, pattern=SLUG_PATTERN, description="only this desk"),
        after: str | None = Query(None, max_length=2000, pattern=r"^[0-9;:]+$",
                                  description="start after this cursor (an ingest id, or an `id:` this stream "
                                              "sent); default: now"),
        last_event_id: str | None = Header(None, description="sent by a reconnecting EventSource; wins over after"),
    ) -> StreamingResponse:
        """New answers as server-sent events, from ``Last-Event-ID`` or ``after`` on.

        Each desk's privacy mode applies (docs/dashboard.md): a delayed desk's
        answers come late, an aggregated desk's only as ``tick`` events.
        """
        return await feed_response(request, Feed(store, config, site=site, device=device),
                                   last_event_id if last_event_id is not None else after)

    async def feed_response(request: Request, feed: Feed, resume: str | None) -> StreamingResponse:
        cursor = Cursor.parse(resume) if resume else None
        if cursor is None:
            cursor = await anyio.to_thread.run_sync(feed.start)
        return StreamingResponse(_stream(request, feed, cursor), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    app.state.feed_response = feed_response  # the TV view's stream uses it too (central/pages.py)

    async def _stream(request: Request, feed: Feed, cursor: Cursor) -> AsyncIterator[str]:
        yield "retry: 2000\n\n"  # how long a browser waits before it reconnects
        last_sent = idle_since = time.monotonic()
        failing = False
        while not stopping.is_set():
            items: list[Any] = []
            try:
                items, cursor = await anyio.to_thread.run_sync(feed.poll, cursor, STREAM_PAGE)
                failing = False
            except SQLAlchemyError as exc:
                if not failing:
                    log.warning("live feed cannot read the store: %s", exc)
                failing = True
            for item in items:
                yield sse_event(item.data, item.cursor, item.kind)
            now = time.monotonic()
            if items:
                last_sent = idle_since = now
                if len(items) >= STREAM_PAGE:
                    continue  # catching up: no pause
            elif stream_idle_exit_s is not None and now - idle_since >= stream_idle_exit_s:
                return
            elif now - last_sent >= keepalive_s:
                yield ": keepalive\n\n"
                last_sent = now
            if await request.is_disconnected():
                return
            await asyncio.sleep(poll_s)

    pages.install(app, store, config)  # the dashboard: overview and the wall-TV view
    return app

"""Central's web app: a plain live page, a small JSON API and a server-sent event stream.

Everything reads the store, never a collector's memory: several collectors may
be writing. The live feed follows the store's ingest id; a browser that
reconnects sends ``Last-Event-ID`` and resumes after the last event it saw.
No CDN, no build step: the page is one server-rendered template with inline
CSS and a few lines of JavaScript. (FastAPI's /docs page would load Swagger UI
from a CDN, so it is off; the OpenAPI description is at /openapi.json.)
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
from fastapi import FastAPI, Header, Query, Request
from fastapi.responses import HTMLResponse, StreamingResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import SQLAlchemyError

from central import __version__
from central.store import Store

log = logging.getLogger("deskpulse.central.web")

TEMPLATES: Final = Jinja2Templates(directory=str(Path(__file__).resolve().parent / "templates"))

#: How many events one read of the stream or one page of the API returns at most.
STREAM_PAGE: Final = 200

#: Words for each rating, worst first, per scale (the dashboard's labels).
RATING_WORDS: Final[dict[int, tuple[str, ...]]] = {
    3: ("Bad", "OK", "Good"),
    4: ("Very bad", "Bad", "Good", "Very good"),
    5: ("Very bad", "Bad", "OK", "Good", "Very good"),
}


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


def sse_event(event: dict[str, Any]) -> str:
    """One feedback event as a server-sent event, its ingest id as the event id."""
    data = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    return f"id: {event['ingest_id']}\nevent: feedback\ndata: {data}\n\n"


def rating_level(rating: int, scale: int) -> int:
    """Map a rating on a 3-, 4- or 5-point scale to a 1..5 colour level."""
    return 1 + (rating - 1) * 4 // (scale - 1)


def rating_words(rating: int, scale: int) -> str:
    """The rating in words ("Good"), or "rating/scale" for an unknown scale."""
    words = RATING_WORDS.get(scale)
    return words[rating - 1] if words and 1 <= rating <= len(words) else f"{rating}/{scale}"


def create_app(
    store: Store,
    *,
    poll_s: float = 0.5,
    keepalive_s: float = 15.0,
    stream_idle_exit_s: float | None = None,
    shutdown: threading.Event | None = None,
) -> FastAPI:
    """The web app over ``store``.

    Args:
        store: the store to read (migrated).
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
    app.state.store = store
    app.state.shutdown = stopping

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index(request: Request) -> HTMLResponse:
        events = store.recent(50)
        return TEMPLATES.TemplateResponse(request, "index.html", {
            "events": events,
            "total": store.count_events(),
            "after": events[0]["ingest_id"] if events else 0,
            "version": __version__,
            "level": rating_level,
            "words": rating_words,
            "rating_words": {str(k): v for k, v in RATING_WORDS.items()},
        })

    @app.get("/healthz", response_model=Health)
    def healthz() -> dict[str, Any]:
        """Liveness: the store answers, and how many events it holds."""
        return {"ok": True, "events": store.count_events()}

    @app.get("/api/events", response_model=list[FeedbackEvent])
    def api_events(
        after: int = Query(0, ge=0, description="return events with a larger ingest id"),
        limit: int = Query(100, ge=1, le=1000, description="at most this many"),
    ) -> list[dict[str, Any]]:
        """Stored feedback events in ingest order; page with ``after`` = the last ``ingest_id`` seen."""
        return store.events_after(after, limit)

    @app.get("/api/devices", response_model=list[DeviceHealth])
    def api_devices(
        site: str | None = Query(None, pattern=r"^[a-z0-9-]{1,64}$", description="only this site"),
    ) -> list[dict[str, Any]]:
        """Every device with a status or a missing seq range: its health and its gaps."""
        known: dict[tuple[str, str], dict[str, Any]] = {}
        for row in store.device_rows(site):
            known[(row["site"], row["device"])] = {**row, "gaps": []}
        for gap in store.gaps(site):
            key = (gap["site"], gap["device"])
            if key not in known:  # answers with holes but no status yet
                known[key] = {"site": key[0], "device": key[1], "state": None, "last_seen": None,
                              "status_ts": None, "version": None, "backlog": None, "oldest_pending_age_s": None,
                              "clock_synced": None, "last_error": None, "config_error": None, "health": None,
                              "gaps": []}
            known[key]["gaps"].append({"epoch": gap["epoch"], "first": gap["first"], "last": gap["last"]})
        return [known[k] for k in sorted(known)]

    @app.get(
        "/api/stream",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}},
                         "description": "`event: feedback` messages; `id:` is the ingest id"}},
    )
    async def api_stream(
        request: Request,
        after: int | None = Query(None, ge=0, description="start after this ingest id (default: now)"),
        last_event_id: str | None = Header(None, description="sent by a reconnecting EventSource; wins over after"),
    ) -> StreamingResponse:
        """New feedback events as server-sent events, from ``Last-Event-ID`` or ``after`` on."""
        cursor = after
        if last_event_id is not None and last_event_id.strip().isdigit():
            cursor = int(last_event_id.strip())
        if cursor is None:
            cursor = await anyio.to_thread.run_sync(store.last_ingest_id)
        return StreamingResponse(_stream(request, cursor), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def _stream(request: Request, cursor: int) -> AsyncIterator[str]:
        yield "retry: 2000\n\n"  # how long a browser waits before it reconnects
        last_sent = idle_since = time.monotonic()
        failing = False
        while not stopping.is_set():
            try:
                events = await anyio.to_thread.run_sync(store.events_after, cursor, STREAM_PAGE)
                failing = False
            except SQLAlchemyError as exc:
                if not failing:
                    log.warning("live feed cannot read the store: %s", exc)
                failing, events = True, []
            for event in events:
                yield sse_event(event)
                cursor = event["ingest_id"]
            now = time.monotonic()
            if events:
                last_sent = idle_since = now
                if len(events) == STREAM_PAGE:
                    continue  # catching up: no pause
            elif stream_idle_exit_s is not None and now - idle_since >= stream_idle_exit_s:
                return
            elif now - last_sent >= keepalive_s:
                yield ": keepalive\n\n"
                last_sent = now
            if await request.is_disconnected():
                return
            await asyncio.sleep(poll_s)

    return app

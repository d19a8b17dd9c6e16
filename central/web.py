"""Central's web app: a plain live page, a JSON API and a server-sent event stream.

Everything reads the store, never a collector's memory: several collectors
may be writing. The live feed follows the store's ingest id; a browser that
reconnects sends ``Last-Event-ID`` and resumes after the last event it saw.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, StreamingResponse
from fastapi.templating import Jinja2Templates

from central import __version__
from central.store import Store

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def sse_event(event: dict[str, Any]) -> str:
    """One feedback event as a server-sent event with its ingest id."""
    return f"id: {event['ingest_id']}\nevent: feedback\ndata: {json.dumps(event, separators=(',', ':'))}\n\n"


def create_app(store: Store, *, poll_s: float = 0.5, keepalive_s: float = 15.0) -> FastAPI:
    """The web app over ``store``.

    Args:
        store: the store to read.
        poll_s: how often the event stream looks for new events.
        keepalive_s: how often an idle stream sends a comment (keeps proxies open).
    """
    app = FastAPI(
        title="DeskPulse central",
        version=__version__,
        description="Live customer feedback from DeskPulse kiosks.",
    )

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index(request: Request) -> HTMLResponse:
        events = store.recent(50)
        return TEMPLATES.TemplateResponse(request, "index.html", {
            "events": events,
            "total": store.count_events(),
            "last_id": max((e["ingest_id"] for e in events), default=0),
            "version": __version__,
        })

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        """Liveness: the store answers; how many events it holds."""
        return {"ok": True, "events": store.count_events()}

    @app.get("/api/events")
    def api_events(after: int = Query(0, ge=0, description="return events with a larger ingest id"),
                   limit: int = Query(100, ge=1, le=1000)) -> list[dict[str, Any]]:
        """Stored feedback events in ingest order (page with ``after``)."""
        return store.events_after(after, limit)

    @app.get("/api/stream", response_class=StreamingResponse,
             responses={200: {"content": {"text/event-stream": {}}}})
    async def api_stream(request: Request, after: int | None = Query(None, ge=0),
                         until_idle: bool = Query(False, description="end the stream once caught up "
                                                  "(for scripts and tests)")) -> StreamingResponse:
        """New feedback events as server-sent events; resumes after ``Last-Event-ID``."""
        cursor = after
        header = request.headers.get("last-event-id")
        if header and header.isdigit():
            cursor = int(header)
        if cursor is None:
            cursor = await asyncio.to_thread(_newest_id, store)

        async def stream(cursor: int) -> AsyncIterator[str]:
            yield "retry: 2000\n\n"
            idle = 0.0
            while True:
                events = await asyncio.to_thread(store.events_after, cursor, 200)
                for event in events:
                    yield sse_event(event)
                    cursor = event["ingest_id"]
                if len(events) == 200:
                    continue
                if until_idle and not events:
                    return
                if await request.is_disconnected():
                    return
                await asyncio.sleep(poll_s)
                idle = 0.0 if events else idle + poll_s
                if idle >= keepalive_s:
                    idle = 0.0
                    yield ": keepalive\n\n"

        return StreamingResponse(stream(cursor), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return app


def _newest_id(store: Store) -> int:
    recent = store.recent(1)
    return recent[0]["ingest_id"] if recent else 0

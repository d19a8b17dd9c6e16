"""The live feed as server-sent events: one response per open stream, polling the store.

:mod:`central.feed` decides what a viewer may see and when; this module
writes it as ``text/event-stream`` (each event's ``id:`` a cursor a
reconnecting browser sends back as ``Last-Event-ID``), sends keep-alive
comments, and ends when the client goes or the server stops. The JSON API's
``/api/stream`` and the wall-TV's ``/tv/{token}/stream`` both use it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, Final

import anyio.to_thread
from fastapi import Request
from fastapi.responses import StreamingResponse
from sqlalchemy.exc import SQLAlchemyError

from central.deps import WebState
from central.feed import Cursor, Feed

log = logging.getLogger("deskpulse.central.web")

#: How many events one read of the stream returns at most.
STREAM_PAGE: Final = 200


def sse_event(event: dict[str, Any], cursor: Cursor | str | None = None, kind: str = "feedback") -> str:
    """One server-sent event: ``kind`` with JSON data; ``cursor`` (default: its ingest id) as its id."""
    data = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    ident = event["ingest_id"] if cursor is None else cursor
    return f"id: {ident}\nevent: {kind}\ndata: {data}\n\n"


async def feed_response(request: Request, feed: Feed, resume: str | None, web: WebState) -> StreamingResponse:
    """The stream of ``feed`` from the cursor ``resume`` (default: now).

    Args:
        request: the request (its disconnection ends the stream).
        feed: what the viewer may see.
        resume: a cursor the stream sent before (``Last-Event-ID``), or None.
        web: the app's settings: how often to poll and send keep-alives, and
            the shutdown event.
    """
    cursor = Cursor.parse(resume) if resume else None
    if cursor is None:
        cursor = await anyio.to_thread.run_sync(feed.start)
    return StreamingResponse(_stream(request, feed, cursor, web), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _stream(request: Request, feed: Feed, cursor: Cursor, web: WebState) -> AsyncIterator[str]:
    yield "retry: 2000\n\n"  # how long a browser waits before it reconnects
    last_sent = idle_since = time.monotonic()
    failing = False
    while not web.shutdown.is_set():
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
        elif web.stream_idle_exit_s is not None and now - idle_since >= web.stream_idle_exit_s:
            return
        elif now - last_sent >= web.keepalive_s:
            yield ": keepalive\n\n"
            last_sent = now
        if await request.is_disconnected():
            return
        await asyncio.sleep(web.poll_s)

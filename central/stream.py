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
from fastapi import HTTPException, Request
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


def resume_cursor(last_event_id: str | None, after: str | None) -> Cursor | None:
    """The cursor a stream resumes from: ``Last-Event-ID`` wins over ``after``; None when neither is given.

    Raises:
        HTTPException: 400 naming the header or parameter when its value is
            not a cursor this stream sends (digits, ``;M:D`` parts, each a
            64-bit number).
    """
    for where, text in (("Last-Event-ID", last_event_id), ("after", after)):
        if not text:
            continue
        cursor = Cursor.parse(text)
        if cursor is None:
            shown = text if len(text) <= 40 else text[:40] + f"… ({len(text)} characters)"
            raise HTTPException(400, f"{where}: {shown!r} is not a stream cursor (an ingest id, or an id: "
                                     "this stream sent; each number below 2**63)")
        return cursor
    return None


async def feed_response(request: Request, feed: Feed, resume: Cursor | None, web: WebState) -> StreamingResponse:
    """The stream of ``feed`` from the cursor ``resume`` (default: now).

    Args:
        request: the request (its disconnection ends the stream).
        feed: what the viewer may see.
        resume: where to go on from (see :func:`resume_cursor`), or None for now.
        web: the app's settings: how often to poll and send keep-alives, and
            the shutdown event.
    """
    cursor = resume
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

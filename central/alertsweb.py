"""Alerts on the web: the alerts page, the live alerts block, acknowledging, and the JSON API.

- ``GET /alerts`` — open alerts and the history (late ones marked), each with its
  acknowledgements (who, when, comment) and how its sending stands;
- ``GET /api/alerts/stream`` and ``GET /tv/{token}/alerts`` — server-sent
  events: an ``alerts`` event carrying the open alerts block as HTML whenever it
  changes (first at once). The dashboard and the TV include the block from
  ``_alerts_slot.html``; ``static/alerts.js`` swaps it in;
- ``POST /alerts/{id}/ack`` (a form: ``comment``, ``next``) and
  ``POST /api/alerts/{id}/ack`` (JSON ``{"comment": …}``) — acknowledge.

**Who may acknowledge.** With staff accounts, an ``admin`` (a ``viewer`` only
reads, and gets a 403); with none (a dashboard open on loopback, or
``dashboard.open``), whoever reaches it, recorded as ``open dashboard``. The
origin check of :mod:`central.auth` guards both posts against cross-site forms.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path as FilePath
from typing import Any, Final
from urllib.parse import parse_qs, urlencode

import anyio.to_thread
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field
from sqlalchemy.exc import SQLAlchemyError

from central import alerts as book
from central import auth, deps, i18n, stream
from central.config import CentralConfig, DisplayToken
from central.deps import WebState
from central.i18n import _
from central.store import Store
from sync import protocol

TEMPLATES: Final = Jinja2Templates(directory=str(FilePath(__file__).resolve().parent / "templates"))
i18n.install(TEMPLATES.env)
#: Open alerts the live block shows at most.
BLOCK_ROWS: Final = 20
#: Alerts the page lists at most.
PAGE_ROWS: Final = 200
#: An alert id in a path: the store's ids are positive 64-bit integers.
ALERT_ID: Final = Path(ge=1, le=2**63 - 1, description="the alert's id")
#: The largest acknowledgement form read (bytes).
MAX_FORM_BYTES: Final = 4096
#: Who an acknowledgement is from when the dashboard has no accounts.
OPEN_DASHBOARD: Final = "open dashboard"

router = APIRouter()


# ---------------------------------------------------------------------------- who may act

def _actor(request: Request) -> str | None:
    """Who acknowledges: the signed-in admin's name, :data:`OPEN_DASHBOARD` with no accounts, or None
    (a viewer, or nobody signed in). Reads the store: call it off the event loop."""
    guard: auth.Auth = auth.current(request)
    account = getattr(request.state, "account", None)
    if account is not None:
        return str(account.name) if account.role == "admin" else None
    return None if guard.enabled() else OPEN_DASHBOARD


# ---------------------------------------------------------------------------- what pages show

def alert_row(alert: book.Alert, config: CentralConfig, acks: list[book.Ack] | None = None,
              now: datetime | None = None) -> dict[str, Any]:
    """What a page shows of one alert (times in its site's zone)."""
    now = now or datetime.now(UTC)
    site = config.site(alert.site)
    tz = site.tz

    def local(moment: datetime | None) -> str | None:
        if moment is None:
            return None
        at = moment.astimezone(tz)
        if at.date() == now.astimezone(tz).date():
            return at.strftime("%H:%M")
        return at.strftime("%a %d %b, %H:%M") if i18n.current() == i18n.DEFAULT else \
            f"{i18n.day(at.date(), 'EEE d MMM')}, {at:%H:%M}"

    desk_name = site.desk(alert.device).name if alert.device else None
    where = f"{desk_name}, {site.name}" if desk_name else site.name
    # The message names the desk for e-mail and MQTT; beside the names on a page it need not.
    detail = alert.message[len(where) + 2:] if alert.message.startswith(where + ": ") else alert.message
    return {
        "id": alert.alert_id, "key": alert.key, "kind": alert.kind, "detail": detail,
        "kind_words": _(book.KIND_WORDS[alert.kind]) if alert.kind in book.KIND_WORDS else alert.kind,
        "site_name": site.name, "desk_name": desk_name,
        "message": alert.message, "late": alert.late, "open": alert.open,
        "raised": local(alert.raised_at), "raised_iso": alert.raised_at.isoformat(timespec="seconds"),
        "cleared": local(alert.cleared_at), "acked": local(alert.acked_at), "acked_by": alert.acked_by,
        "acks": [{"by": a.by, "at": local(a.at), "iso": a.at.isoformat(timespec="seconds"), "comment": a.comment}
                 for a in acks or []],
    }


def _block(store: Store, config: CentralConfig, site: str | None, device: str | None, *,
           can_ack: bool, back: str, tv: bool) -> tuple[tuple[Any, ...], str, int]:
    """The open-alerts block: (what it shows, as a signature; its HTML; how many are open)."""
    found = book.listing(store, site=site, device=device, open_only=True, live_only=True, limit=BLOCK_ROWS)
    now = datetime.now(UTC)
    rows = [alert_row(a, config, now=now) for a in found]
    signature = (can_ack, tuple((r["id"], r["raised"]) for r in rows))
    query = urlencode({k: v for k, v in {"site": site, "device": device}.items() if v})
    html = TEMPLATES.get_template("_alerts.html").module.block(  # type: ignore[attr-defined]
        rows, can_ack=can_ack, back=back, tv=tv, page="/alerts" + (f"?{query}" if query else ""))
    return signature, str(html), len(rows)


async def _alerts_stream(request: Request, web: WebState, site: str | None, device: str | None, *, tv: bool,
                         back: str) -> StreamingResponse:
    can_ack = False if tv else await anyio.to_thread.run_sync(_actor, request) is not None

    async def events() -> Any:
        yield "retry: 2000\n\n"
        shown: tuple[Any, ...] | None = None
        last_sent = idle_since = time.monotonic()
        sent = 0
        while not web.shutdown.is_set():
            try:
                signature, html, count = await anyio.to_thread.run_sync(
                    lambda: _block(web.store, web.config, site, device, can_ack=can_ack, back=back, tv=tv))
            except SQLAlchemyError:
                signature = None  # the store is away: keep what the page shows
            if signature is not None and signature != shown:
                shown, sent = signature, sent + 1
                yield stream.sse_event({"html": html, "open": count}, str(sent), "alerts")
                last_sent = idle_since = time.monotonic()
            elif web.stream_idle_exit_s is not None and time.monotonic() - idle_since >= web.stream_idle_exit_s:
                return
            elif time.monotonic() - last_sent >= web.keepalive_s:
                yield ": keepalive\n\n"
                last_sent = time.monotonic()
            if await request.is_disconnected():
                return
            await asyncio.sleep(web.poll_s)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _slug(name: str, value: str | None) -> str | None:
    """A site or desk slug from the query (None when empty); a 422 naming the parameter otherwise."""
    if not value:
        return None
    if not protocol.SLUG_RE.fullmatch(value):
        raise deps.query_error(name, f"{value[:70]!r} is not a slug (a-z, 0-9 and '-', 1 to 64)")
    return value


def _safe_back(target: str | None) -> str:
    """Only a path on this site may be where an acknowledgement returns to."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/alerts"
    return target[:1000]


@router.get("/api/alerts/stream", include_in_schema=False)
async def alerts_stream(request: Request, site: str | None = None, device: str | None = None,
                        back: str | None = None, web: WebState = Depends(deps.web_state)) -> StreamingResponse:
    """The open alerts block of the dashboard (a site, a desk, or all), live."""
    return await _alerts_stream(request, web, _slug("site", site), _slug("device", device), tv=False,
                                back=_safe_back(back or "/"))


@router.get("/tv/{token}/alerts", include_in_schema=False)
async def tv_alerts_stream(request: Request, token: str, web: WebState = Depends(deps.web_state)
                           ) -> StreamingResponse:
    """The TV's open alerts (its site's, or its desk's and the site's as a whole), live; no acknowledging."""
    display: DisplayToken | None = getattr(request.state, "display", None) or web.config.dashboard.display_token(
        token)
    if display is None:
        raise HTTPException(404, "Not Found")
    return await _alerts_stream(request, web, display.site, display.device, tv=True, back="/")


# ---------------------------------------------------------------------------- the page

def _page(request: Request, web: WebState, site: str | None, device: str | None, message: str, error: str
          ) -> HTMLResponse:
    found = book.listing(web.store, site=site, device=device, limit=PAGE_ROWS)
    acks = book.acks(web.store, [a.alert_id for a in found])
    now = datetime.now(UTC)
    rows = [alert_row(a, web.config, acks[a.alert_id], now=now) for a in found]
    for row, alert in zip(rows, found, strict=True):
        row["deliveries"] = book.deliveries(web.store, alert.alert_id) if not alert.late else []
    query = urlencode({k: v for k, v in {"site": site, "device": device}.items() if v})
    ctx = {"open_rows": [r for r in rows if r["open"] and not r["late"]],
           "past_rows": [r for r in rows if not (r["open"] and not r["late"])],
           "can_ack": _actor(request) is not None, "site": site, "device": device,
           "back": "/alerts" + (f"?{query}" if query else ""), "message": message, "error": error,
           "config": web.config, "limit": PAGE_ROWS}
    return TEMPLATES.TemplateResponse(request, "alerts.html", ctx, headers={"Cache-Control": "no-store"})


@router.get("/alerts", response_class=HTMLResponse, include_in_schema=False)
async def alerts_page(request: Request, site: str | None = None, device: str | None = None,
                      msg: str = "", err: str = "", web: WebState = Depends(deps.web_state)) -> HTMLResponse:
    """Open alerts and the history, with every acknowledgement."""
    return await anyio.to_thread.run_sync(_page, request, web, _slug("site", site), _slug("device", device),
                                          msg[:200], err[:200])


# ---------------------------------------------------------------------------- acknowledging

class AckRefused(Exception):
    """An acknowledgement refused: ``status`` 403 (a viewer), 404 (no such alert) or 422 (the comment)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _ack(request: Request, web: WebState, alert_id: int, comment: str) -> book.Ack:
    who = _actor(request)
    if who is None:
        raise AckRefused(403, "acknowledging an alert needs an admin account; this one is a viewer")
    comment = " ".join(comment.split())
    if not comment:
        raise AckRefused(422, "say what was done (it is kept with the alert)")
    if len(comment) > book.MAX_COMMENT:
        raise AckRefused(422, f"at most {book.MAX_COMMENT} characters, got {len(comment)}")
    try:
        ack = book.acknowledge(web.store, alert_id, who, comment,
                               send_on=book.channels(web.config, acknowledged=True))
    except book.AlertNotFound:
        raise AckRefused(404, f"no alert {alert_id}") from None
    auth.log.info("%s acknowledged alert %d: %s", who, alert_id, comment)
    return ack


@router.post("/alerts/{alert_id}/ack", include_in_schema=False)
async def ack_form(request: Request, alert_id: int = ALERT_ID, web: WebState = Depends(deps.web_state)) -> Response:
    """Acknowledge from a page's form (``comment``, ``next``); back to ``next`` with a message."""
    body = await auth.read_limited(request, MAX_FORM_BYTES)
    if body is None:
        raise HTTPException(413, f"the form is larger than {MAX_FORM_BYTES} bytes")
    form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), max_num_fields=10).items()}
    back = _safe_back(form.get("next"))
    try:
        await anyio.to_thread.run_sync(_ack, request, web, alert_id, form.get("comment", ""))
    except AckRefused as exc:
        message = f"comment: {exc}" if exc.status == 422 else str(exc)
        if exc.status in (403, 422) and "text/html" in request.headers.get("accept", ""):
            return RedirectResponse(_with(back, err=message), status_code=303)
        raise HTTPException(exc.status, message) from None
    return RedirectResponse(_with(back, msg=_("Alert acknowledged.")), status_code=303)


def _with(path: str, **params: str) -> str:
    if not path.startswith("/alerts"):
        return path  # the dashboard shows the block live; no message there
    return path + ("&" if "?" in path else "?") + urlencode(params)


class AckIn(BaseModel):
    """An acknowledgement."""

    comment: str = Field(min_length=1, max_length=book.MAX_COMMENT, description="what was done (kept)")


class AckOut(BaseModel):
    """An acknowledgement as stored."""

    alert_id: int
    by: str
    at: str = Field(description="ISO 8601 UTC")
    comment: str


class AlertOut(BaseModel):
    """An alert as the API shows it."""

    alert_id: int
    key: str = Field(description="unique per alert")
    kind: str = Field(description="unhappy | offline | backlog | test-mode | refused-survey")
    site: str
    device: str | None = Field(description="the desk, or null for the site as a whole")
    raised_at: str
    since: str = Field(description="the window's start (unhappy), or since when the condition holds")
    until: str | None = Field(description="the window's end, in the answers' own time (unhappy)")
    late: bool = Field(description="raised long after its window ended (a backlog): kept, never sent")
    answers: int | None
    unhappy: int | None
    message: str
    cleared_at: str | None
    acked_at: str | None
    acked_by: str | None
    acks: list[AckOut]


@router.post("/api/alerts/{alert_id}/ack", response_model=AckOut,
             responses={403: {"description": "a viewer (acknowledging needs an admin)"},
                        404: {"description": "no such alert"}})
async def ack_api(body: AckIn, request: Request, alert_id: int = ALERT_ID,
                  web: WebState = Depends(deps.web_state)) -> dict[str, Any]:
    """Acknowledge an alert with a comment (admins; anyone on a dashboard without accounts)."""
    try:
        ack = await anyio.to_thread.run_sync(_ack, request, web, alert_id, body.comment)
    except AckRefused as exc:
        if exc.status == 422:
            raise RequestValidationError([{"loc": ("body", "comment"), "msg": str(exc), "type": "value_error"}]
                                         ) from None
        raise HTTPException(exc.status, str(exc)) from None
    return {"alert_id": ack.alert_id, "by": ack.by, "at": protocol.utc_timestamp(ack.at), "comment": ack.comment}


@router.get("/api/alerts", response_model=list[AlertOut])
def api_alerts(site: str | None = Query(None, description="only this site"),
               device: str | None = Query(None, description="only this desk (and its site's as a whole)"),
               open: bool = Query(False, description="only alerts neither acknowledged nor cleared"),
               limit: int = Query(100, ge=1, le=1000),
               web: WebState = Depends(deps.web_state)) -> list[dict[str, Any]]:
    """Alerts, newest first, with their acknowledgements."""
    found = book.listing(web.store, site=_slug("site", site), device=_slug("device", device), open_only=open,
                         limit=limit)
    acks = book.acks(web.store, [a.alert_id for a in found])

    def ts(moment: datetime | None) -> str | None:
        return None if moment is None else protocol.utc_timestamp(moment)

    return [{"alert_id": a.alert_id, "key": a.key, "kind": a.kind, "site": a.site, "device": a.device,
             "raised_at": ts(a.raised_at), "since": ts(a.since), "until": ts(a.until), "late": a.late,
             "answers": a.answers, "unhappy": a.unhappy, "message": a.message, "cleared_at": ts(a.cleared_at),
             "acked_at": ts(a.acked_at), "acked_by": a.acked_by,
             "acks": [{"alert_id": k.alert_id, "by": k.by, "at": ts(k.at), "comment": k.comment}
                      for k in acks[a.alert_id]]} for a in found]


__all__ = ["alert_row", "router"]

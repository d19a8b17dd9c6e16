"""The JSON API: ``/healthz``, ``/api/events``, ``/api/aggregates``, ``/api/devices`` and ``/api/stream``.

Everything reads the store (:mod:`central.reads`), never a collector's memory:
several collectors may be writing. The response models below are what the
OpenAPI description at ``/openapi.json`` promises (``tests/test_central_api.py``
fuzzes it with schemathesis). Errors are FastAPI's 422 naming the parameter.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from central import deps, reads, scores, stream
from central.deps import WebState
from central.feed import Feed
from central.filters import Filters
from central.store import Store
from sync import protocol

#: A site or desk in a query: the protocol's slug.
SLUG_PATTERN: Final = protocol.SLUG_PATTERN

router = APIRouter()


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


class Alarm(BaseModel):
    """A health alarm a kiosk reports in its status."""

    code: str
    message: str


class DeviceHealth(BaseModel):
    """A device's latest status (retained status or last will) and its gaps."""

    site: str
    device: str
    state: Literal["online", "offline", "retired"] | None = Field(
        description="from the device's status; offline from its last will; retired after "
                    "'deskpulse-central device remove'; null if it never sent one")
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
    uptime_s: float | None = Field(description="how long the kiosk program had run when it sent the status")
    restarted_at: str | None = Field(description="when the kiosk program last started, ISO 8601 UTC: the "
                                                 "status's ts (the device's clock) minus uptime_s")
    alarms: list[Alarm] = Field(description="the kiosk's health alarms (test-mode, sender-restarting, disk-low, …)")
    test_mode: bool = Field(description="staff test mode is on: its answers are flagged test")
    gaps: list[Gap] = Field(description="missing seq ranges per epoch")


class Health(BaseModel):
    """Central answers and its store is readable."""

    ok: bool
    events: int
    dead_letters: int = Field(description="refused payloads kept (ingest.dead_letters_max_mb/_max_days bound them)")
    dead_letter_bytes: int = Field(description="what they count against the budget (payload, reason, topic, row)")
    dead_letter_budget_bytes: int = Field(description="the budget: ingest.dead_letters_max_mb in bytes")


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


@router.get("/healthz", response_model=Health)
def healthz(web: WebState = Depends(deps.web_state)) -> dict[str, Any]:
    """Liveness: the store answers, how many events it holds, and the dead letters against their budget."""
    rows, size = reads.dead_letter_usage(web.store)
    return {"ok": True, "events": reads.count_events(web.store), "dead_letters": rows, "dead_letter_bytes": size,
            "dead_letter_budget_bytes": web.config.ingest.dead_letters_max_mb * 1024 * 1024}


@router.get("/api/events", response_model=list[FeedbackEvent])
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
    store: Store = Depends(deps.store),
) -> list[dict[str, Any]]:
    """Stored feedback events in ingest order; page with ``after`` = the last ``ingest_id`` seen."""
    return reads.events(store, site=site, device=device, since=since, until=until, after=after,
                        limit=limit, include_flagged=flagged)


@router.get("/api/aggregates", response_model=Aggregates)
def api_aggregates(f: Filters = Depends(deps.dashboard_filters),
                   web: WebState = Depends(deps.web_state)) -> dict[str, Any]:
    """Index, counts, shares, reasons, trend, heatmap and desks for a site, desk and local date range."""
    return scores.aggregate(web.store, web.config, site=f.site, device=f.device, start=f.start, end=f.end,
                            include_flagged=f.flagged, private=False)  # only read: serialised as it is


@router.get("/api/devices", response_model=list[DeviceHealth])
def api_devices(
    site: str | None = Query(None, pattern=SLUG_PATTERN, description="only this site"),
    store: Store = Depends(deps.store),
) -> list[dict[str, Any]]:
    """Every device with a status or a missing seq range: its health and its gaps."""
    return reads.device_health(store, site)


@router.get(
    "/api/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}},
                     "description": "`event: feedback` (data: a stored event) and `event: tick` (data: "
                                    "{site, device}: an answer at a desk whose feed is aggregated); "
                                    "`id:` is a cursor to resume from"},
               400: {"description": "`Last-Event-ID` or `after` is not a cursor this stream sends"}},
)
async def api_stream(
    request: Request,
    site: str | None = Query(None, pattern=SLUG_PATTERN, description="only this site"),
    device: str | None = Query(None, pattern=SLUG_PATTERN, description="only this desk"),
    after: str | None = Query(None, max_length=2000, pattern=r"^[0-9;:]+$",
                              description="start after this cursor (an ingest id, or an `id:` this stream "
                                          "sent); default: now"),
    last_event_id: str | None = Header(None, description="sent by a reconnecting EventSource; wins over after"),
    web: WebState = Depends(deps.web_state),
) -> StreamingResponse:
    """New answers as server-sent events, from ``Last-Event-ID`` or ``after`` on.

    Each desk's privacy mode applies (docs/dashboard.md): a delayed desk's
    answers come late, an aggregated desk's only as ``tick`` events.
    """
    resume = stream.resume_cursor(last_event_id, after)
    feed = Feed(web.store, web.config, site=site, device=device)
    return await stream.feed_response(request, feed, resume, web)

"""The live feed: which answers a viewer sees one by one, and when (per-desk privacy).

A desk's ``feed`` mode (``[sites.<site>.desks.<desk>]``, docs/configuration.md):

- ``live``: its answers appear as soon as they are stored;
- ``delayed``: they appear ``delay_min`` minutes after central stored them;
- ``aggregated``: they never appear one by one; the feed sends a ``tick``
  naming the desk instead, so a page can refresh its numbers.

The server applies this, never the browser: an answer held back is not sent.

**Cursor.** A feed resumes from a cursor (the SSE ``id:``, which a browser sends
back as ``Last-Event-ID``). Answers are stored with a monotonic ingest id, but a
delayed desk's answer is sent later than live answers with larger ids, so one
number cannot say what was sent. The cursor is ``L`` followed by ``;M:D`` for
each delay in use: every answer of a live (or aggregated) desk up to ingest id
``L`` has been sent (or ticked), and every answer of the desks delayed by ``M``
minutes up to ``D``. Each part only grows, so nothing is sent twice or skipped
(answers are committed in ingest-id order: central/store.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from central import reads
from central.config import CentralConfig, DeskConfig
from central.store import Store
from sync import protocol


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a feed stands: the live part and one part per delay (minutes -> ingest id)."""

    live: int
    delayed: tuple[tuple[int, int], ...] = ()

    def __str__(self) -> str:
        return str(self.live) + "".join(f";{m}:{d}" for m, d in self.delayed)

    def part(self, minutes: int) -> int | None:
        return dict(self.delayed).get(minutes)

    @classmethod
    def parse(cls, text: str) -> Cursor | None:
        """A cursor from its text (a plain ingest id is a cursor too); None if it is not one.

        Each number is at most 19 digits and fits a signed 64-bit integer (what
        the store's ingest id is), and there are at most :data:`MAX_CURSOR_PARTS`
        delay parts, so a hostile ``Last-Event-ID`` can neither overflow a query
        nor make the parse itself costly.
        """
        if len(text) > MAX_CURSOR_LENGTH:
            return None
        head, *rest = text.strip().split(";")
        if not _is_id(head) or len(rest) > MAX_CURSOR_PARTS:
            return None
        parts: dict[int, int] = {}
        for item in rest:
            minutes, sep, upto = item.partition(":")
            if not (sep and _is_id(minutes) and _is_id(upto)):
                return None
            parts[int(minutes)] = int(upto)
        return cls(int(head), tuple(sorted(parts.items())))


#: The longest cursor text accepted (a live part and 64 delay parts fit in it).
MAX_CURSOR_LENGTH: Final = 2000
#: The most delay parts a cursor may have (each distinct desk delay in use adds one).
MAX_CURSOR_PARTS: Final = 64
_MAX_ID: Final = 2**63 - 1


def _is_id(text: str) -> bool:
    """Whether ``text`` is a decimal number of at most 19 ASCII digits that fits a signed 64-bit integer."""
    return 0 < len(text) <= 19 and text.isascii() and text.isdigit() and int(text) <= _MAX_ID


@dataclass(frozen=True, slots=True)
class Item:
    """One thing to send: ``kind`` ``feedback`` (``data`` is the event) or ``tick`` (``data`` names the desk)."""

    kind: str
    data: dict[str, Any]
    cursor: Cursor


class Feed:
    """The answers one viewer may see, filtered to a site and desk.

    Args:
        store: the store to read.
        config: sites, desks and their feed modes.
        site: only this site's answers (None: every site).
        device: only this desk's answers (None: every desk).
    """

    def __init__(self, store: Store, config: CentralConfig, *, site: str | None = None,
                 device: str | None = None) -> None:
        self.store, self.config, self.site, self.device = store, config, site, device
        held: dict[int, list[tuple[str, str]]] = {}
        hidden: list[tuple[str, str]] = []
        for site_cfg in config.sites.values():
            for desk in site_cfg.desks.values():
                if desk.feed == "delayed":
                    held.setdefault(desk.delay_min, []).append((site_cfg.slug, desk.slug))
                elif desk.feed == "aggregated":
                    hidden.append((site_cfg.slug, desk.slug))
        #: minutes -> the desks delayed by that much
        self.delays = dict(sorted(held.items()))
        self.aggregated = frozenset(hidden)

    def mode(self, site: str, device: str) -> DeskConfig:
        return self.config.site(site).desk(device)

    def _held(self, now: datetime) -> list[tuple[list[reads.Desk], datetime]]:
        """Each delay's desks with the latest receipt time an answer of theirs may have to be shown now."""
        return [(desks, now - timedelta(minutes=minutes)) for minutes, desks in self.delays.items()]

    def start(self, now: datetime | None = None) -> Cursor:
        """The cursor of "now": the next answer stored (or released from a delay) will be sent."""
        now = now or datetime.now(UTC)
        live = reads.last_ingest_id(self.store)
        parts = [(minutes, reads.last_ingest_id(self.store, among=desks, received_before=cutoff))
                 for (minutes, _), (desks, cutoff) in zip(self.delays.items(), self._held(now), strict=True)]
        return Cursor(live, tuple(parts))

    def recent(self, limit: int = 50, now: datetime | None = None) -> tuple[list[dict[str, Any]], Cursor]:
        """The newest answers a viewer may see now, newest first, and the cursor to go on from.

        The cursor is taken first: an answer stored meanwhile may then be both
        in the list and sent by the feed (a page drops the second copy by its
        ingest id), but none is missed.
        """
        now = now or datetime.now(UTC)
        cursor = self.start(now)
        rows = reads.recent(self.store, limit, site=self.site, device=self.device, hide=self.aggregated,
                            hold=self._held(now))
        return rows, cursor

    def poll(self, cursor: Cursor, limit: int = 200,
             now: datetime | None = None) -> tuple[list[Item], Cursor]:
        """What to send after ``cursor``: ``feedback`` items (an event) and ``tick`` items ({site, device}).

        Returns the items in sending order, each with the cursor to resume
        from once it is sent, and the cursor after all of them.
        """
        now = now or datetime.now(UTC)
        out: list[Item] = []
        ticks: set[tuple[str, str]] = set()
        held = [desk for desks in self.delays.values() for desk in desks]
        # Read the newest id first: ids become visible in order (central/store.py), so every
        # answer up to it is committed, and the query below, made later, sees all of them.
        newest = reads.last_ingest_id(self.store)
        rows = reads.events(self.store, site=self.site, device=self.device, after=cursor.live, limit=limit,
                            without=held, tail=True)
        for event in rows:
            key = (event["site"], event["device"])
            if key in self.aggregated:
                ticks.add(key)
            else:
                out.append(Item("feedback", event, Cursor(event["ingest_id"], cursor.delayed)))
        if len(rows) == limit:
            live = int(rows[-1]["ingest_id"])  # more to read: go on from the last one next time
        else:  # everything of ours up to `newest` was read (rows of other desks included)
            live = max(cursor.live, newest, int(rows[-1]["ingest_id"]) if rows else 0)
        parts = dict(cursor.delayed)
        for minutes in list(parts):
            if minutes not in self.delays:
                del parts[minutes]  # a delay no longer configured
        for minutes, desks in self.delays.items():
            cutoff = now - timedelta(minutes=minutes)
            upto = cursor.part(minutes)
            if upto is None:  # a delay added since the cursor was made: start it at "now"
                parts[minutes] = reads.last_ingest_id(self.store, among=desks, received_before=cutoff)
                continue
            released = reads.events(self.store, site=self.site, device=self.device, after=upto, limit=limit,
                                    only=desks, tail=True)
            for event in released:
                if protocol.parse_timestamp(event["received_at"]) > cutoff:
                    break  # not yet; later ones are younger still
                upto = parts[minutes] = int(event["ingest_id"])
                out.append(Item("feedback", event, Cursor(live, tuple(sorted(parts.items())))))
        final = Cursor(live, tuple(sorted(parts.items())))
        for site, device in sorted(ticks):
            out.append(Item("tick", {"site": site, "device": device}, final))
        if out and out[-1].kind == "feedback" and out[-1].cursor.live != live:
            out[-1] = Item("feedback", out[-1].data, final)  # the last live one also covers the rows it skipped
        return out, final

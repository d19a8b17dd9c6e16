"""The dashboard's filters — site, desk, local date range, flagged answers — and their one set of rules.

The overview page, ``GET /api/aggregates`` and the CSV exports take the same
query parameters and check them here, so they accept and refuse the same
inputs (``tests/test_central_filters.py`` feeds the same inputs to all three):

- ``site``, ``device``: a slug (:data:`sync.protocol.SLUG_PATTERN`); empty
  means every site (every desk), as the page's form sends it;
- ``from``, ``to``: local dates ``YYYY-MM-DD`` from :data:`EARLIEST` to
  :data:`LATEST`, both included; a range that ends before it starts is
  refused, and so is one longer than :data:`MAX_DAYS` days (a missing end is
  today, or 29 days after ``from`` when that is in the future; a missing
  start is 29 days before the end: :func:`date_range`);
- ``flagged``: ``1``/``true``/``yes``/``on`` or ``0``/``false``/``no``/``off``
  (any case); empty or missing means the configured default.

The JSON API and the exports answer a refused value with a 422 naming it;
the page says what it did not understand and shows the view without it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final
from urllib.parse import urlencode

from sync.errors import DeskPulseError
from sync.protocol import SLUG_RE

#: Dates a filter may name (both included).
EARLIEST: Final = date(2000, 1, 1)
LATEST: Final = date(2100, 12, 31)
#: The longest date range one request may ask for: two years and a day or two (this year against last).
MAX_DAYS: Final = 732
#: Days in the default date range (ending today).
DEFAULT_DAYS: Final = 30

#: A date as the filters take it (the HTML date input's format).
DATE_RE: Final = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})

#: The query parameters, in the order they are checked.
NAMES: Final = ("site", "device", "from", "to", "flagged")


class FilterError(DeskPulseError, ValueError):
    """A filter value that cannot be used; ``name`` is the query parameter to blame."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


@dataclass(frozen=True, slots=True)
class DateRange:
    """Local dates ``start`` to ``end``, both included."""

    start: date
    end: date

    def __contains__(self, day: object) -> bool:
        return isinstance(day, date) and self.start <= day <= self.end

    @property
    def days(self) -> int:
        """How many days the range spans."""
        return (self.end - self.start).days + 1


def date_range(start: date | None, end: date | None, today: date) -> DateRange:
    """The range a filter means where ``today`` is the local date: the given dates, else 30 days.

    Without an end it ends ``today`` (or 29 days after ``start`` when that is
    after today); without a start it starts 29 days before the end.
    """
    if end is None:
        end = today if start is None or start <= today else start + timedelta(days=DEFAULT_DAYS - 1)
    if start is None:
        start = end - timedelta(days=DEFAULT_DAYS - 1)
    return DateRange(start, end)


def check_range(start: date | None, end: date | None, now: datetime | None = None) -> None:
    """Refuse a range outside :data:`EARLIEST`–:data:`LATEST`, reversed, or longer than :data:`MAX_DAYS`.

    Args:
        start: the first local date, or None.
        end: the last local date, or None.
        now: the moment "today" is taken from (UTC); default now.

    Raises:
        FilterError: naming ``from`` or ``to``.
    """
    for name, day in (("from", start), ("to", end)):
        if day is not None:
            _within(name, day)
    if start is not None and end is not None and end < start:
        raise FilterError("to", f"the date range ends ({end}) before it starts ({start})")
    span = date_range(start, end, (now or datetime.now(UTC)).astimezone(UTC).date())
    if span.days > MAX_DAYS:
        raise FilterError("from" if start is not None else "to",
                          f"the date range {span.start} to {span.end} is longer than {MAX_DAYS} days; "
                          "ask for less at a time")


@dataclass(frozen=True, slots=True)
class Filters:
    """A checked filter: what the page, the API and the exports show."""

    site: str | None = None
    device: str | None = None
    start: date | None = None
    end: date | None = None
    flagged: bool | None = None  # None: the configured default

    def params(self, **override: Any) -> dict[str, str]:
        """The query parameters of this filter (only those set), with ``override`` applied."""
        values: dict[str, Any] = {"site": self.site, "device": self.device, "from": self.start,
                                  "to": self.end, "flagged": self.flagged}
        values.update(override)
        out: dict[str, str] = {}
        for key, value in values.items():
            if value is None or value == "":
                continue
            if isinstance(value, bool):
                out[key] = "1" if value else "0"
            else:
                out[key] = value.isoformat() if isinstance(value, date) else str(value)
        return out

    def query(self, **override: Any) -> str:
        """``params`` as a query string (no leading ``?``)."""
        return urlencode(self.params(**override))


def _slug(name: str, value: str) -> str:
    if not SLUG_RE.fullmatch(value):
        raise FilterError(name, f"{name} {value!r} is not a site or desk name (a-z, 0-9 and '-', 1 to 64)")
    return value


def _within(name: str, day: date) -> date:
    if not EARLIEST <= day <= LATEST:
        raise FilterError(name, f"{name} {day} is out of range ({EARLIEST} to {LATEST})")
    return day


def _date(name: str, value: str) -> date:
    try:
        if not DATE_RE.fullmatch(value):
            raise ValueError(value)
        day = date.fromisoformat(value)
    except ValueError:
        raise FilterError(name, f"{name} {value!r} is not a date (YYYY-MM-DD)") from None
    return _within(name, day)


def _flag(name: str, value: str) -> bool:
    word = value.lower()
    if word in _TRUE or word in _FALSE:
        return word in _TRUE
    raise FilterError(name, f"{name} {value!r} is not one of 1, true, yes, on, 0, false, no, off")


def parse(query: Mapping[str, str | None], now: datetime | None = None) -> tuple[Filters, list[FilterError]]:
    """Check the query parameters of a filter; every value refused is left out and reported.

    Args:
        query: ``site``, ``device``, ``from``, ``to`` and ``flagged`` as
            given (missing, None and empty mean "not set"; surrounding
            spaces are ignored).
        now: the moment "today" is taken from, for the length of a range.

    Returns:
        The filter made of the values that passed, and one error per value
        refused (empty when everything passed). For a date range that cannot
        be used, the value the error names is left out.
    """
    errors: list[FilterError] = []
    values: dict[str, Any] = {}
    for name, check in (("site", _slug), ("device", _slug), ("from", _date), ("to", _date), ("flagged", _flag)):
        raw = (query.get(name) or "").strip()
        if not raw:
            continue
        try:
            values[name] = check(name, raw)
        except FilterError as exc:
            errors.append(exc)
    try:
        check_range(values.get("from"), values.get("to"), now)
    except FilterError as exc:  # reversed or too long: without the value it names, the range is fine
        errors.append(exc)
        values.pop(exc.name, None)
    return (Filters(site=values.get("site"), device=values.get("device"), start=values.get("from"),
                    end=values.get("to"), flagged=values.get("flagged")), errors)

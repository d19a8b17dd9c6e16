"""One set of filter rules: the page, the JSON API and the CSV exports accept and refuse the same inputs.

The same query (site, desk, from, to, flagged) goes to the overview page, to
``GET /api/aggregates`` and to both CSV exports of one app over a real SQLite
file. Each must accept it or refuse it alike (a 422 naming the parameter for
the API and the exports, a notice for the page, which never fails), and where
accepted the page and the API must report the same date range, and the CSV
rows must lie inside it.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from central import config as central_config
from central import filters, pages
from central.store import Store
from central.web import create_app
from sync import protocol
from tests.support.events import feedback_event

TO = date(2026, 11, 10)
LONGEST_FROM = TO - timedelta(days=filters.MAX_DAYS - 1)

#: (query, the parameter to blame or None when accepted)
CASES: list[tuple[dict[str, str], str | None]] = [
    ({"from": "2026-11-08", "to": "2026-11-10"}, None),
    ({"from": "2026-11-10", "to": "2026-11-10", "site": "akl", "device": "desk-1"}, None),
    ({"from": "2026-11-10"}, None),
    ({"to": "2026-11-10"}, None),
    ({}, None),
    ({"site": "", "device": "", "from": "", "to": "", "flagged": ""}, None),  # the page's form, all empty
    ({"from": " 2026-11-08 ", "to": "2026-11-10"}, None),
    ({"from": "2026-11-08", "to": "2026-11-10", "flagged": "1"}, None),
    ({"from": "2026-11-08", "to": "2026-11-10", "flagged": "off"}, None),
    ({"from": LONGEST_FROM.isoformat(), "to": TO.isoformat()}, None),  # exactly the longest range
    ({"from": "2000-01-01", "to": "2000-01-31"}, None),  # the earliest date
    ({"from": "2100-12-01", "to": "2100-12-31"}, None),  # the latest date
    ({"from": (LONGEST_FROM - timedelta(days=1)).isoformat(), "to": TO.isoformat()}, "from"),  # a day too long
    ({"from": "2001-01-01"}, "from"),  # up to today: far too long
    ({"from": "2026-11-10", "to": "2026-11-08"}, "to"),  # reversed
    ({"from": "1999-12-31", "to": "2000-01-05"}, "from"),
    ({"from": "2100-12-30", "to": "2101-01-01"}, "to"),
    ({"from": "9999-12-31"}, "from"),
    ({"from": "10/11/2026"}, "from"),
    ({"to": "2026-02-30"}, "to"),
    ({"to": "20261110"}, "to"),  # ISO 8601's basic form: not YYYY-MM-DD
    ({"from": "2026-W46-1"}, "from"),
    ({"site": "No Such!"}, "site"),
    ({"site": "AKL"}, "site"),
    ({"device": "d" * 65}, "device"),
    ({"device": "desk_1"}, "device"),
    ({"flagged": "maybe"}, "flagged"),
]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    path: Path = tmp_path_factory.mktemp("filters") / "central.sqlite3"
    config = central_config.from_dict({"sites": {"akl": {"name": "Auckland", "timezone": "Pacific/Auckland",
                                                         "desks": {"desk-1": {"name": "Bags"}}}}})
    with Store(f"sqlite:///{path}") as store:
        store.migrate()
        start = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)
        store.insert_events([feedback_event("akl", "desk-1", rating=1 + day % 4, scale=4,
                                            ts=protocol.utc_timestamp(start + timedelta(days=day)))
                             for day in range(70)])
        yield TestClient(create_app(store, config))


def _refused_by(reply_status: int, body: object) -> str | None:
    if reply_status == 200:
        return None
    assert reply_status == 422, body
    assert isinstance(body, dict)
    (loc,) = {tuple(d["loc"]) for d in body["detail"]}
    assert loc[0] == "query"
    return str(loc[1])


@pytest.mark.parametrize(("query", "blamed"), CASES, ids=[str(q) or "empty" for q, _ in CASES])
def test_the_page_the_api_and_the_exports_agree(client: TestClient, query: dict[str, str],
                                                blamed: str | None) -> None:
    api = client.get("/api/aggregates", params=query)
    assert _refused_by(api.status_code, api.json()) == blamed
    for export in ("/export/answers.csv", "/export/aggregates.csv"):
        reply = client.get(export, params=query)
        assert _refused_by(reply.status_code, reply.json() if reply.status_code != 200 else None) == blamed, export

    page = client.get("/", params=query)
    assert page.status_code == 200  # a page never fails on a bad URL: it says what it ignored
    notice = re.search(r'<div class="notice" role="alert">(.*?)</div>', page.text, re.S)
    if blamed is None:
        assert notice is None, notice and notice.group(1)
    else:
        assert notice is not None and f"“{blamed}” was ignored" in notice.group(1)
        return

    body = api.json()
    dayrange = pages.TEMPLATES.env.filters["dayrange"]
    assert f"<h2>Index, {dayrange(body['start'], body['end'])}</h2>" in page.text
    rows = list(csv.DictReader(io.StringIO(client.get("/export/aggregates.csv", params=query).text)))
    assert all(body["start"] <= row["date"] <= body["end"] for row in rows)
    seeded = {row["date"] for row in rows}
    if query.get("from", "").strip() == "2026-11-08" and query.get("to") == "2026-11-10":
        assert seeded == {"2026-11-08", "2026-11-09", "2026-11-10"}  # every day of the range, none outside
        assert body["total"] == sum(int(row["answers"]) for row in rows) == 3
    answers = list(csv.DictReader(io.StringIO(client.get("/export/answers.csv", params=query).text)))
    assert {row["local_date"] for row in answers} == seeded


def test_parse_names_every_refused_value_and_keeps_the_rest() -> None:
    found, errors = filters.parse({"site": "No Such!", "device": "desk-1", "from": "2026-11-10",
                                   "to": "2026-11-08", "flagged": "yes"}, now=datetime(2026, 11, 29, tzinfo=UTC))
    assert [e.name for e in errors] == ["site", "to"]
    assert found == filters.Filters(device="desk-1", start=date(2026, 11, 10), flagged=True)

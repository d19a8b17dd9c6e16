"""The weekly report: its numbers from known answers (SQLite and PostgreSQL), its HTML, the page and the command.

Every expected number is worked out by hand in the comments.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from central import cli, report
from central import config as central_config
from central.store import Store
from central.web import create_app
from sync import protocol
from tests.support.events import feedback_event
from tests.test_central_health import status

#: Wednesday 18 November 2026, noon in London: the last complete week is 2026-W46 (Mon 9 to Sun 15 November).
NOW = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)

SITES = {
    "north": {"name": "North hall", "timezone": "Europe/London", "target": 70,
              "desks": {"a": {"name": "Desk Alpha"}, "b": {"name": "Desk Bravo"}, "c": {"name": "Desk Charlie"}}},
    "south": {"name": "South hall", "timezone": "Europe/London"},
}


def cfg() -> central_config.CentralConfig:
    return central_config.from_dict({"sites": SITES, "dashboard": {"rank_min_answers": 10}})


@pytest.fixture
def store(store_url):
    with Store(store_url) as s:
        s.migrate()
        s.zones = lambda slug: cfg().site(slug).timezone
        yield s


def put(store: Store, when: datetime, *ratings: int, device: str = "a", flags: list[str] | None = None,
        reasons: list[str] | None = None) -> None:
    store.insert_events([feedback_event("north", device, rating=r, scale=5, ts=protocol.utc_timestamp(when),
                                        flags=flags or [], reasons=reasons or []) for r in ratings])


def at(day: int, hour: int) -> datetime:
    """``day`` November 2026 at ``hour``:00 London time (UTC in November)."""
    return datetime(2026, 11, day, hour, 0, tzinfo=UTC)


@pytest.fixture
def seeded(store: Store) -> Store:
    # Week 46 (Mon 9 to Sun 15), 5-point scale (steps of 4):
    #   Alpha:   Mon 9 10:00 five 5s (20 steps); Tue 10 17:00 five 1s with "wait_time" (0)  -> 20/40 = 50, 10 answers
    #   Bravo:   Wed 11 10:00 ten 4s (30); Thu 12 17:00 two 2s with "friendliness" (2)     -> 32/48 = 66.67, 12 answers
    #   Charlie: Fri 13 12:00 three 1s (0)                                                  -> 3 answers: not ranked
    #   a test-mode 1 on Sat 14 (flagged, not counted)
    #   the site: 52 steps over 25 answers -> 52/100 = 52; 26 answers in all, 1 flagged
    put(store, at(9, 10), 5, 5, 5, 5, 5)
    put(store, at(10, 17), 1, 1, 1, 1, 1, reasons=["wait_time"])
    put(store, at(11, 10), *([4] * 10), device="b")
    put(store, at(12, 17), 2, 2, device="b", reasons=["friendliness"])
    put(store, at(13, 12), 1, 1, 1, device="c")
    put(store, at(14, 12), 1, device="b", flags=["test"])
    # Week 45: Alpha Wed 4 five 3s with "wait_time" on two (10 steps) -> 50; Bravo Thu 5 five 5s (20) -> 100;
    #   the site: 30/40 = 75.
    put(store, at(4, 10), 3, 3, 3)
    put(store, at(4, 10), 3, 3, reasons=["wait_time"])
    put(store, at(5, 10), 5, 5, 5, 5, 5, device="b")
    store.record_status(status("a", "online", site="north", backlog=0, alarms=[
        {"code": protocol.TEST_MODE_ALARM, "message": "test mode: answers are flagged test"}]))
    store.record_status(status("b", "offline", site="north", backlog=3, last_error="broker unreachable"))
    return store


def test_the_report_says_index_change_worst_desk_reasons_hours_and_kiosks(seeded: Store) -> None:
    r = report.weekly(seeded, cfg(), "north", now=NOW)  # default: the last complete week
    assert (r["week"], r["start"], r["end"], r["prev_week"]) == ("2026-W46", "2026-11-09", "2026-11-15", "2026-W45")
    assert (r["index"], r["counted"], r["total"], r["flagged"]) == (52, 25, 26, 1)
    assert (r["prev_index"], r["prev_counted"]) == (75, 10)
    assert r["change"]["words"] == "23 points worse than the week before"
    assert r["target_words"] == "18 points below the target of 70"
    assert [(d["weekday"], d["index"], d["counted"]) for d in r["days"]] == [
        ("Mon", 100, 5), ("Tue", 0, 5), ("Wed", 75, 10), ("Thu", None, 2), ("Fri", None, 3), ("Sat", None, 0),
        ("Sun", None, 0)]
    # Worst desk: the lowest index from 10 answers: Alpha (50) before Bravo (66.67); Charlie's 3 are too few.
    assert r["worst_desk"]["name"] == "Desk Alpha"
    assert r["worst_desk"]["change"]["words"] == "the same as the week before"
    assert [(d["name"], d["ranked"]) for d in r["desks"]] == [("Desk Alpha", True), ("Desk Bravo", True),
                                                              ("Desk Charlie", False)]
    assert r["desks"][1]["change"]["words"] == "33 points worse than the week before"  # 67 against 100
    # Reasons this week: wait_time 5, friendliness 2 (of 7); the week before: wait_time 2.
    assert [(x["reason"], x["count"], x["prev_count"]) for x in r["reasons"]] == [("wait_time", 5, 2),
                                                                                   ("friendliness", 2, 0)]
    assert r["reasons"][0]["words"] == "Waiting time" and round(r["reasons"][0]["share"], 3) == round(5 / 7, 3)
    # Hours, the whole week: 17:00 has 7 answers, 2 steps / 28 -> 7.14; 10:00 15 answers, 50/60 -> 83.33;
    # 12:00 has 3 counted answers only (below 5): left out.
    assert [(h["label"], h["index"], h["counted"]) for h in r["worst_hours"]] == [
        ("17:00–18:00", 7.14, 7), ("10:00–11:00", 83.33, 15)]
    k = r["kiosks"]
    assert (k["online"], k["in_service"], k["testing"], k["backlog"], k["well"]) == (1, 2, 1, 3, False)
    assert {x["name"]: x["test_mode"] for x in k["rows"]} == {"Desk Alpha": True, "Desk Bravo": False}
    assert {x["name"]: x["problems"] for x in k["rows"]}["Desk Bravo"] == ["broker unreachable"]


def test_the_email_is_one_self_contained_html_with_inline_styles(seeded: Store) -> None:
    mail = report.email(seeded, cfg(), "north", report.parse_week("2026-W46"), now=NOW)
    assert mail.subject == ("DeskPulse weekly report: North hall, 2026-W46 · index 52, "
                            "23 points worse than the week before")
    html = mail.html
    for outside in ("<script", "<link", "<style", "src=", "url(", "http://", "https://", "class="):
        assert outside not in html, f"{outside!r} in the e-mail"
    assert html.count('style="') > 50
    for text in ("North hall", "Week 2026-W46", "23 points worse than the week before", "Worst desk:",
                 "Desk Alpha", "Waiting time", "17:00–18:00", "test mode", "broker unreachable",
                 "18 points below the target of 70"):
        assert text in html, text
    assert re.search(r'id="week-index"[^>]*>52<', html)
    assert "Index 52/100 from 25 counted answers (23 points worse than the week before; 75 the week before)." \
        in mail.text
    assert "Worst desk: Desk Alpha, 50 from 10 answers" in mail.text and "1 in test mode" in mail.text


def test_a_week_is_named_as_iso_weeks_are() -> None:
    assert report.parse_week("2026-W46") == date(2026, 11, 9)
    assert report.parse_week("2026-W53") == date(2026, 12, 28)  # 2026 has 53 ISO weeks
    assert report.week_name(date(2027, 1, 4)) == "2027-W01"
    with pytest.raises(report.ReportError, match="is not an ISO week like 2026-W47"):
        report.parse_week("2026-46")
    with pytest.raises(report.ReportError, match="does not exist"):
        report.parse_week("2025-W53")
    with pytest.raises(report.ReportError, match="out of range"):
        report.parse_week("1999-W10")


def test_unknown_sites_and_weeks_not_begun_are_refused(seeded: Store) -> None:
    with pytest.raises(report.ReportError, match=r"no site 'west'.*known: north, south"):
        report.weekly(seeded, cfg(), "west", now=NOW)
    with pytest.raises(report.ReportError, match="has not begun at North hall"):
        report.weekly(seeded, cfg(), "north", report.parse_week("2026-W48"), now=NOW)
    # A week in progress is fine, and says so.
    assert report.weekly(seeded, cfg(), "north", report.parse_week("2026-W47"), now=NOW)["in_progress"] is True


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_the_page_prints_and_refuses_bad_input_clearly(seeded: Store) -> None:
    client = TestClient(create_app(seeded, cfg()))
    reply = client.get("/report/weekly", params={"site": "north", "week": "2026-W46"})
    assert reply.status_code == 200
    page = reply.text
    assert "@media print" in page and "@page" in page and "<script" not in page
    assert "Desk Alpha" in page and "23 points worse than the week before" in page
    assert 'href="/report/weekly?site=north&amp;week=2026-W45"' in page  # the week before
    bad = client.get("/report/weekly", params={"site": "north", "week": "2026-W99"})
    assert bad.status_code == 422 and "does not exist" in bad.text
    missing = client.get("/report/weekly", params={"site": "west"})
    assert missing.status_code == 404 and "no site &#39;west&#39;" in missing.text
    chooser = client.get("/report/weekly")  # two sites: choose one
    assert chooser.status_code == 200 and 'href="/report/weekly?site=south"' in chooser.text
    # The overview links to the report of its site.
    assert 'href="/report/weekly?site=north"' in client.get("/", params={"site": "north"}).text


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_the_command_writes_the_report(seeded: Store, store_url: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "central.toml"
    conf.write_text(f'[database]\nurl = "{store_url}"\n[dashboard]\nrank_min_answers = 10\n'
                    '[sites.north]\nname = "North hall"\ntimezone = "Europe/London"\ntarget = 70\n'
                    '[sites.north.desks.a]\nname = "Desk Alpha"\n')
    out = tmp_path / "week46.html"
    assert cli.main(["weekly-report", "--config", str(conf), "--site", "north", "--week", "2026-W46",
                     "--out", str(out)]) == 0
    html = out.read_text()
    assert "23 points worse than the week before" in html and "Desk Alpha" in html and "<style" not in html
    assert f"{out}: weekly report of North hall, 2026-W46" in capsys.readouterr().out
    assert cli.main(["weekly-report", "--config", str(conf), "--site", "north", "--week", "2026-W46",
                     "--text", "--out", "-"]) == 0
    assert "Index 52/100 from 25 counted answers" in capsys.readouterr().out
    assert cli.main(["weekly-report", "--config", str(conf), "--site", "north", "--week", "W46",
                     "--out", str(out)]) == 2
    assert "is not an ISO week like 2026-W47" in capsys.readouterr().err
    assert cli.main(["weekly-report", "--config", str(conf), "--site", "nowhere", "--out", str(out)]) == 2
    assert "no site 'nowhere'" in capsys.readouterr().err
    nowhere = f"sqlite:///{tmp_path / 'none.sqlite3'}"
    assert cli.main(["weekly-report", "--db", nowhere, "--site", "north", "--out", str(out)]) == 1
    assert "no database at" in capsys.readouterr().err and not (tmp_path / "none.sqlite3").exists()
    with pytest.raises(SystemExit) as done:
        cli.main(["weekly-report", "--help"])
    assert done.value.code == 0
    help_text = capsys.readouterr().out
    assert "--week YYYY-Www" in help_text and "/report/weekly" in help_text
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "weekly-report --site SITE" in capsys.readouterr().out


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_the_command_mails_the_report_through_the_smtp_server(seeded: Store, store_url: str, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from tests.support.alert_receivers import SmtpReceiver

    with SmtpReceiver() as smtp:
        conf = tmp_path / "central.toml"
        conf.write_text(f'[database]\nurl = "{store_url}"\n[dashboard]\nrank_min_answers = 10\n'
                        f'[mail]\nhost = "127.0.0.1"\nport = {smtp.port}\nsecurity = "none"\n'
                        'from = "deskpulse@example.com"\n'
                        '[sites.north]\nname = "North hall"\ntimezone = "Europe/London"\ntarget = 70\n'
                        '[sites.north.desks.a]\nname = "Desk Alpha"\n')
        assert cli.main(["weekly-report", "--config", str(conf), "--site", "north", "--week", "2026-W46",
                         "--mail-to", "manager@example.com", "--mail-to", "ops@example.com"]) == 0
        assert "sent to manager@example.com, ops@example.com" in capsys.readouterr().out
        assert len(smtp.messages) == 1
        envelope = smtp.messages[0]
        assert envelope.rcpt_tos == ["manager@example.com", "ops@example.com"]
        body = envelope.content.decode()
        assert "North hall" in body and "text/html" in body and "text/plain" in body
        assert "23 points worse than the week before" in body.replace("=\r\n", "").replace("=\n", "")
    # The server gone: a clear error, exit 1.
    assert cli.main(["weekly-report", "--config", str(conf), "--site", "north", "--week", "2026-W46",
                     "--mail-to", "manager@example.com"]) == 1
    assert "the report was not sent" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["weekly-report", "--config", str(conf), "--site", "north"])  # neither --out nor --mail-to
    assert "--out FILE, --mail-to ADDRESS" in capsys.readouterr().err

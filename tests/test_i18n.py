"""Staff pages in the kiosk's six languages (central/i18n.py, central/locale/).

- The catalogues are walked: every message the sources use (Python and templates,
  extracted the way babel.cfg says) has a translation in de, fr, es, uk and el, not
  fuzzy, with the same ``%(name)s`` values; messages.pot is up to date.
- Every staff page renders in each language with ``<html lang>`` set and no English
  message left in its text (any catalogue message whose translation differs).
- The language is chosen by ``?lang=``, the account, the picker's cookie, the
  browser's ``Accept-Language``, else English; numbers and dates follow it.
"""

from __future__ import annotations

import html
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from fastapi.testclient import TestClient

from central import alerts as book
from central import i18n
from central.accounts import Accounts
from central.auth import hash_password
from central.store import Store
from display import texts
from tests.test_dashboard import TV_TOKEN, make_app, make_config, put

ROOT = Path(__file__).resolve().parents[1]
CENTRAL = ROOT / "central"
OTHERS = tuple(i18n.catalogue_languages())
PLACEHOLDER = re.compile(r"%\([a-z_]+\)s|%%")
ADMIN_PASSWORD = "admin-password-123"
SAME = {"Origin": "http://testserver"}


def extracted() -> dict[str | tuple[str, str], list[str]]:
    """Every message of central/ (Python and templates) as babel.cfg extracts it, with where it is."""
    with (ROOT / "babel.cfg").open() as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    found: dict[str | tuple[str, str], list[str]] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(str(CENTRAL), method_map, options_map):
        key = message if isinstance(message, str) else (message[0], message[1])
        found.setdefault(key, []).append(f"{filename}:{lineno}")
    return found


def catalogue(lang: str) -> Any:
    with (CENTRAL / "locale" / lang / "LC_MESSAGES" / "messages.po").open("rb") as po:
        return read_po(po, locale=lang)


# --------------------------------------------------------------------------- the catalogues


def test_the_sources_have_messages_in_python_and_templates() -> None:
    found = extracted()
    places = {p.split(":")[0] for where in found.values() for p in where}
    # Both extractors work (the Python one sees calls inside f-strings, Babel's own would not).
    assert any(p.endswith(".html") for p in places) and any(p.endswith(".py") for p in places)
    assert "Set password" in found and any("admin.py" in p for p in found["Set password"])  # in an f-string
    assert ("%(num)s open alert", "%(num)s open alerts") in found  # ngettext in a template
    assert len(found) > 300


@pytest.mark.parametrize("lang", OTHERS)
def test_every_message_has_a_translation_in_every_language(lang: str) -> None:
    cat = catalogue(lang)
    problems = []
    for msgid, where in extracted().items():
        entry = cat.get(msgid if isinstance(msgid, str) else msgid[0])
        if entry is None:
            problems.append(f"missing: {msgid!r} ({where[0]})")
            continue
        if entry.fuzzy:
            problems.append(f"fuzzy: {msgid!r}")
        strings = entry.string if isinstance(entry.string, tuple) else (entry.string,)
        if not all(strings):
            problems.append(f"empty: {msgid!r} ({where[0]})")
            continue
        wanted = sorted(PLACEHOLDER.findall(msgid if isinstance(msgid, str) else msgid[1]))
        for s in strings:
            if sorted(PLACEHOLDER.findall(s)) != wanted:
                problems.append(f"values differ: {msgid!r} -> {s!r}")
        if isinstance(msgid, tuple) and len(strings) != cat.num_plurals:
            problems.append(f"plural forms: {msgid!r} has {len(strings)}, {lang} needs {cat.num_plurals}")
    assert not problems, f"{lang}: " + "\n".join(problems[:40])


def test_the_template_lists_exactly_the_messages_of_the_sources() -> None:
    with (CENTRAL / "locale" / "messages.pot").open("rb") as pot:
        listed = {m.id if isinstance(m.id, str) else (m.id[0], m.id[1]) for m in read_po(pot) if m.id}
    found = set(extracted())
    assert found - listed == set(), "new messages: run pybabel extract and update (docs/dashboard.md, Languages)"
    assert listed - found == set(), "messages no longer used: run pybabel extract and update"


def test_a_catalogue_is_compiled_and_a_fuzzy_entry_is_not_used(tmp_path: Path, monkeypatch: Any) -> None:
    (tmp_path / "de" / "LC_MESSAGES").mkdir(parents=True)
    (tmp_path / "de" / "LC_MESSAGES" / "messages.po").write_text(
        'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n\n'
        'msgid "Filters"\nmsgstr "Filter"\n\n#, fuzzy\nmsgid "Reset"\nmsgstr "Zurück"\n', encoding="utf-8")
    monkeypatch.setattr(i18n, "LOCALE_DIR", tmp_path)
    i18n.translations.cache_clear()
    token = i18n.use("de")
    try:
        assert (i18n.gettext("Filters"), i18n.gettext("Reset"), i18n.gettext("Show")) == ("Filter", "Reset", "Show")
    finally:
        i18n.reset(token)
        monkeypatch.undo()
        i18n.translations.cache_clear()


# --------------------------------------------------------------------------- choosing the language


@pytest.mark.parametrize(("header", "lang"), [
    ("de-DE,de;q=0.9,en;q=0.8", "de"), ("fr-CH, fr;q=0.9", "fr"), ("ja, uk;q=0.5, de;q=0.4", "uk"),
    ("en-GB", "en"), ("el", "el"), ("es-419", "es"), ("ja, zh", None), ("*", None), ("", None),
    ("de;q=0, fr;q=0.1", "fr"), ("de;q=bad, es", "es"),
])
def test_the_browser_language_is_the_best_of_ours(header: str, lang: str | None) -> None:
    assert i18n.from_accept(header) == lang


def test_the_order_is_query_account_cookie_browser_english() -> None:
    assert i18n.choose("es", "fr", "de", account="uk") == "es"
    assert i18n.choose(None, "fr", "de", account="uk") == "uk"
    assert i18n.choose(None, "fr", "de") == "fr"
    assert i18n.choose("xx", "nope", "el;q=0.5") == "el"
    assert i18n.choose(None, None, None) == "en"


def test_numbers_and_dates_are_the_languages() -> None:
    day = date(2026, 11, 29)
    shown = {}
    for lang in i18n.LANGUAGES:
        token = i18n.use(lang)
        try:
            shown[lang] = (i18n.number(1234567), i18n.day(day), i18n.day_range("2026-10-31", "2026-11-29"))
        finally:
            i18n.reset(token)
    assert shown["en"] == ("1,234,567", "Sun 29 Nov", "31 Oct – 29 Nov 2026")
    assert shown["de"] == ("1.234.567", "So., 29. Nov.", "31. Okt. – 29. Nov. 2026")
    assert shown["fr"][0] == "1\u202f234\u202f567" and shown["fr"][1] == "dim. 29 nov."
    assert shown["uk"][1] == "нд, 29 лист." and shown["el"][1] == "Κυρ 29 Νοε"
    assert shown["es"][1] == "dom, 29 nov"


# --------------------------------------------------------------------------- every page in every language


def seed(store: Store) -> None:
    """A fortnight of answers at both desks (reasons, a flagged one), an open and an acknowledged alert."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    for days in range(14):
        when = now - timedelta(days=days, hours=1)
        for i, rating in enumerate((5, 4, 2, 1, 5, 3)):
            put(store, when - timedelta(minutes=i), rating, device="ab"[i % 2],
                reasons=["wait_time", "friendliness"] if rating <= 2 else [])
    put(store, now - timedelta(minutes=5), 1, flags=["rapid_repeat"])
    for key, device in (("i18n-open", "a"), ("i18n-acked", "b")):
        cand = book.Candidate(key=key, kind=book.UNHAPPY, site="north", device=device,
                              since=now - timedelta(minutes=15), until=now, late=False,
                              message=f"Desk {device}: 3 of 4 unhappy", overlap=timedelta(minutes=15))
        alert = book.raise_alert(store, cand, send_on=[])
        assert alert is not None
        if key == "i18n-acked":
            book.acknowledge(store, alert.alert_id, "boss", "opened a second desk", send_on=[])
    Accounts(store).add("boss", hash_password(ADMIN_PASSWORD), "admin")


def visible(page: str) -> str:
    """A page's words as a reader (or a screen reader) meets them: text, titles, labels, placeholders."""
    page = re.sub(r"<(script|style|template)\b.*?</\1>", " ", page, flags=re.S)
    attrs = " ".join(re.findall(r'(?:title|aria-label|placeholder|alt)="([^"]*)"', page))
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page) + " " + attrs).split())


def english_leftovers(text: str, lang: str) -> list[str]:
    """Catalogue messages whose English is in ``text`` though ``lang`` says them otherwise."""
    left = []
    for m in catalogue(lang):
        if not m.id or not isinstance(m.id, str) or "%" in m.id or len(m.id) < 8:
            continue
        english = visible(m.id)
        translated = visible(m.string)
        if english in translated or not re.search(rf"(?<!\w){re.escape(english)}(?!\w)", text):
            continue
        left.append(english)
    return left


def signed_in(app: Any) -> TestClient:
    client = TestClient(app, base_url="http://testserver")
    reply = client.post("/login", data={"name": "boss", "password": ADMIN_PASSWORD, "next": "/"}, headers=SAME,
                        follow_redirects=False)
    assert reply.status_code == 303, reply.text
    return client


PAGES = ["/", "/partials/overview", f"/tv/{TV_TOKEN}", f"/tv/{TV_TOKEN}/partial", "/alerts",
         "/report/weekly?site=north", "/admin/accounts", "/admin/sites", "/admin/surveys/north", "/admin/audit"]


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("lang", i18n.LANGUAGES)
def test_every_staff_page_renders_in_the_language(store: Store, lang: str) -> None:
    seed(store)
    app = make_app(store, make_config())
    anonymous = TestClient(app, base_url="http://testserver")
    client = signed_in(app)
    pages = [(client, p) for p in PAGES] + [(anonymous, "/login")]
    for who, path in pages:
        reply = who.get(path, params={"lang": lang}, headers={"accept": "text/html"})
        assert reply.status_code == 200, f"{path}: {reply.status_code} {reply.text[:300]}"
        if not path.endswith(("partial", "/partials/overview")):
            assert f'<html lang="{lang}">' in reply.text, path
        text = visible(reply.text)
        if lang == "en":
            # The check below can fail: the English page read against German finds English.
            assert path.startswith("/tv/") or english_leftovers(text, "de"), path
            continue
        left = english_leftovers(text, lang)
        assert not left, f"{path} in {lang} still says in English: {left}"
    # The words a kiosk shows are the kiosk's own in that language (one vocabulary for both).
    overview = visible(client.get("/", params={"lang": lang}).text)
    assert texts.reason(lang, "wait_time") in overview
    assert texts.labels(lang, 5)[4] in overview
    report = visible(client.get("/report/weekly", params={"site": "north", "lang": lang}).text)
    assert i18n.translations(lang).gettext("Worst hours of the day") in report
    assert texts.reason(lang, "wait_time") in report


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_known_page_is_german_with_german_numbers(store: Store) -> None:
    seed(store)
    put(store, datetime.now(UTC) - timedelta(days=2), 4, device="a", n=1200)
    client = signed_in(make_app(store, make_config()))
    text = visible(client.get("/", params={"lang": "de", "site": "north"}).text)
    for words in ("Filter", "Index heute", "Was besser sein könnte", "Live-Feed", "Kiosk-Zustand", "Wartezeit"):
        assert words in text, words
    assert re.search(r"\b1\.\d{3}\b", text), "a count over 1,000 with the German separator"
    assert re.search(r"\b(Mo|Di|Mi|Do|Fr|Sa|So)\., \d{1,2}\. ", text), "German dates"


def test_the_browser_then_the_cookie_then_the_account_choose(store: Store) -> None:
    seed(store)
    app = make_app(store, make_config())
    client = TestClient(app, base_url="http://testserver")
    login = client.get("/login", headers={"accept-language": "uk,en;q=0.5"})
    assert '<html lang="uk">' in login.text and "Увійти" in login.text
    # The picker on the sign-in page: a cookie (nobody signed in yet).
    reply = client.post("/lang", data={"lang": "es", "next": "/login"}, headers=SAME, follow_redirects=False)
    assert reply.status_code == 303 and reply.headers["location"] == "/login"
    assert '<html lang="es">' in client.get("/login", headers={"accept-language": "uk"}).text
    reply = client.post("/login", data={"name": "boss", "password": ADMIN_PASSWORD, "next": "/"}, headers=SAME,
                        follow_redirects=False)
    assert reply.status_code == 303
    # Signed in, the picker stores the account's language: it wins over the cookie and the browser.
    client.post("/lang", data={"lang": "el", "next": "/"}, headers=SAME, follow_redirects=False)
    assert Accounts(store).get("boss").lang == "el"  # type: ignore[union-attr]
    client.cookies.set(i18n.COOKIE, "fr")
    assert '<html lang="el">' in client.get("/", headers={"accept-language": "de"}).text
    # ?lang= is this request's (and the cookie's), the account's stays.
    assert '<html lang="de">' in client.get("/alerts", params={"lang": "de"}).text
    assert Accounts(store).get("boss").lang == "el"  # type: ignore[union-attr]
    # An unknown language is refused by the picker, not stored.
    assert client.post("/lang", data={"lang": "xx", "next": "/"}, headers=SAME).status_code == 400
    # A cross-site picker is refused like any other POST.
    assert client.post("/lang", data={"lang": "de"}, headers={"Origin": "http://evil.example"}).status_code == 403
    assert Accounts(store).get("boss").lang == "el"  # type: ignore[union-attr]


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_english_is_the_default_and_unchanged(store: Store) -> None:
    seed(store)
    client = signed_in(make_app(store, make_config()))
    page = client.get("/", headers={"accept": "text/html"}).text
    assert '<html lang="en">' in page and "Today’s index" in page and "What could be better" in page
    assert i18n.COOKIE not in client.cookies


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_the_live_alerts_block_is_in_the_pages_language(store: Store) -> None:
    seed(store)
    client = signed_in(make_app(store, make_config()))
    # The block is rendered on a worker thread for the stream: it keeps the request's language.
    body = client.get("/api/alerts/stream", params={"site": "north", "lang": "de"}).text
    assert "1 offener Alarm" in body and "Bestätigen" in body and "Unzufriedene Kunden" in body
    body = client.get(f"/tv/{TV_TOKEN}/alerts", params={"lang": "uk"}).text
    assert "1 відкрита тривога" in body and "Незадоволені клієнти" in body
    body = client.get("/api/alerts/stream", params={"site": "north"}).text  # the cookie: still Ukrainian
    assert "1 відкрита тривога" in body


def test_the_catalogues_are_in_the_package() -> None:
    import tomllib

    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["central"]
    for lang in OTHERS:
        po = Path("locale", lang, "LC_MESSAGES", "messages.po")
        assert (CENTRAL / po).is_file()
        assert any(po.match(g) for g in globs), f"{po} is not in central's package-data: installed, it would be English"

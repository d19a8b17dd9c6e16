"""Staff pages in the kiosk's six languages: gettext catalogues (Babel), the request's language, numbers and dates.

- **Catalogues**: ``central/locale/<lang>/LC_MESSAGES/messages.po``, one per
  language but English (the msgids are the English text). They are compiled in
  memory the first time a language is used (``babel.messages.pofile.read_po``,
  ``babel.messages.mofile.write_mo``, ``babel.support.Translations``): no build
  step and no binary file in git. A fuzzy or empty entry is not used (the
  English shows); ``tests/test_i18n.py`` fails when a string of the sources has
  none.
- **The request's language** is a context variable set by the guard
  (:mod:`central.auth`) for each request: ``?lang=`` (and the picker's cookie),
  then the signed-in account's language, then the cookie, then the browser's
  ``Accept-Language``, then English. Templates and Python both translate through
  :func:`gettext`, so the thread a page is rendered on does not matter.
- **Numbers and dates** for the language: :func:`number`, :func:`day`,
  :func:`day_range`, :func:`weekday` (``babel.numbers``, ``babel.dates``).

Adding a string: wrap it (``_("…")`` in Python or a template, ``%(name)s`` for
values), then ``pybabel extract`` and ``pybabel update`` (docs/dashboard.md,
"Languages") and translate the new entries in every ``messages.po``.
"""

from __future__ import annotations

import ast
import gettext as _gettext
import io
from collections.abc import Iterable, Iterator
from contextvars import ContextVar, Token
from datetime import date
from functools import lru_cache
from html import escape
from pathlib import Path
from typing import Any, Final

from babel import Locale, negotiate_locale
from babel.dates import format_date, format_skeleton
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import Translations
from markupsafe import Markup

#: The kiosk's languages (display/texts.py), English first: the staff pages' too.
LANGUAGES: Final = ("en", "de", "fr", "es", "uk", "el")
#: Each language in its own words (the picker).
LANGUAGE_NAMES: Final = {"en": "English", "de": "Deutsch", "fr": "Français", "es": "Español",
                         "uk": "Українська", "el": "Ελληνικά"}
DEFAULT: Final = "en"
#: The picker's cookie (a year; not a secret, so readable and not HttpOnly-critical).
COOKIE: Final = "deskpulse_lang"
COOKIE_MAX_AGE: Final = 365 * 24 * 3600
LOCALE_DIR: Final = Path(__file__).resolve().parent / "locale"
DOMAIN: Final = "messages"

_current: ContextVar[str] = ContextVar("deskpulse_lang", default=DEFAULT)


def known(lang: str | None) -> str | None:
    """``lang`` if it is one of :data:`LANGUAGES` (case and region ignored: ``de-AT`` -> ``de``), else None."""
    if not lang:
        return None
    base = lang.strip().replace("_", "-").split("-")[0].lower()
    return base if base in LANGUAGES else None


@lru_cache(maxsize=len(LANGUAGES))
def translations(lang: str) -> _gettext.NullTranslations:
    """The compiled catalogue of ``lang`` (English and an unknown language: the msgids themselves)."""
    path = LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po"
    if lang == DEFAULT or lang not in LANGUAGES or not path.is_file():
        return _gettext.NullTranslations()
    with path.open("rb") as po:
        catalog = read_po(po, locale=lang, domain=DOMAIN)
    buf = io.BytesIO()
    write_mo(buf, catalog, use_fuzzy=False)
    buf.seek(0)
    return Translations(buf, domain=DOMAIN)


def current() -> str:
    """The language of the request being answered (English outside a request)."""
    return _current.get()


def use(lang: str) -> Token[str]:
    """Make ``lang`` (one of :data:`LANGUAGES`; else English) the current language; returns the reset token."""
    return _current.set(known(lang) or DEFAULT)


def reset(token: Token[str]) -> None:
    """Undo :func:`use`."""
    _current.reset(token)


def gettext(message: str) -> str:
    """``message`` in the current language (itself when the catalogue has no translation)."""
    return translations(current()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """The singular or plural form for ``n`` in the current language (its own plural rules)."""
    return translations(current()).ngettext(singular, plural, n)


_ = gettext


def N_(message: str) -> str:  # noqa: N802 - the gettext convention for "extract, translate later"
    """Mark ``message`` for the catalogue without translating it now (module-level constants)."""
    return message


#: A kiosk's state in words (kiosk health, the report, the survey editor).
KIOSK_STATES: Final = {"online": N_("online"), "offline": N_("offline"), "retired": N_("retired"),
                       "unknown": N_("unknown")}


def kiosk_state(state: str | None) -> str:
    """A kiosk's state in the current language ("no status" when it has not reported one)."""
    if not state:
        return gettext("no status")
    return gettext(KIOSK_STATES[state]) if state in KIOSK_STATES else state


def from_accept(header: str | None) -> str | None:
    """The best of :data:`LANGUAGES` for an ``Accept-Language`` header (q-values honoured), or None."""
    if not header:
        return None
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(header.split(",")[:30]):
        tag, _sep, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        if tag and tag != "*" and q > 0:
            ranked.append((-q, i, tag.strip()))
    preferred: list[str] = []
    for _q, _i, tag in sorted(ranked):
        base = tag.replace("_", "-").split("-")[0].lower()
        preferred += [tag.replace("_", "-"), base]
    found = negotiate_locale(preferred, LANGUAGES, sep="-")
    return known(found)


def choose(query: str | None, cookie: str | None, accept: str | None, account: str | None = None) -> str:
    """The request's language: ``?lang=``, the account's, the cookie's, the browser's, else English."""
    for candidate in (query, account, cookie):
        lang = known(candidate)
        if lang:
            return lang
    return from_accept(accept) or DEFAULT


# --------------------------------------------------------------------------- numbers and dates

def _locale() -> Locale:
    return Locale.parse(current())


def number(value: float | int | None, decimals: int = 0) -> str:
    """``value`` with the language's separators (1,234 · 1.234 · 1 234); an en dash for None."""
    if value is None:
        return "–"
    pattern = "#,##0" + ("." + "0" * decimals if decimals else "")
    return format_decimal(value, format=pattern, locale=_locale())


#: English patterns (what the pages showed before they had languages) and the CLDR skeleton each language
#: fills in its own way ("So., 22. Nov.", "dim. 22 nov.", "нд, 22 лист.").
_SKELETONS: Final = {"EEE d MMM": "MMMEd", "d MMM": "MMMd", "d MMM y": "yMMMd", "EEE d MMM y": "yMMMEd"}


def day(value: date | str, pattern: str = "EEE d MMM") -> str:
    """A date in the language (``Sun 22 Nov``, ``So., 22. Nov.``, ``нд, 22 лист.``); ``value`` may be ISO text.

    ``pattern``: the English one (a CLDR pattern); other languages use the matching skeleton, or ``full``
    for any other pattern (a weekday, day, month and year in the language's own order).
    """
    d = date.fromisoformat(value) if isinstance(value, str) else value
    if current() == DEFAULT:
        return format_date(d, format=pattern, locale=_locale())
    skeleton = _SKELETONS.get(pattern)
    if skeleton is None:
        return format_date(d, format="full", locale=_locale())
    return format_skeleton(skeleton, d, locale=_locale())


def day_range(start: date | str, end: date | str) -> str:
    """Two dates as a range ("24 Oct – 22 Nov 2026"); one date when they are equal."""
    a = date.fromisoformat(start) if isinstance(start, str) else start
    b = date.fromisoformat(end) if isinstance(end, str) else end
    if a == b:
        return day(b, "d MMM y")
    first = day(a, "d MMM") if a.year == b.year else day(a, "d MMM y")
    return f"{first} – {day(b, 'd MMM y')}"


def weekday(index: int, width: str = "abbreviated") -> str:
    """Monday (0) to Sunday (6) in the language ("Mon", "Mo.", "пн")."""
    names: Any = _locale().days["format"][width]
    return str(names[index])


def picker(next_path: str) -> str:
    """The language picker (HTML): a form posting to ``/lang`` (the account's language, else a cookie), then back.

    ``next_path`` must be a path on this site (the ``/lang`` route checks it again)."""
    lang = current()
    back = escape(next_path if next_path.startswith("/") and not next_path.startswith("//") else "/")
    options = "".join(f'<option value="{code}" lang="{code}"{" selected" if code == lang else ""}>'
                      f'{escape(name)}</option>' for code, name in LANGUAGE_NAMES.items())
    return (f'<form class="lang" method="post" action="/lang"><input type="hidden" name="next" value="{back}">'
            f'<label><span class="lang-label">{escape(gettext("Language"))}</span> <select name="lang">{options}'
            f'</select></label> <button type="submit">{escape(gettext("Change"))}</button></form>')


def install(env: Any) -> None:
    """Give a Jinja environment ``_``/``gettext``/``ngettext`` (jinja2.ext.i18n, new style) and the formatters."""
    env.add_extension("jinja2.ext.i18n")
    env.install_gettext_callables(gettext=gettext, ngettext=ngettext, newstyle=True)
    env.globals.update(current_lang=current, LANGUAGES=LANGUAGES, LANGUAGE_NAMES=LANGUAGE_NAMES,
                       lang_number=number, lang_picker=lambda next_path: Markup(picker(next_path)))
    env.filters.update(lang_number=number, lang_day=day)


#: The functions whose string arguments are messages (``ngettext``: singular and plural).
KEYWORDS: Final = ("_", "_t", "gettext", "N_", "ngettext")


def extract_python(fileobj: Any, keywords: Any, comment_tags: Any, options: Any) -> Iterator[
        tuple[int, str, str | tuple[str, str], list[str]]]:
    """Babel's extractor for our Python (babel.cfg): every :data:`KEYWORDS` call with literal strings.

    Unlike Babel's own, it reads the syntax tree, so calls inside f-strings (the admin pages' HTML) count.
    """
    tree = ast.parse(fileobj.read().decode("utf-8"))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name) or node.func.id not in KEYWORDS:
            continue
        strings = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        if node.func.id == "ngettext" and len(strings) >= 2:
            yield node.lineno, "ngettext", (strings[0], strings[1]), []
        elif node.func.id != "ngettext" and strings and len(node.args) == 1:
            yield node.lineno, "gettext", strings[0], []


def catalogue_languages() -> Iterable[str]:
    """The languages with a catalogue (every one but English)."""
    return [lang for lang in LANGUAGES if lang != DEFAULT]

"""Staff sign-in and wall-TV tokens.

- **Accounts** (:mod:`central.accounts`: the store's, with a role, and
  ``[dashboard.accounts]``, admins). A viewer gets 403 on ``/admin…`` and
  ``/api/admin…``. With no account at all the dashboard is
  open to whoever reaches ``web.bind`` (a loopback address unless
  ``dashboard.open = true``; every page shows a band saying so); with any,
  every page, the JSON API, the live feed and the exports need a signed-in
  session, and ``/login`` shows a form.
- **Sessions** live in the store (:mod:`central.sessions`): the cookie
  ``deskpulse_session`` holds a random token, the store an HMAC of it under
  central's secret file, so logout, a new password or a removed account end a
  session at once, and nothing in ``central.toml`` or the database lets anyone
  make a cookie. A session lasts 12 hours from sign-in. ``HttpOnly``,
  ``SameSite=Lax``, and ``Secure`` when the request came over HTTPS.
- **Display tokens** (``[dashboard.tv.<name>]``, and those an admin makes:
  :mod:`central.tvtokens`) open ``/tv/<token>`` and the
  paths under it, nothing else: no login form on a TV.
- **Failed sign-ins** slow down the address that sent them, and an account's
  failures slow down only addresses that failed too (:mod:`central.throttle`,
  kept in the store); each is logged with the client's address, the first of a
  kind per address at once and the rest as one line a minute
  (:mod:`central.logsummary`).
- **Cross-site requests**: every POST (any method but GET, HEAD and OPTIONS)
  whose ``Origin`` (or, without it, ``Referer``) is not this site's own
  ``Host`` nor in ``web.origins`` is refused with a 403, accounts or not.
- **Bounded work per sign-in**: the form is read up to 4 KiB, a name is at most
  64 characters and a password 1,024 (checked before hashing or logging), and
  at most :data:`MAX_CONCURRENT_CHECKS` argon2 checks run at once; more is a 429.
"""

from __future__ import annotations

import hmac
import html
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Final
from urllib.parse import parse_qs, quote, urlsplit

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from central import i18n
from central.accounts import Account, AccountError, Accounts
from central.config import DashboardConfig, DisplayToken
from central.i18n import _
from central.logsummary import SummaryLog
from central.sessions import SESSION_S, Sessions, credential_of
from central.throttle import Throttle, address_key
from central.tvtokens import TvTokens

log = logging.getLogger("deskpulse.central.auth")

COOKIE: Final = "deskpulse_session"
#: Password checks running at once at most (argon2 takes 64 MiB each); more sign-ins get a 429.
MAX_CONCURRENT_CHECKS: Final = 2
#: Seconds a sign-in refused for being one too many at once is told to wait (``Retry-After``).
BUSY_RETRY_S: Final = 1
#: The largest sign-in form read (bytes); a larger one is a 413 before anything is hashed or logged.
MAX_FORM_BYTES: Final = 4096
#: The longest account name and password accepted (characters).
MAX_NAME: Final = 64
MAX_PASSWORD: Final = 1024
#: Paths anyone may open (the login form itself, liveness, the stylesheet).
PUBLIC_PREFIXES: Final = ("/login", "/healthz", "/static/", "/lang")

_HASHER: Final = PasswordHasher()
# Verified against when the name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH: Final = _HASHER.hash(secrets.token_hex(16))


def hash_password(password: str) -> str:
    """An argon2id hash for ``[dashboard.accounts]``."""
    return _HASHER.hash(password)


def verify(hashed: str, password: str) -> bool:
    """Whether ``password`` matches the argon2 ``hashed`` (False for a hash that is not one)."""
    try:
        return _HASHER.verify(hashed, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def new_token() -> str:
    """A display token: 32 random bytes, URL-safe (43 characters)."""
    return secrets.token_urlsafe(32)


#: Paths only an admin may open (a viewer gets 403).
ADMIN_PREFIXES: Final = ("/admin", "/api/admin")


class Auth:
    """Checks passwords, begins and reads server-side sessions, and guards the app's paths.

    Args:
        dashboard: display tokens.
        sessions: the store's sessions table.
        throttle: the store's sign-in throttle.
        accounts: every account (the store's and ``[dashboard.accounts]``).
        tv: every display token (the store's and ``[dashboard.tv]``).
    """

    def __init__(self, dashboard: DashboardConfig, sessions: Sessions, throttle: Throttle,
                 accounts: Accounts, tv: TvTokens) -> None:
        self.dashboard = dashboard
        self.accounts = accounts
        self.tv = tv
        self.sessions = sessions
        self.throttle = throttle
        #: Password checks under way; changed only on the event loop's thread (see :func:`login`).
        self.checking = 0
        #: Refusals, one line per client address and kind a minute (a flood of guesses costs a few lines).
        self.refusals = SummaryLog(log)

    def enabled(self) -> bool:
        """Whether anyone can sign in (else the dashboard is open). Reads the store."""
        return self.accounts.any()

    # ---------------------------------------------------------------- sessions
    def begin(self, name: str) -> str:
        """A new session for ``name`` (signed in just now); the cookie's value.

        Raises:
            KeyError: ``name`` is no account (any more).
        """
        account = self.accounts.get(name)
        if account is None:
            raise KeyError(name)
        return self.sessions.begin(name, credential_of(account.password_hash))

    def user(self, cookie: str | None) -> Account | None:
        """The account a cookie's session signs in, or None (missing, unknown, ended, expired, a changed
        password or a removed account). Reads the store: call it off the event loop."""
        if not cookie:
            return None
        session = self.sessions.get(cookie)
        if session is None:
            return None
        account = self.accounts.get(session.account)
        if account is None or not hmac.compare_digest(session.credential, credential_of(account.password_hash)):
            return None
        return account

    def end(self, cookie: str | None) -> None:
        """End the cookie's session (logout). Reads the store: call it off the event loop."""
        if cookie:
            self.sessions.end(cookie)

    # --------------------------------------------------------------- passwords
    def check(self, name: str, password: str, client: str = "?") -> tuple[bool, str, int]:
        """Whether ``password`` is ``name``'s: (ok, the reason when not, seconds to wait when throttled).

        Reads and writes the store and runs argon2: call it off the event loop.
        """
        account = self.accounts.get(name)
        known = account.name if account is not None else None
        wait = self.throttle.wait(client, known)
        if wait:
            self.refusals.warning(f"sign-in for {name!r} from {client} refused: too many failures (wait {wait} s)",
                                  key=f"throttled {address_key(client)}")
            return False, _("Too many failed sign-ins. Try again in %(n)s seconds.") % {"n": wait}, wait
        if verify(account.password_hash if account else _DUMMY_HASH, password) and known is not None:
            self.throttle.succeeded(client, known)
            log.info("%r signed in from %s", name, client)
            return True, "", 0
        self.throttle.failed(client, known)
        self.refusals.warning(f"failed sign-in for {name!r} from {client}", key=f"failed {address_key(client)}")
        return False, _("That name and password do not match."), 0

    # ------------------------------------------------------------------ guard
    def verdict(self, path: str, cookie: str | None) -> tuple[int, Account | DisplayToken | None]:
        """What the guard does with a request for ``path``: (200 go on, 401 sign in first, 403 not for
        this account, 404 not a display token), and who asks (the signed-in account, or the display
        token of a ``/tv/`` path). Reads the store."""
        if path.startswith(PUBLIC_PREFIXES):
            return 200, None
        if path.startswith("/tv/"):
            display = self.tv.find(path[4:].split("/", 1)[0])
            return (200 if display is not None else 404), display
        admin_only = path.startswith(ADMIN_PREFIXES)
        if not self.enabled():
            return (403 if admin_only else 200), None
        user = self.user(cookie)
        if user is None:
            return 401, None
        if admin_only and user.role != "admin":
            return 403, user
        return 200, user


#: Methods that change nothing: no origin check.
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})


def foreign_origin(request: Request, trusted: tuple[str, ...] = ()) -> str | None:
    """The origin a state-changing request came from when it is not this site's, else None.

    A browser sends ``Origin`` with every POST (and ``Referer`` with most); the
    request is this site's when that origin's host and port are the request's
    own ``Host``, or the origin is one of ``trusted`` (``web.origins``). A
    request with neither header is no browser's cross-site form (a script or
    ``curl``), so it passes: what a cookie signs in is guarded by the session.

    Args:
        request: the incoming request.
        trusted: further origins allowed (lower case, ``scheme://host[:port]``).
    """
    if request.method in SAFE_METHODS:
        return None
    origin = request.headers.get("origin")
    if origin is None:
        referer = request.headers.get("referer")
        if referer is None:
            return None
        parts = urlsplit(referer)
        origin = f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else referer
    parts = urlsplit(origin)
    host = request.headers.get("host", "").lower()
    if parts.scheme in ("http", "https") and host and parts.netloc.lower() == host:
        return None
    if origin.lower() in trusted:
        return None
    return origin[:100]


def install(app: FastAPI, dashboard: DashboardConfig, sessions: Sessions, throttle: Throttle,
            accounts: Accounts, tv: TvTokens, origins: tuple[str, ...] = ()) -> Auth:
    """Guard ``app``: the middleware in front of every route, and ``app.state.auth`` for :data:`router`.

    Args:
        app: the app to guard.
        dashboard: accounts and display tokens.
        sessions: the store's sessions.
        throttle: the store's sign-in throttle.
        accounts: every account.
        tv: every display token.
        origins: ``web.origins``: further origins that may send state-changing requests.
    """
    auth = Auth(dashboard, sessions, throttle, accounts, tv)
    app.state.auth = auth

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await _guarded(request, call_next)
        asked = i18n.known(request.query_params.get("lang"))
        if asked and request.cookies.get(i18n.COOKIE) != asked:
            response.set_cookie(i18n.COOKIE, asked, max_age=i18n.COOKIE_MAX_AGE, samesite="lax", path="/")
        return response

    async def _guarded(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        # The language before anything is answered (the refusals below are pages too); the account's below.
        query_lang = request.query_params.get("lang")
        i18n.use(i18n.choose(query_lang, request.cookies.get(i18n.COOKIE), request.headers.get("accept-language")))
        auth.refusals.flush()
        foreign = foreign_origin(request, origins)
        if foreign is not None:
            client = request.client.host if request.client else "?"
            auth.refusals.warning(f"{request.method} {request.url.path[:100]} from {client} refused: origin "
                                  f"{foreign!r} is not this site (web.origins)", key=f"origin {address_key(client)}")
            return JSONResponse({"detail": f"cross-origin request refused: {foreign!r} is not this site's "
                                           "origin (add it to web.origins if it is central behind a proxy)"},
                                status_code=403)
        path = request.url.path
        if path.startswith(PUBLIC_PREFIXES):
            return await call_next(request)
        import anyio.to_thread

        status, who = await anyio.to_thread.run_sync(auth.verdict, path, request.cookies.get(COOKIE))
        user = who if isinstance(who, Account) else None
        if user is not None and user.lang and not i18n.known(query_lang):
            i18n.use(user.lang)
        request.state.account = user
        request.state.display = who if isinstance(who, DisplayToken) else None
        if status == 200:
            return await call_next(request)
        if status == 404:
            gone = html.escape(_("This display link is not valid. Ask for a new one."))
            return HTMLResponse(page(_("Not found"), f"<p>{gone}</p>"), status_code=404)
        if status == 403:
            detail = ("an admin's page: this account is a viewer" if user is not None else
                      "no accounts yet: add the first admin with 'deskpulse-central user add NAME --role admin'")
            if "text/html" in request.headers.get("accept", ""):
                shown = (_("An admin's page: this account is a viewer.") if user is not None else
                         _("No accounts yet: add the first admin with "
                           "'deskpulse-central user add NAME --role admin'."))
                return HTMLResponse(page(_("Not allowed"), f"<p>{html.escape(shown)}</p>"), status_code=403)
            return JSONResponse({"detail": detail}, status_code=403)
        wants_html = "text/html" in request.headers.get("accept", "") and not path.startswith(("/api/", "/export/"))
        if wants_html:
            target = path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
        return JSONResponse({"detail": "sign in first (POST /login)"}, status_code=401,
                            headers={"WWW-Authenticate": 'Cookie realm="DeskPulse"'})

    return auth


def current(request: Request) -> Auth:
    """The app's :class:`Auth` (a FastAPI dependency)."""
    auth: Auth = request.app.state.auth  # set by install()
    return auth


#: ``/login`` and ``/logout`` (not in the OpenAPI description).
router = APIRouter(include_in_schema=False)


@router.get("/login", response_class=HTMLResponse)
def login_form(next: str = "/", auth: Auth = Depends(current)) -> Response:
    """The sign-in form (or straight on when no accounts are configured)."""
    if not auth.enabled():
        return RedirectResponse(_safe_next(next), status_code=303)
    return HTMLResponse(_login_page(_safe_next(next)))


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, auth: Auth = Depends(current)) -> Response:
    """Check a name and password; on success set the session cookie and go on to ``next``.

    The form is read only up to :data:`MAX_FORM_BYTES` (413 beyond), the name
    and password are checked for length (400) before anything is hashed or
    logged, and at most :data:`MAX_CONCURRENT_CHECKS` passwords are checked at
    once: a sign-in beyond that is a 429 with ``Retry-After``, so a burst of
    sign-ins cannot run argon2's 64 MiB many times over.
    """
    client = request.client.host if request.client else "?"
    body = await read_limited(request, MAX_FORM_BYTES)
    if body is None:
        log.warning("sign-in form from %s refused: larger than %d bytes", client, MAX_FORM_BYTES)
        return HTMLResponse(_login_page("/", error=_("The form is too large (at most %(n)s bytes).")
                                            % {"n": i18n.number(MAX_FORM_BYTES)}),
                            status_code=413)
    form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=10)
    name = (form.get("name") or [""])[0].strip()
    password = (form.get("password") or [""])[0]
    target = _safe_next((form.get("next") or ["/"])[0])
    if len(name) > MAX_NAME or len(password) > MAX_PASSWORD:
        log.warning("sign-in from %s refused: a name over %d or a password over %d characters",
                    client, MAX_NAME, MAX_PASSWORD)
        return HTMLResponse(_login_page(target, error=_("A name is at most %(name)s characters and a "
                                                        "password at most %(password)s.")
                                             % {"name": MAX_NAME, "password": i18n.number(MAX_PASSWORD)}),
                            status_code=400)
    if auth.checking >= MAX_CONCURRENT_CHECKS:
        log.debug("sign-in from %s refused: %d checks under way", client, auth.checking)
        return HTMLResponse(_login_page(target, name=name, error=_("Busy checking other sign-ins. Try again "
                                                                   "in a moment.")),
                            status_code=429, headers={"Retry-After": str(BUSY_RETRY_S)})
    auth.checking += 1  # the event loop's thread only: no lock needed between the test and the increment
    try:
        import anyio.to_thread

        ok, reason, wait = await anyio.to_thread.run_sync(auth.check, name, password, client)
    finally:
        auth.checking -= 1
    if wait:
        return HTMLResponse(_login_page(target, name=name, error=reason), status_code=429,
                            headers={"Retry-After": str(wait)})
    if not ok:
        return HTMLResponse(_login_page(target, name=name, error=reason), status_code=401)
    import anyio.to_thread

    token = await anyio.to_thread.run_sync(auth.begin, name)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(COOKIE, token, max_age=SESSION_S, httponly=True, samesite="lax",
                        secure=request.url.scheme == "https", path="/")
    return response


@router.post("/logout")
def logout(request: Request, auth: Auth = Depends(current)) -> Response:
    """End the session in the store (so a copy of the cookie opens nothing either) and delete the cookie."""
    auth.end(request.cookies.get(COOKIE))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


async def read_limited(request: Request, limit: int) -> bytes | None:
    """The request's body, or None when it is (or says it is) longer than ``limit`` bytes; reads no further."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _safe_next(target: str) -> str:
    """Only a path on this site (never ``//elsewhere`` or ``https://…``) may be the page after signing in."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _login_page(target: str, *, name: str = "", error: str = "") -> str:
    alert = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    return page(_("Sign in"), f"""
<form method="post" action="/login">
  {alert}
  <input type="hidden" name="next" value="{html.escape(target)}">
  <label for="name">{html.escape(_("Name"))}</label>
  <input id="name" name="name" autocomplete="username" required value="{html.escape(name)}" autofocus>
  <label for="password">{html.escape(_("Password"))}</label>
  <input id="password" name="password" type="password" autocomplete="current-password" required>
  <button type="submit">{html.escape(_("Sign in"))}</button>
</form>""", picker=f"/login?next={quote(target, safe='')}")


@router.post("/lang")
async def set_language(request: Request, auth: Auth = Depends(current)) -> Response:
    """The picker: remember the language in a cookie and, for a signed-in store account, on the account."""
    body = await read_limited(request, MAX_FORM_BYTES)
    form = parse_qs((body or b"").decode("utf-8", "replace"), max_num_fields=5)
    lang = i18n.known((form.get("lang") or [""])[0])
    target = _safe_next((form.get("next") or ["/"])[0])
    if lang is None:
        return HTMLResponse(page(_("Language"), "<p>" + html.escape(
            _("Choose one of: %(languages)s.") % {"languages": ", ".join(i18n.LANGUAGES)}) + "</p>"),
            status_code=400)
    import anyio.to_thread

    user = await anyio.to_thread.run_sync(auth.user, request.cookies.get(COOKIE))
    if user is not None and user.source == "store":
        try:
            await anyio.to_thread.run_sync(auth.accounts.set_lang, user.name, lang)
        except AccountError:
            pass  # removed meanwhile: the cookie still holds the choice
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(i18n.COOKIE, lang, max_age=i18n.COOKIE_MAX_AGE, samesite="lax", path="/")
    return response


def page(title: str, body: str, *, wide: bool = False, picker: str | None = None) -> str:
    """A small standalone page (sign-in, errors, the admin's pages) in the current language: no script, no CDN.

    ``picker``: the path the language picker returns to (None: no picker)."""
    width = "min(60rem, calc(100vw - 2rem))" if wide else "min(22rem, calc(100vw - 2rem))"
    return f"""<!doctype html>
<html lang="{i18n.current()}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)} · DeskPulse</title>
<style>
  body {{ margin: 0; min-height: 100vh; display: grid; place-items: center; background: #f5f5f0; color: #1a1a1a;
          font: 17px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; }}
  main {{ width: {width}; background: #fff; border: 1px solid #d6d6cf;
          border-radius: .5rem; padding: 1.5rem 1.5rem 1.75rem; }}
  h1 {{ font-size: 1.3rem; margin: 0 0 1rem; }}
  label {{ display: block; font-weight: 600; margin: .9rem 0 .3rem; }}
  input {{ width: 100%; box-sizing: border-box; font: inherit; padding: .55rem .65rem; border: 1px solid #767670;
           border-radius: .35rem; }}
  button {{ margin-top: 1.3rem; width: 100%; font: inherit; font-weight: 600; padding: .65rem; border: 0;
            border-radius: .35rem; background: #0b57d0; color: #fff; cursor: pointer; }}
  input:focus-visible, button:focus-visible {{ outline: 3px solid #0b57d0; outline-offset: 2px; }}
  table {{ border-collapse: collapse; width: 100%; }}
  th, td {{ text-align: left; padding: .4rem; border-bottom: 1px solid #d6d6cf; vertical-align: top; }}
  td form {{ display: inline-block; margin: .15rem .3rem .15rem 0; }}
  td input, td button, td select {{ width: auto; margin-top: 0; padding: .3rem .5rem; }}
  select {{ font: inherit; padding: .45rem; }}
  form.lang {{ margin: 1.2rem 0 0; font-size: .9rem; display: flex; gap: .4rem; align-items: center; }}
  form.lang label {{ display: inline; font-weight: 400; margin: 0; }}
  form.lang select, form.lang button {{ width: auto; margin: 0; padding: .3rem .5rem; font-size: .9rem; }}
  .error {{ background: #fde8e6; border: 1px solid #b3261e; color: #8c1d18; padding: .5rem .7rem;
            border-radius: .35rem; margin: 0 0 .5rem; }}
</style></head>
<body><main><h1>DeskPulse · {html.escape(title)}</h1>{body}{i18n.picker(_safe_next(picker)) if picker else ""}</main>
</body></html>"""

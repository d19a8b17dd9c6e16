"""The admin's router: staff accounts and wall-TV tokens on a page (``/admin/accounts``) and in the JSON API
(``/api/admin/accounts``, ``/api/admin/tv``).

Only an account with the role ``admin`` reaches these paths (the guard in
:mod:`central.auth` answers 403 to a viewer, and to everyone while no account
exists). Every form here is a POST, so the guard's origin check applies to it.
Accounts from ``[dashboard.accounts]`` are listed but cannot be changed here.
"""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import parse_qs

import anyio.to_thread
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from central import auth
from central.accounts import AccountError, check_password
from central.i18n import _
from central.tvtokens import TokenError

router = APIRouter()

#: The largest admin form read (bytes).
MAX_FORM_BYTES = 4096


class AccountOut(BaseModel):
    """An account as the API shows it (never its password hash)."""

    name: str
    role: str = Field(description="viewer | admin")
    source: str = Field(description="store (managed here and with 'deskpulse-central user') | file "
                                    "([dashboard.accounts], read only)")


@router.get("/api/admin/accounts", response_model=list[AccountOut],
            responses={401: {"description": "not signed in"},
                       403: {"description": "not an admin (or no account exists yet)"}})
def api_accounts(guard: auth.Auth = Depends(auth.current)) -> list[dict[str, Any]]:
    """Every account (admins only)."""
    return [{"name": a.name, "role": a.role, "source": a.source} for a in guard.accounts.all()]


class TvOut(BaseModel):
    """A display token as the API shows it (never the token)."""

    name: str
    site: str
    device: str | None = Field(description="one desk, or null for the whole site")
    source: str = Field(description="store (made on the admin page) | file ([dashboard.tv], read only)")


@router.get("/api/admin/tv", response_model=list[TvOut],
            responses={401: {"description": "not signed in"},
                       403: {"description": "not an admin (or no account exists yet)"}})
def api_tv(guard: auth.Auth = Depends(auth.current)) -> list[dict[str, Any]]:
    """Every wall-TV display token, without the token (admins only)."""
    return [{"name": t.name, "site": t.site, "device": t.device, "source": t.source} for t in guard.tv.all()]


@router.get("/admin/accounts", response_class=HTMLResponse, include_in_schema=False)
def accounts_page(request: Request, guard: auth.Auth = Depends(auth.current)) -> HTMLResponse:
    """The accounts page: every account, and forms to add, change a password, change a role, remove."""
    return HTMLResponse(_page(guard, request, request.query_params.get("msg", "")[:200],
                              request.query_params.get("err", "")[:200]))


@router.post("/admin/accounts", include_in_schema=False)
async def accounts_post(request: Request, guard: auth.Auth = Depends(auth.current)) -> Response:
    """One change from the page's forms: ``action`` add | password | role | remove | tv-add | tv-remove."""
    body = await auth.read_limited(request, MAX_FORM_BYTES)
    if body is None:
        return _back(err=f"the form is larger than {MAX_FORM_BYTES} bytes")
    form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), max_num_fields=10).items()}
    action, name = form.get("action", ""), form.get("name", "").strip()
    me = getattr(request.state, "account", None)
    try:
        if action == "tv-add":
            device = form.get("device", "").strip() or None
            token = await anyio.to_thread.run_sync(guard.tv.add, name, form.get("site", "").strip(), device)
            auth.log.info("admin %s: made display token %r", me.name if me is not None else "?", name)
            # Shown once, in this page (never in a redirect's URL, which browsers and proxies keep).
            address = f"{request.base_url}tv/{token}"
            return HTMLResponse(await anyio.to_thread.run_sync(
                _page, guard, request, _("made TV %(name)s: open %(address)s on it (shown only now)")
                % {"name": name, "address": address}, ""))
        if action == "tv-remove":
            await anyio.to_thread.run_sync(guard.tv.remove, name)
            message = _("removed TV %(name)s; it is closed now") % {"name": name}
        elif action in ("add", "password"):
            hashed = await anyio.to_thread.run_sync(auth.hash_password, check_password(form.get("password", "")))
            if action == "add":
                await anyio.to_thread.run_sync(guard.accounts.add, name, hashed, form.get("role", "viewer"))
                message = _("added %(name)s (%(role)s)") % {"name": name, "role": _role(form.get("role", "viewer"))}
            else:
                await anyio.to_thread.run_sync(guard.accounts.set_password, name, hashed)
                message = _("new password for %(name)s; their sessions ended") % {"name": name}
        elif action == "role":
            await anyio.to_thread.run_sync(guard.accounts.set_role, name, form.get("role", ""))
            message = _("%(name)s is now %(role)s; their sessions ended") % {"name": name,
                                                                              "role": _role(form.get("role", ""))}
        elif action == "remove":
            if me is not None and me.name == name:
                raise AccountError(_("you cannot remove the account you are signed in with"))
            await anyio.to_thread.run_sync(guard.accounts.remove, name)
            message = _("removed %(name)s; their sessions ended") % {"name": name}
        else:
            raise AccountError(f"unknown action {action[:20]!r}")
    except (AccountError, TokenError) as exc:
        return _back(err=str(exc))
    auth.log.info("admin %s: %s", me.name if me is not None else "?", message)
    return _back(msg=message)


def _back(*, msg: str = "", err: str = "") -> Response:
    from urllib.parse import urlencode

    return RedirectResponse("/admin/accounts?" + urlencode({"msg": msg} if msg else {"err": err}), status_code=303)


def _role(role: str) -> str:
    """A role in the page's language."""
    return {"viewer": _("viewer"), "admin": _("admin")}.get(role, role)


def _page(guard: auth.Auth, request: Request, message: str, error: str) -> str:
    def _t(text: str) -> str:
        return html.escape(_(text))

    def role_options(chosen: str | None) -> str:
        return "".join(f'<option value="{r}"{" selected" if r == chosen else ""}>{html.escape(_role(r))}</option>'
                       for r in ("viewer", "admin"))

    rows = []
    for a in guard.accounts.all():
        name = html.escape(a.name)
        if a.source == "file":
            actions = f"<td>{_t('in central.toml (read only)')}</td>"
        else:
            actions = f"""<td>
<form method="post"><input type="hidden" name="action" value="role"><input type="hidden" name="name" value="{name}">
<select name="role" aria-label="{html.escape(_("Role of %(name)s") % {"name": a.name})}">{role_options(a.role)}</select>
<button>{_t("Change role")}</button></form>
<form method="post"><input type="hidden" name="action" value="password"><input type="hidden" name="name" value="{name}">
<input type="password" name="password" aria-label="{html.escape(_("New password for %(name)s") % {"name": a.name})}"
 minlength="10" required autocomplete="new-password"><button>{_t("Set password")}</button></form>
<form method="post"><input type="hidden" name="action" value="remove"><input type="hidden" name="name" value="{name}">
<button>{_t("Remove")}</button></form></td>"""
        rows.append(f"<tr><td>{name}</td><td>{html.escape(_role(a.role))}</td>{actions}</tr>")
    tvs = []
    for tv in guard.tv.all():
        name = html.escape(tv.name)
        shows = html.escape(tv.site + (f" / {tv.device}" if tv.device else ""))
        change = (f"<td>{_t('in central.toml (read only)')}</td>" if tv.source == "file" else
                  f"""<td><form method="post"><input type="hidden" name="action" value="tv-remove">
<input type="hidden" name="name" value="{name}"><button>{_t("Remove")}</button></form></td>""")
        tvs.append(f"<tr><td>{name}</td><td>{shows}</td>{change}</tr>")
    note = f'<p role="status" id="message">{html.escape(message)}</p>' if message else ""
    alert = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    return auth.page(_("Accounts"), f"""{note}{alert}
<table id="accounts"><thead><tr><th>{_t("Name")}</th><th>{_t("Role")}</th><th>{_t("Change")}</th></tr></thead>
<tbody>{''.join(rows)}</tbody></table>
<h2>{_t("Add an account")}</h2>
<form method="post" id="add"><input type="hidden" name="action" value="add">
<label for="new-name">{_t("Name")}</label><input id="new-name" name="name" required maxlength="64">
<label for="new-password">{_t("Password")}</label><input id="new-password" name="password" type="password" required
 minlength="10" autocomplete="new-password">
<label for="new-role">{_t("Role")}</label>
<select id="new-role" name="role">{role_options(None)}</select>
<button type="submit">{_t("Add")}</button></form>
<h2>{_t("Wall TVs")}</h2>
<table id="tvs"><thead><tr><th>{_t("Name")}</th><th>{_t("Shows")}</th><th>{_t("Change")}</th></tr></thead>
<tbody>{''.join(tvs)}</tbody></table>
<form method="post" id="tv-add"><input type="hidden" name="action" value="tv-add">
<label for="tv-name">{_t("TV name")}</label><input id="tv-name" name="name" required maxlength="64">
<label for="tv-site">{_t("Site")}</label><input id="tv-site" name="site" required maxlength="64">
<label for="tv-device">{_t("Desk (empty: the whole site)")}</label><input id="tv-device" name="device" maxlength="64">
<button type="submit">{_t("Make a TV link")}</button></form>
<p><a href="/">{_t("Back to the dashboard")}</a></p>""", wide=True, picker="/admin/accounts")

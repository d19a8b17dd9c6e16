"""The admin's sites, surveys and audit pages: ``/admin/sites``, ``/admin/surveys/<site>``, ``/admin/audit``.

Only an admin reaches them (the guard in :mod:`central.auth`: 403 for a viewer,
and every POST passes its origin check, so another site's form is refused).
Sites and desks are saved through :class:`central.sites.SiteBook` (seen by every
page at once, no restart); surveys are checked, previewed with the kiosk's own
drawing code (:mod:`central.preview`) and published by :mod:`central.surveys`.
"""

from __future__ import annotations

import base64
import html
from typing import Any, Final
from urllib.parse import parse_qs, urlencode

import anyio.to_thread
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from central import auth, deps, i18n, preview, reads, surveys
from central.config import WEEKDAYS
from central.deps import WebState
from central.i18n import N_, _
from central.sites import SiteError, audit_entries, hours_text, parse_site_form, zone_names
from central.surveys import KIOSK_LANGUAGES, PRESETS, SurveyError
from sync.protocol import SLUG_RE

router = APIRouter(include_in_schema=False)

#: The largest form read (bytes): a survey in six languages fits easily.
MAX_FORM_BYTES: Final = 64 * 1024

_STYLE = """<style>
  fieldset { border: 1px solid #d6d6cf; border-radius: .4rem; margin: 1rem 0; padding: .6rem 1rem 1rem; }
  legend { font-weight: 700; padding: 0 .3rem; }
  .grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(9rem, 1fr)); gap: .2rem .8rem; }
  .grid label { margin-top: .4rem; }
  .row { display: flex; flex-wrap: wrap; gap: .6rem; align-items: center; }
  .row label { display: inline; font-weight: 400; margin: 0; }
  .row input[type=checkbox], .row input[type=radio] { width: auto; }
  textarea { width: 100%; box-sizing: border-box; font: inherit; min-height: 6.5rem; padding: .5rem;
             border: 1px solid #767670; border-radius: .35rem; }
  .source { color: #4a4a45; font-size: .9rem; }
  .previews { display: flex; flex-wrap: wrap; gap: 1rem; }
  .previews figure { margin: 0; }
  .previews img { width: 400px; max-width: 100%; height: auto; border: 1px solid #767670; border-radius: .3rem; }
  .ok { color: #0a6b35; font-weight: 600; } .bad { color: #8c1d18; font-weight: 600; }
  .wait { color: #6b4e00; font-weight: 600; }
  nav a { margin-right: 1rem; }
  button.secondary { background: #fff; color: #0b57d0; border: 1px solid #0b57d0; }
  .actions { display: flex; gap: 1rem; align-items: baseline; flex-wrap: wrap; }
  .actions button { width: auto; padding: .6rem 1.2rem; }
  .fields { display: grid; grid-template-columns: 2fr 2fr 1fr; gap: 0 1rem; }
  @media (max-width: 40rem) { .fields { grid-template-columns: 1fr; } }
  section { border-top: 2px solid #d6d6cf; margin-top: 1.5rem; }
  details.lang { border: 1px solid #d6d6cf; border-radius: .4rem; margin: .8rem 0; padding: .5rem 1rem; }
  details.lang[open] { padding-bottom: 1rem; }
  summary { font-weight: 700; cursor: pointer; }
  .survey-layout { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 27rem); gap: 2rem;
                   align-items: start; }
  .survey-layout aside { position: sticky; top: 1rem; }
  .survey-layout aside h2 { font-size: 1.1rem; margin: .2rem 0 .5rem; }
  .survey-layout aside table { font-size: .9rem; margin-bottom: 1.2rem; }
  @media (max-width: 72rem) { .survey-layout { grid-template-columns: minmax(0, 1fr); }
                              .survey-layout aside { position: static; } }
  td.slug { white-space: nowrap; }
  .survey-layout aside th, .survey-layout aside td { overflow-wrap: anywhere; }
  [aria-invalid=true] { border-color: #b3261e; outline: 2px solid #b3261e; }
</style>"""

#: The survey page is two columns on a laptop: the form, and beside it the kiosks, what was published, the preview.
_WIDE = "<style>main { width: min(88rem, calc(100vw - 2rem)); }</style>"

#: The preview's pictures, in words (``%(lang)s``: the kiosk language drawn).
SCREEN_ALT: Final = {"rating": N_("The kiosk's rating screen in %(lang)s"),
                     "followup": N_("The kiosk's follow-up screen in %(lang)s")}
SCREEN_CAPTION: Final = {"rating": N_("rating screen, %(lang)s"), "followup": N_("followup screen, %(lang)s")}


def _t(text: str) -> str:
    """``text`` in the page's language, escaped for HTML."""
    return html.escape(_(text))


def _nav() -> str:
    return (f'<nav><a href="/">{_t("Dashboard")}</a><a href="/admin/sites">{_t("Sites and desks")}</a>'
            f'<a href="/admin/audit">{_t("Changes")}</a><a href="/admin/accounts">{_t("Accounts")}</a></nav>')


def _who(request: Request) -> str:
    account = getattr(request.state, "account", None)
    return str(getattr(account, "name", "")) or "(open dashboard)"


async def _form(request: Request) -> dict[str, list[str]] | None:
    body = await auth.read_limited(request, MAX_FORM_BYTES)
    if body is None:
        return None
    try:
        return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=200)
    except ValueError:  # more fields than any of our forms has
        return None


def _known_sites(web: WebState) -> list[str]:
    config = web.config
    slugs = set(config.sites)
    slugs.update(site for site, _ in reads.desks(web.store, None))
    return sorted(slugs)


# ---------------------------------------------------------------------- sites


@router.get("/admin/sites", response_class=HTMLResponse)
def sites_page(request: Request, web: WebState = Depends(deps.web_state)) -> HTMLResponse:
    """Every site (named in central.toml or with kiosks) with its values and desks, each editable."""
    q = request.query_params
    return HTMLResponse(_sites_page(web, message=q.get("msg", "")[:300], error=q.get("err", "")[:300],
                                    field=q.get("field", "")[:40], site=q.get("site", "")[:64]))


@router.post("/admin/sites")
async def sites_post(request: Request, web: WebState = Depends(deps.web_state)) -> Response:
    """``action`` = site (save a site's values) | reset (central.toml's again) | desk (a desk's name)."""
    form = await _form(request)
    if form is None:
        return _back_sites(err=f"the form is larger than {MAX_FORM_BYTES} bytes or has too many fields")
    flat = {k: v[0] for k, v in form.items()}
    action, slug = flat.get("action", ""), flat.get("site", "")
    who = _who(request)
    try:
        if action == "site":
            edit = parse_site_form(slug, flat)
            changes = await anyio.to_thread.run_sync(web.sites.save_site, slug, edit, who)
            message = f"saved {slug}: " + "; ".join(changes) if changes else f"{slug}: nothing changed"
        elif action == "reset":
            done = await anyio.to_thread.run_sync(web.sites.reset_site, slug, who)
            message = f"{slug} uses central.toml's values again" if done else f"{slug} had no values saved here"
        elif action == "desk":
            device = flat.get("device", "")
            changed = await anyio.to_thread.run_sync(web.sites.save_desk, slug, device, flat.get("name", ""), who)
            message = f"renamed desk {slug}/{device}" if changed else f"{slug}/{device}: nothing changed"
        else:
            raise SiteError("action", f"unknown action {action[:20]!r}")
    except SiteError as exc:
        return _back_sites(err=str(exc), field=exc.field, site=slug)
    auth.log.info("admin %s: %s", who, message)
    return _back_sites(msg=message, site=slug)


def _back_sites(*, msg: str = "", err: str = "", field: str = "", site: str = "") -> Response:
    query = {"msg": msg} if msg else {"err": err, "field": field}
    anchor = f"#site-{site}" if SLUG_RE.fullmatch(site) else ""
    return RedirectResponse("/admin/sites?" + urlencode({**query, "site": site}) + anchor, status_code=303)


def _sites_page(web: WebState, *, message: str, error: str, field: str, site: str) -> str:
    config = web.config
    desks_of: dict[str, list[str]] = {}
    for site_slug, desk_slug in reads.desks(web.store, None):
        desks_of.setdefault(site_slug, []).append(desk_slug)
    blocks = []
    for slug in _known_sites(web):
        s = config.site(slug)
        e = html.escape(slug)
        edited = web.sites.edited(slug)

        def src(key: str, edited: frozenset[str] = edited) -> str:
            return (f'<span class="source">({_t("set here")})</span>' if key in edited
                    else '<span class="source">(central.toml)</span>')

        def bad(name: str, slug: str = slug) -> str:
            return ' aria-invalid="true"' if error and site == slug and field == name else ""

        hours = "".join(
            f'<div><label for="h-{e}-{day}">{html.escape(i18n.weekday(i, "wide").capitalize())}</label>'
            f'<input id="h-{e}-{day}" name="hours_{day}" '
            f'value="{hours_text(s.hours.get(i))}" required maxlength="20"{bad(f"hours_{day}")}></div>'
            for i, day in enumerate(WEEKDAYS))
        target = "" if s.target is None else f"{s.target:g}"
        reset = ('<button type="submit" name="action" value="reset" class="secondary" formnovalidate>'
                 f'{_t("Use central.toml again")}</button>' if edited else "")
        desk_slugs = sorted(set(desks_of.get(slug, [])) | set(s.desks))
        desk_rows = "".join(
            f'''<tr><td><code>{html.escape(d)}</code></td><td><form method="post">
<input type="hidden" name="action" value="desk"><input type="hidden" name="site" value="{e}">
<input type="hidden" name="device" value="{html.escape(d)}">
<input name="name" value="{html.escape(s.desk(d).name)}"
 aria-label="{html.escape(_("Name of desk %(desk)s") % {"desk": d})}"
 maxlength="200" size="36"
{bad(f"desk-{d}")}><button>{_t("Rename")}</button></form>
 <span class="source">({_t("set here") if web.sites.desk_edited(slug, d)
                                                             else "central.toml"})</span></td></tr>'''
            for d in desk_slugs)
        alert = (f'<p class="error" role="alert">{html.escape(error)}</p>' if error and site == slug else
                 f'<p role="status" id="message">{html.escape(message)}</p>' if message and site == slug else "")
        blocks.append(f'''<section id="site-{e}"><h2>{html.escape(s.name)} <code>{e}</code></h2>{alert}
<form method="post" class="site-form"><input type="hidden" name="site" value="{e}">
<div class="fields"><div><label for="name-{e}">{_t("Name")} {src("name")}</label>
<input id="name-{e}" name="name" value="{html.escape(s.name)}" required maxlength="200"{bad("name")}></div>
<div><label for="tz-{e}">{_t("Time zone")} {src("timezone")}</label>
<input id="tz-{e}" name="timezone" value="{html.escape(s.timezone)}" list="zones" required{bad("timezone")}></div>
<div><label for="target-{e}">{_t("Target index")} {src("target")}</label>
<input id="target-{e}" name="target" value="{target}" inputmode="decimal" maxlength="10"
 placeholder="{_t("0 to 100, or none")}"
{bad("target")}></div></div>
<fieldset><legend>{_t("Opening hours")} {src("hours")}: {_t('"08:00-18:00", "closed", or "00:00-24:00"')}</legend>
<div class="grid">{hours}</div></fieldset>
<div class="actions"><button type="submit" name="action" value="site">{_t("Save")} {e}</button>
{reset}<a href="/admin/surveys/{e}">{html.escape(_("Survey of %(site)s") % {"site": s.name})}</a></div></form>
<h3>{_t("Desks")}</h3><table class="desks"><thead><tr><th>{_t("Desk")}</th>
<th>{_t("Name (empty: central.toml's again)")}</th></tr></thead>
<tbody>{desk_rows or f'<tr><td colspan="2">{_t("No kiosk has reported yet.")}</td></tr>'}</tbody></table></section>''')
    zones = "".join(f'<option value="{z}">' for z in zone_names())
    empty = f"<p>{_t('No site yet: name one in central.toml or start a kiosk.')}</p>"
    lead = "<p>" + _t("What you save here wins over central.toml for that value; central.toml supplies the rest "
                      "(docs/configuration.md). Changes show on every page at once. A new time zone re-counts the "
                      "site's numbers in its new local days.") + "</p>"
    return auth.page(_("Sites and desks"), f"{_STYLE}{_nav()}{lead}{''.join(blocks) or empty}"
                                            f'<datalist id="zones">{zones}</datalist>', wide=True,
                     picker="/admin/sites")


# ---------------------------------------------------------------------- surveys


@router.get("/admin/surveys/{site}", response_class=HTMLResponse)
async def survey_page(request: Request, site: str, web: WebState = Depends(deps.web_state)) -> Response:
    """The survey editor for ``site`` (``?device=`` for one desk's own), the preview and each kiosk's verdict."""
    if not SLUG_RE.fullmatch(site):
        return HTMLResponse(auth.page(_("Not found"), f"<p>{_t('No such site.')}</p>"), status_code=404)
    device = request.query_params.get("device", "")
    if device and not SLUG_RE.fullmatch(device):
        device = ""
    published = await anyio.to_thread.run_sync(surveys.latest, web.store, site)
    current = published.get(device) or (published.get("") if device else None)
    config = dict(current.config) if current else {"scale": 5, "languages": ["en"], "default_lang": "en"}
    config.pop("schema", None)
    config.pop("version", None)
    msg = request.query_params.get("msg", "")[:300]
    return HTMLResponse(await anyio.to_thread.run_sync(
        lambda: _survey_page(web, site, device, config, published, message=msg, error=None, show_preview=True)))


@router.post("/admin/surveys/{site}")
async def survey_post(request: Request, site: str, web: WebState = Depends(deps.web_state)) -> Response:
    """``action`` = preview (check and draw the form's survey) | publish (check, number, publish, record)."""
    if not SLUG_RE.fullmatch(site):
        return HTMLResponse(auth.page(_("Not found"), f"<p>{_t('No such site.')}</p>"), status_code=404)
    form = await _form(request)
    if form is None:
        too_large = _("The form is larger than %(n)s bytes or has too many fields.") % {"n": MAX_FORM_BYTES}
        return HTMLResponse(auth.page(_("Too large"), f"<p>{html.escape(too_large)}</p>"), status_code=413)
    device = (form.get("device") or [""])[0]
    if device and not SLUG_RE.fullmatch(device):
        device = ""
    action = (form.get("action") or ["preview"])[0]
    published = await anyio.to_thread.run_sync(surveys.latest, web.store, site)
    config: dict[str, Any] = {}
    try:
        if action == "clear":
            who = _who(request)
            again = await anyio.to_thread.run_sync(
                lambda: surveys.clear_desk(web.store, web.config.broker, site, device, who))
            text = (_("removed desk %(desk)s's own survey; the site's is published again as version %(version)s")
                    % {"desk": device, "version": again.version} if again else
                    _("removed desk %(desk)s's own survey; it keeps running its last one until the site gets a "
                      "survey") % {"desk": device})
            auth.log.info("admin %s: %s", who, text)
            return RedirectResponse(f"/admin/surveys/{site}?" + urlencode({"msg": text, "device": device}),
                                    status_code=303)
        config = surveys.from_form(form)
        surveys.validate(surveys.sample(config))
        if action == "publish":
            who = _who(request)
            done = await anyio.to_thread.run_sync(
                lambda: surveys.publish(web.store, web.config.broker, site, device, config, who))
            auth.log.info("admin %s: published survey version %d to %s", who, done.version, done.site +
                          (f"/{done.device}" if done.device else ""))
            target = _("desk %(desk)s") % {"desk": device} if device else _("the whole site")
            query = urlencode({"msg": _("published version %(version)s to %(target)s")
                               % {"version": done.version, "target": target},
                               **({"device": device} if device else {})})
            return RedirectResponse(f"/admin/surveys/{site}?{query}", status_code=303)
    except SurveyError as exc:
        refused = exc
        return HTMLResponse(await anyio.to_thread.run_sync(
            lambda: _survey_page(web, site, device, config or _loose(form), published, message="", error=refused,
                                 show_preview=False)), status_code=422)
    return HTMLResponse(await anyio.to_thread.run_sync(
        lambda: _survey_page(web, site, device, config, published,
                             message=_("Preview of the survey below (not published yet)"), error=None,
                             show_preview=True)))


def _loose(form: dict[str, list[str]]) -> dict[str, Any]:
    """What the form said, for showing it again beside an error (not checked)."""
    langs = [x for x in form.get("languages", []) if x in KIOSK_LANGUAGES]
    out: dict[str, Any] = {"languages": langs, "default_lang": (form.get("default_lang") or [""])[0],
                           "scale": (form.get("scale") or ["5"])[0],
                           "followup_ratings": [int(x) for x in form.get("followup_ratings", []) if x.isdigit()]}
    out["_raw"] = {k: v[0] for k, v in form.items()}
    return out


def _survey_page(web: WebState, site: str, device: str, config: dict[str, Any],
                 published: dict[str, surveys.Published], *, message: str, error: SurveyError | None,
                 show_preview: bool) -> str:
    site_cfg = web.config.site(site)
    raw: dict[str, str] = config.get("_raw", {})
    e = html.escape(site)

    def val(name: str, value: Any) -> str:
        return html.escape(raw.get(name, "" if value is None else str(value)))

    def bad(name: str) -> str:
        return ' aria-invalid="true"' if error is not None and error.field == name else ""

    langs = list(config.get("languages", ["en"]))
    lang_boxes = "".join(
        f'<label><input type="checkbox" name="languages" value="{code}"{" checked" if code in langs else ""}>'
        f' {code}</label>' for code in KIOSK_LANGUAGES)
    default = config.get("default_lang", "en")
    default_opts = "".join(f'<option{" selected" if code == default else ""}>{code}</option>'
                           for code in KIOSK_LANGUAGES)
    scale = str(config.get("scale", 5))
    scale_opts = "".join(f'<option{" selected" if str(n) == scale else ""}>{n}</option>' for n in (3, 4, 5))
    followups = set(config.get("followup_ratings", [1, 2]))
    followup_boxes = "".join(
        f'<label><input type="checkbox" name="followup_ratings" value="{n}"{" checked" if n in followups else ""}>'
        f' {n}</label>' for n in range(1, 6))
    if "reasons" in config:
        source = "own"
    else:
        source = config.get("reason_preset", "kiosk")
    source_opts = "".join(
        f'<option value="{value}"{" selected" if value == source else ""}>{label}</option>'
        for value, label in [("kiosk", _t("the kiosk's own reasons")),
                             *[(p, html.escape(_("preset: %(name)s") % {"name": p.replace('_', ' ')}))
                               for p in PRESETS],
                             ("own", _t("our own reasons (below)"))])
    reasons = config.get("reasons", [])
    keys = "\n".join(r["key"] for r in reasons)
    per_lang = []
    for code in KIOSK_LANGUAGES:
        question = config.get("question", {}).get(code, "")
        followup = config.get("followup_question", {}).get(code, "")
        labels = "\n".join(r["label"].get(code, "") for r in reasons if r["label"].get(code))
        ticked = " open" if code in langs or question or followup or labels else ""
        texts_in = html.escape(_("Texts in %(lang)s") % {"lang": code})
        used_when = html.escape(_("used when %(lang)s is ticked; empty: the kiosk's own words") % {"lang": code})
        per_lang.append(f'''<details class="lang" id="lang-{code}"{ticked}><summary>{texts_in}
<span class="source">({used_when})</span></summary>
<label for="q-{code}">{_t("Question")}</label>
<input id="q-{code}" name="question_{code}" value="{val(f"question_{code}", question)}" maxlength="200"
{bad("question")}>
<label for="fq-{code}">{_t("Follow-up question")}</label>
<input id="fq-{code}" name="followup_question_{code}" value="{val(f"followup_question_{code}", followup)}"
 maxlength="200"{bad("followup_question")}>
<label for="rl-{code}">{_t("Reason labels, one per line in the keys' order")}</label>
<textarea id="rl-{code}" name="reason_labels_{code}"{bad(f"reason_labels_{code}")}>{val(f"reason_labels_{code}",
                                                                                      labels)}</textarea>
</details>''')
    timings = "".join(
        f'<div><label for="{k}">{_t(label)}</label><input id="{k}" name="{k}" value="{val(k, config.get(k))}" '
        f'inputmode="decimal" maxlength="8"{bad(k)}></div>'
        for k, label in (("thank_you_s", N_("Thank-you screen (s)")), ("followup_timeout_s", N_("Follow-up time (s)")),
                         ("repeat_interval_s", N_("Repeat guard (s)"))))
    desks = sorted({d for s, d in reads.desks(web.store, site)} | set(site_cfg.desks))
    scope_opts = f'<option value="">{_t("the whole site")}</option>' + "".join(
        f'<option value="{html.escape(d)}"{" selected" if d == device else ""}>'
        f'{html.escape(_("desk %(desk)s (%(name)s) only") % {"desk": d, "name": site_cfg.desk(d).name})}</option>'
        for d in desks)
    clear = ('<button type="submit" name="action" value="clear" class="secondary" id="clear" formnovalidate>'
             f"{_t('Remove this desk’s own survey')}</button>" if device and device in published else "")
    alert = (f'<p class="error" role="alert" id="survey-error">{html.escape(str(error))}</p>' if error else "")
    note = f'<p role="status" id="message">{html.escape(message)}</p>' if message else ""
    previews = ""
    if show_preview and error is None:
        try:
            full = surveys.sample(config)
            surveys.validate(full)
            images = []
            for lang in preview.languages(full):
                for screen in ("rating", "followup"):
                    png = preview.render_png(full, lang=lang, screen=screen)
                    data = base64.b64encode(png).decode()
                    images.append(f'<figure><img id="preview-{screen}-{lang}" src="data:image/png;base64,{data}" '
                                  f'alt="{html.escape(_(SCREEN_ALT[screen]) % {"lang": lang})}" width="400" '
                                  f'height="240"><figcaption>{html.escape(_(SCREEN_CAPTION[screen]) % {"lang": lang})}'
                                  '</figcaption></figure>')
            previews = (f'<h2 id="preview">{_t("Preview (as the kiosk draws it)")}</h2>'
                        f'<div class="previews">{"".join(images)}</div>')
        except SurveyError:
            previews = ""
    published_rows = []
    for scope, p in sorted(published.items()):
        published_rows.append(f'<tr><td>{html.escape(scope or _("whole site"))}</td><td>{p.version}</td>'
                              f'<td>{p.at:%Y-%m-%d %H:%M} UTC</td><td>{html.escape(p.by)}</td></tr>')
    return auth.page(_("Survey of %(site)s") % {"site": site_cfg.name}, f'''{_STYLE}{_WIDE}{_nav()}{note}{alert}
<div class="survey-layout"><form method="post" id="survey"><input type="hidden" name="site" value="{e}">
<label for="scope">{_t("For")}</label><select id="scope" name="device">{scope_opts}</select>
<fieldset><legend>{_t("Languages the kiosk offers")}</legend><div class="row"{bad("languages")}>{lang_boxes}</div>
<label for="default-lang">{_t("First language")}</label><select id="default-lang" name="default_lang"
{bad("default_lang")}>{default_opts}</select></fieldset>
<div class="grid"><div><label for="scale">{_t("Faces (scale)")}</label>
<select id="scale" name="scale">{scale_opts}</select>
</div></div>
<fieldset><legend>{_t("Ask why after these ratings (1 = worst)")}</legend><div class="row"{bad("followup_ratings")}>
{followup_boxes}</div></fieldset>
<label for="reason-source">{_t("Reasons offered")}</label>
<select id="reason-source" name="reason_source">{source_opts}</select>
<label for="reason-keys">{_t("Reason keys (our own reasons: one per line, a-z, 0-9, '-' and '_')")}</label>
<textarea id="reason-keys" name="reason_keys"{bad("reasons")}>{val("reason_keys", keys)}</textarea>
{"".join(per_lang)}
<fieldset><legend>{_t("Timings (empty: the kiosk's own)")}</legend><div class="grid">{timings}</div></fieldset>
<div class="actions"><button type="submit" name="action" value="preview" class="secondary">{_t("Preview")}</button>
<button type="submit" name="action" value="publish" id="publish">{_t("Publish")}</button>{clear}</div></form>
<aside>
<h2>{_t("Kiosks")}</h2><table id="kiosks"><thead><tr><th>{_t("Desk")}</th><th>{_t("State")}</th>
<th>{_t("Meant for it")}</th><th>{_t("In force")}</th>
<th>{_t("Outcome")}</th><th>{_t("Kiosk's reason")}</th></tr></thead>
<tbody aria-live="polite">{_kiosk_rows(web, site, published)}</tbody></table>
<h2>{_t("Published")}</h2><table id="published"><thead><tr><th>{_t("For")}</th><th>{_t("Version")}</th>
<th>{_t("When")}</th><th>{_t("By")}</th></tr></thead>
<tbody>{"".join(published_rows) or f'<tr><td colspan="4">{_t("Nothing published yet.")}</td></tr>'}</tbody></table>
{previews}</aside></div>
<script>
// The kiosks' verdicts follow without a reload (every 3 s while the page is visible).
setInterval(() => {{
  if (document.hidden) return;
  fetch("/admin/surveys/{e}/kiosks", {{credentials: "same-origin"}})
    .then((r) => r.ok ? r.text() : null)
    .then((rows) => {{ if (rows !== null) document.querySelector("#kiosks tbody").innerHTML = rows; }})
    .catch(() => {{}});
}}, 3000);
</script>''', wide=True, picker=f"/admin/surveys/{site}")


def _kiosk_rows(web: WebState, site: str, published: dict[str, surveys.Published]) -> str:
    rows = []
    for v in surveys.verdicts(web.store, site, published):
        cls, word = {"accepted": ("ok", _t("accepted")), "refused": ("bad", _t("refused")),
                     "waiting": ("wait", _t("waiting")), "none": ("", _t("no survey published"))}[v.outcome]
        rows.append(
            f'<tr data-device="{html.escape(v.device)}"><td class="slug">{html.escape(v.device)}</td>'
            f'<td>{html.escape(i18n.kiosk_state(v.state))}</td>'
            f'<td>{v.expected or "—"}</td><td>{v.in_force or "—"}</td><td class="{cls} outcome">{word}</td>'
            f'<td class="reason">{html.escape(v.reason)}</td></tr>')
    return "".join(rows) or f'<tr><td colspan="6">{_t("No kiosk of this site has reported yet.")}</td></tr>'


@router.get("/admin/surveys/{site}/kiosks", response_class=HTMLResponse)
async def kiosk_rows(site: str, web: WebState = Depends(deps.web_state)) -> Response:
    """The survey page's kiosk rows (what its script fetches to follow the verdicts)."""
    if not SLUG_RE.fullmatch(site):
        return HTMLResponse("", status_code=404)

    def rows() -> str:
        return _kiosk_rows(web, site, surveys.latest(web.store, site))

    return HTMLResponse(await anyio.to_thread.run_sync(rows), headers={"Cache-Control": "no-store"})


# ---------------------------------------------------------------------- audit


@router.get("/admin/audit", response_class=HTMLResponse)
def audit_page(web: WebState = Depends(deps.web_state)) -> HTMLResponse:
    """Every change to sites, desks and surveys, newest first: who, when, what."""
    rows = []
    for entry in audit_entries(web.store):
        detail = entry.detail
        if entry.action == "survey":
            body = detail.get("survey", {})
            question = body.get("question", {}).get(body.get("default_lang", "en"), _("the kiosk's own question"))
            what = _("published version %(version)s on %(topic)s: %(scale)s faces, %(languages)s, “%(question)s”") % {
                "version": detail.get("version"), "topic": detail.get("topic"), "scale": body.get("scale"),
                "languages": " ".join(body.get("languages", ["en"])), "question": question}
        elif entry.action == "survey-removed":
            what = _("removed the desk's own survey (version %(version)s); %(topic)s cleared") % {
                "version": detail.get("removed_version"), "topic": detail.get("topic")}
        else:
            what = "; ".join(f"{k}: {_word(v.get('before'))} → {_word(v.get('after'))}"
                             for k, v in detail.get("changed", {}).items()) or _("nothing")
        rows.append(f'<tr><td class="slug">{entry.at:%Y-%m-%d %H:%M:%S} UTC</td><td>{html.escape(entry.account)}</td>'
                    f'<td>{html.escape(entry.action)}</td><td class="slug">{html.escape(entry.subject)}</td>'
                    f"<td>{html.escape(what)}</td></tr>")
    return HTMLResponse(auth.page(_("Changes"), f'''{_STYLE}{_nav()}
<table id="audit"><thead><tr><th>{_t("When")}</th><th>{_t("Who")}</th><th>{_t("What")}</th><th>{_t("Of")}</th>
<th>{_t("Change")}</th></tr></thead>
<tbody>{"".join(rows) or f'<tr><td colspan="5">{_t("No change yet.")}</td></tr>'}</tbody></table>''', wide=True,
                                  picker="/admin/audit"))


def _word(value: Any) -> str:
    """A value of the audit as words: ``none`` for no value, whole numbers without ``.0``."""
    if value is None:
        return _("none")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)

"""What each screen shows, as a pure function of the kiosk's state: no pygame, no I/O.

The kiosk loop (:mod:`device.kiosk`) and the screenshot command
(:mod:`device.screenshot`) both build their views here, so a screenshot is the
screen a customer or staff member sees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from device.flow import FlowSettings, FlowState
from device.remote import CustomTexts
from device.staff import Notice
from display import texts
from display.view import FollowUpView, LanguageView, MessageView, PinView, RatingView, StatusView, View
from sync.outbox import Stats
from sync.sender import SenderStatus


def view_for(state: FlowState, settings: FlowSettings, custom: CustomTexts | None = None,
             now: float | None = None) -> View:
    """The screen the customer sees in ``state`` (all text translated).

    ``custom`` holds texts from a remote survey configuration; they replace the
    built-in ones where given. ``now`` (the flow's monotonic clock) shows how much
    of the follow-up's time is left; without it the follow-up shows it all.
    """
    lang = state.lang
    custom = custom or {}

    def t(key: str) -> str:
        return custom.get((key, lang)) or texts.text(lang, key)

    if state.screen == "thanks":
        return MessageView(texts.text(lang, "thanks"), texts.text(lang, "thanks_body"), "thanks")
    if state.screen == "sorry":
        return MessageView(texts.text(lang, "sorry"), texts.text(lang, "sorry_body"), "sorry")
    if state.screen == "followup":
        return FollowUpView(
            title=t("follow_up"),
            reasons=tuple((k, t(f"reason_{k}")) for k in settings.reasons),
            skip=texts.text(lang, "skip"),
            rating=state.pressed or 1,
            scale=settings.scale,
            chosen=state.reason,
            note=texts.text(lang, "anonymous"),
            back=texts.text(lang, "change_answer"),
            seconds_left=_seconds_left(state, settings.follow_up_s, now),
            total_s=math.ceil(settings.follow_up_s),
        )
    if state.screen == "language":
        return LanguageView(
            # In every language offered: whoever cannot read the current one finds theirs.
            title=" · ".join(dict.fromkeys(texts.text(code, "language_word") for code in settings.languages)),
            options=tuple((code, texts.text(code, "lang_name")) for code in settings.languages),
            current=lang,
            back=texts.text(lang, "back"),
        )
    return RatingView(
        question=t("question"),
        labels=texts.labels(lang, settings.scale),
        all_labels=_all_labels(settings.scale),
        note=texts.text(lang, "anonymous"),
        pressed=state.pressed,
        hint=texts.text(lang, "invite") if state.screen == "attract" else "",
        lang_button=texts.text(lang, "lang_name") if len(settings.languages) > 1 else "",
    )


@lru_cache(maxsize=8)
def _all_labels(scale: int) -> tuple[tuple[str, ...], ...]:
    return tuple(texts.labels(lang, scale) for lang in texts.LANGUAGES)


def _seconds_left(state: FlowState, total: float, now: float | None) -> int:
    """Whole seconds until the follow-up times out (its countdown), never more than the whole."""
    if now is None or state.until is None:
        return math.ceil(total)
    return max(0, min(math.ceil(total), math.ceil(state.until - now)))


def pin_view(entered: int, notice: Notice = "", lock_s: int = 0, lang: str = "en") -> PinView:
    """The staff PIN pad with ``entered`` digits typed so far, in ``lang``.

    ``notice`` says what happened ("wrong_pin", "locked" for ``lock_s`` more seconds).
    """
    message = "" if not notice else texts.staff(notice, lang, seconds=lock_s)
    return PinView(texts.staff("pin_title", lang), entered, message, cancel=texts.staff("cancel", lang))


@dataclass(frozen=True, slots=True)
class StatusFacts:
    """What the staff status screen reports, gathered by the kiosk loop."""

    site: str
    device: str
    version: str
    #: The sender's latest snapshot; None when the kiosk runs without one.
    sender: SenderStatus | None
    #: The outbox's counts, or why they could not be read.
    outbox: Stats | str
    #: Answers stored today, or "?" when the outbox could not say.
    today: int | str
    ip: str
    test_mode: bool
    #: Unix time now (ages are shown relative to it).
    now: float
    #: Seconds until test mode ends by itself.
    test_mode_left_s: float = 0.0
    #: The kiosk's language (staff screens speak the kiosk's default language).
    lang: str = "en"


def status_view(facts: StatusFacts) -> StatusView:
    """The staff status screen: identity, broker, sender health, backlog, today, test mode."""
    lang = facts.lang

    def t(key: str, **values: object) -> str:
        return texts.staff(key, lang, **values)

    lines = [(t("line_identity"), f"{facts.site} / {facts.device}"), (t("line_version"), facts.version)]
    st = facts.sender
    if st is None:
        lines.append((t("line_broker"), t("not_started")))
    else:
        if st.connected:
            state = t("connected")
        elif st.failing_since is not None or not st.last_error:  # the Sender line says why
            state = t("not_connected")
        else:
            state = t("not_connected_why", why=_short(st.last_error))
        lines.append((t("line_broker"), f"{state} · {t('central_up' if st.central_online else 'central_not_seen')}"))
        if st.failing_since is not None:
            lines.append((t("line_sender"), t("sender_restarting", n=st.restarts)))
        elif st.restarts:
            lines.append((t("line_sender"), t("sender_running", n=st.restarts)))
        alarms = [code for code, _ in st.alarms]
        if alarms:
            lines.append((t("line_alarms"), ", ".join(alarms)))
    if isinstance(facts.outbox, str):
        lines.append((t("line_backlog"), t("unknown", why=facts.outbox)))
    else:
        stats = facts.outbox
        oldest = stats.oldest_unconfirmed_at
        backlog = (t("backlog", n=stats.backlog) if oldest is None
                   else t("backlog_oldest", n=stats.backlog, age=_age(facts.now - oldest)))
        lines.append((t("line_backlog"), backlog))
        last = stats.last_confirmed_at
        lines.append((t("line_last_sync"), t("never") if last is None else t("ago", age=_age(facts.now - last))))
    lines.append((t("line_today"), str(facts.today)))
    lines.append((t("line_ip"), facts.ip))
    minutes = math.ceil(facts.test_mode_left_s / 60)
    lines.append((t("line_test_mode"), t("test_on", minutes=minutes) if facts.test_mode else t("off")))
    return StatusView(t("status_title", site=facts.site, device=facts.device), tuple(lines), facts.test_mode,
                      buttons=(t("test_mode_on" if facts.test_mode else "test_mode_off"), t("close"), t("quit")))


def _short(text: str, limit: int = 64) -> str:
    """A message cut to fit a status line (the journal has it whole)."""
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"

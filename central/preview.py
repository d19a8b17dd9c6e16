"""A survey configuration drawn as the kiosk draws it: PNGs for the survey editor's preview.

The screens come from the kiosk's own drawing code (:class:`display.screens.Display`,
the view models of :mod:`display.view`, the texts of :mod:`display.texts`) on an
off-screen pygame surface (SDL's ``dummy`` video driver: no window, no display
needed). The views are built the way the kiosk builds them from a remote
configuration (``device/remote.py`` and ``device/views.py``): its question and
reason labels where given, the kiosk's own words elsewhere. ``display`` imports
nothing of ours, so there is no cycle.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Final, Literal

#: The panel drawn: the kiosk's default (Raspberry Pi Touch Display, 7").
SIZE: Final = (800, 480)
MM: Final = (154.0, 86.0)

Screen = Literal["rating", "followup"]
#: pygame keeps global state: one drawing at a time.
_LOCK = threading.Lock()


def languages(config: dict[str, Any]) -> tuple[str, ...]:
    """The languages the kiosk would offer for ``config`` (those it ships screens for), default first."""
    from display import texts

    offered = tuple(lang for lang in config.get("languages", ("en",)) if lang in texts.LANGUAGES) or ("en",)
    default = config.get("default_lang", offered[0])
    return (default, *(lang for lang in offered if lang != default)) if default in offered else offered


def render_png(config: dict[str, Any], *, lang: str, screen: Screen = "rating") -> bytes:
    """The kiosk's ``screen`` for the configuration ``config`` in ``lang``, as a PNG.

    ``config`` is a valid survey configuration (schema and checks passed).
    """
    import io

    # Off-screen: no window, no display (set before pygame is first imported in this process).
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    import pygame

    from display import texts
    from display.layout import Geometry
    from display.screens import Display
    from display.view import FollowUpView, RatingView

    offered = languages(config)
    lang = lang if lang in offered else offered[0]
    scale = int(config["scale"])

    def t(key: str, custom: dict[str, str] | None) -> str:
        return (custom or {}).get(lang) or texts.text(lang, key)

    view: RatingView | FollowUpView
    if screen == "followup":
        if "reasons" in config:
            reasons = tuple((r["key"], r["label"].get(lang) or r["label"].get("en") or next(iter(r["label"].values())))
                            for r in config["reasons"])
        else:
            keys = texts.PRESETS[config["reason_preset"]] if "reason_preset" in config else texts.DEFAULT_REASONS
            reasons = tuple((k, texts.reason(lang, k)) for k in keys)
        ratings = sorted(config.get("followup_ratings", [1]))
        timeout = float(config.get("followup_timeout_s", 10))  # the kiosk's default (survey.follow_up_s)
        view = FollowUpView(title=t("follow_up", config.get("followup_question")), reasons=reasons,
                            skip=texts.text(lang, "skip"), rating=ratings[0] if ratings else 1, scale=scale,
                            note=texts.text(lang, "anonymous"), back=texts.text(lang, "change_answer"),
                            seconds_left=int(timeout), total_s=int(timeout))
    else:
        view = RatingView(question=t("question", config.get("question")), labels=texts.labels(lang, scale),
                          all_labels=tuple(texts.labels(code, scale) for code in texts.LANGUAGES),
                          note=texts.text(lang, "anonymous"),
                          # The resting screen (with its invitation) is in the first language; another
                          # one is shown after a customer chose it, without the invitation.
                          hint=texts.text(lang, "invite") if lang == offered[0] else "",
                          lang_button=texts.text(lang, "lang_name") if len(offered) > 1 else "")
    with _LOCK:
        if not pygame.font.get_init():
            pygame.font.init()
        surface = pygame.Surface(SIZE)
        Display(surface, Geometry(SIZE, MM, 0)).render(view)
        out = io.BytesIO()
        pygame.image.save(surface, out, "preview.png")
    return out.getvalue()

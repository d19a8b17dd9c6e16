"""Headless PNGs of the kiosk's screens, for docs and for looking at changes."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from device import __version__
from device.config import SurveyConfig
from device.flow import FlowSettings, FlowState
from device.views import StatusFacts, pin_view, status_view, view_for
from display import texts
from sync.outbox import Stats
from sync.sender import SenderStatus

# Physical sizes of the panels we ship layouts for (active area, landscape).
PANEL_MM = {
    (800, 480): (154.0, 86.0),  # Raspberry Pi Touch Display 7"
    (1024, 600): (154.0, 86.0),  # common 7" HDMI panels
    (720, 1280): (88.0, 155.0),  # Raspberry Pi Touch Display 2, portrait
    (1920, 1080): (477.0, 268.0),  # 21.5" monitor
}
#: The customer screens (flow states) and the staff screens, by name.
STATES = {
    "attract": FlowState("attract"),
    "rating": FlowState("rating"),
    "pressed": FlowState("rating", pressed=4),
    "followup": FlowState("followup", pressed=2),
    "language": FlowState("language"),
    "thanks": FlowState("thanks"),
    "sorry": FlowState("sorry"),
}
STAFF_SCREENS = ("pin", "status")
SCREENS = (*STATES, *STAFF_SCREENS)


def _pair(text: str, what: str) -> tuple[float, float]:
    try:
        w, h = (float(v) for v in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"deskpulse-kiosk screenshot: {what} must look like 800x480, not {text!r}") from None
    return w, h


def settings_for(scale: int, lang: str) -> FlowSettings:
    """The default survey's flow settings with ``lang`` as the language shown."""
    sv = SurveyConfig()
    return FlowSettings(scale=scale, default_lang=lang, languages=sv.languages, reasons=sv.reasons,
                        follow_up_ratings=frozenset(sv.follow_up_ratings))


def view_of(screen: str, lang: str, scale: int) -> object:
    """The view model of a named screen."""
    if screen == "pin":
        return pin_view(2, lang=lang)
    if screen == "status":
        now = 1_795_000_000.0
        return status_view(StatusFacts(
            site="hotel-berlin", device="front-desk", version=__version__,
            sender=SenderStatus(connected=True, central_online=True),
            outbox=Stats(pending=1, sent=2, confirmed=54, rejected=0, oldest_unconfirmed_at=now - 12,
                         last_confirmed_at=now - 4),
            today=57, ip="192.168.1.23", test_mode=False, now=now, lang=lang))
    state = STATES[screen]
    return view_for(FlowState(state.screen, lang, state.pressed), settings_for(scale, lang))


def render(screen: str, size: tuple[int, int], mm: tuple[float, float], rotation: int,
           lang: str, scale: int, out: Path) -> Path:
    """Draw one screen and save it as a PNG at ``out``."""
    # Drawn off screen: never the panel's driver, even under the unit's SDL_VIDEODRIVER=kmsdrm
    # (on a kiosk whose screen is taken or missing that would fail with "kmsdrm not available").
    os.environ["SDL_VIDEODRIVER"] = "dummy"
    import pygame

    from display.layout import Geometry
    from display.screens import Display

    pygame.display.init()
    pygame.font.init()
    surface = pygame.Surface(size)
    Display(surface, Geometry(size, mm, rotation)).render(view_of(screen, lang, scale))  # type: ignore[arg-type]
    out.parent.mkdir(parents=True, exist_ok=True)
    pygame.image.save(surface, str(out))
    return out


def save_screenshots(args: argparse.Namespace) -> list[Path]:
    """The ``screenshot`` command: one screen, or ``--all`` of them."""
    if args.lang not in texts.TEXTS:
        raise SystemExit(f"deskpulse-kiosk screenshot: no texts for language {args.lang!r} "
                         f"(shipped: {', '.join(texts.LANGUAGES)})")
    if not args.all:
        w, h = _pair(args.size, "--size")
        size = (int(w), int(h))
        mm = _pair(args.mm, "--mm") if args.mm else PANEL_MM.get(size, (w * 0.1926, h * 0.1792))
        return [render(args.screen, size, mm, args.rotation, args.lang, args.scale, args.out)]
    saved = []
    for size in ((800, 480), (720, 1280)):
        for screen in SCREENS:
            name = f"{screen}-{size[0]}x{size[1]}-{args.lang}.png"
            saved.append(render(screen, size, PANEL_MM[size], 0, args.lang, args.scale, args.out / name))
    return saved

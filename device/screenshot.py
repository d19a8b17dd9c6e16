"""Headless PNGs of the kiosk's screens, for docs and for looking at changes."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from device import texts
from device.flow import FlowState
from device.kiosk import view_for

# Physical sizes of the panels we ship layouts for (active area, landscape).
PANEL_MM = {
    (800, 480): (154.0, 86.0),  # Raspberry Pi Touch Display 7"
    (1024, 600): (154.0, 86.0),  # common 7" HDMI panels
    (720, 1280): (88.0, 155.0),  # Raspberry Pi Touch Display 2, portrait
    (1920, 1080): (477.0, 268.0),  # 21.5" monitor
}
STATES = {
    "rating": FlowState("rating"),
    "pressed": FlowState("rating", pressed=4),
    "thanks": FlowState("thanks"),
    "sorry": FlowState("sorry"),
}


def _pair(text: str, what: str) -> tuple[float, float]:
    try:
        w, h = (float(v) for v in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"deskpulse-kiosk screenshot: {what} must look like 800x480, not {text!r}") from None
    return w, h


def render(screen: str, size: tuple[int, int], mm: tuple[float, float], rotation: int,
           lang: str, scale: int, out: Path) -> Path:
    """Draw one screen and save it as a PNG at ``out``."""
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    import pygame

    from display.layout import Geometry
    from display.screens import Display

    pygame.display.init()
    pygame.font.init()
    surface = pygame.Surface(size)
    state = STATES[screen]
    view = view_for(FlowState(state.screen, lang, state.pressed), scale)
    Display(surface, Geometry(size, mm, rotation)).render(view)
    out.parent.mkdir(parents=True, exist_ok=True)
    pygame.image.save(surface, str(out))
    return out


def save_screenshots(args: argparse.Namespace) -> list[Path]:
    """The ``screenshot`` command: one screen, or ``--all`` of them."""
    if args.lang not in texts.TEXTS:
        raise SystemExit(f"deskpulse-kiosk screenshot: no texts for language {args.lang!r}")
    if not args.all:
        w, h = _pair(args.size, "--size")
        size = (int(w), int(h))
        mm = _pair(args.mm, "--mm") if args.mm else PANEL_MM.get(size, (w * 0.1926, h * 0.1792))
        return [render(args.screen, size, mm, args.rotation, args.lang, args.scale, args.out)]
    saved = []
    for size in ((800, 480), (720, 1280)):
        for screen in STATES:
            name = f"{screen}-{size[0]}x{size[1]}-{args.lang}.png"
            saved.append(render(screen, size, PANEL_MM[size], 0, args.lang, args.scale, args.out / name))
    return saved

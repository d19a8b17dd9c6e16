"""Opening the panel, and keeping the kiosk useful when it cannot be opened.

A kiosk whose screen does not start (no KMSDRM, no permission on ``/dev/dri``, a
cable pulled) must not crash in a restart loop when it has physical buttons:
it runs on SDL's dummy driver (the event loop and the buttons work, nothing is
shown), says why in the log and in the retained status (the ``screen-down``
alarm), and tries the real screen again now and then. Without buttons there is
nothing to collect, and the kiosk exits with a clear message as before.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import pygame

from device.config import KioskConfig
from sync.errors import DeskPulseError

log = logging.getLogger("deskpulse.screen")

#: SDL drivers that show nothing: reaching one of these without asking for it means "no screen".
INVISIBLE_DRIVERS = frozenset({"dummy", "offscreen"})
#: How often a kiosk running without its screen tries it again.
RETRY_S = 60.0
#: The renderer SDL draws the kiosk's surface with on KMSDRM (``SDL_FRAMEBUFFER_ACCELERATION``). KMSDRM has no
#: framebuffer of its own, so SDL shows the surface through a renderer; left to itself it takes the first that
#: says it is accelerated, desktop OpenGL, whose frames never reached the screen of the emulated Pi (make
#: pi-vm-test: black), while OpenGL ES 2's did. GLES 2 is also what the Pi's GPU (VC4/V3D) speaks natively.
KMSDRM_RENDERER = "opengles2"


class ScreenError(DeskPulseError):
    """The panel could not be opened; the message says why and what to check."""


@dataclass(frozen=True, slots=True)
class Screen:
    """An open display surface and how it was opened."""

    surface: pygame.Surface
    driver: str
    fullscreen: bool


def open_screen(config: KioskConfig, *, fullscreen: bool, driver: str | None = None,
                headless: bool = False) -> Screen:
    """Open the panel (or a window), as ``config.screen`` says.

    Args:
        config: the kiosk configuration.
        fullscreen: take the whole panel (kiosk mode).
        driver: the SDL video driver to ask for (None: SDL's own choice or ``SDL_VIDEODRIVER``).
        headless: the dummy driver is what was asked for (tests, the demo).

    Raises:
        ScreenError: no driver could open a screen, or SDL fell back to one that shows nothing.
    """
    if driver is not None:
        os.environ["SDL_VIDEODRIVER"] = driver
    if os.environ.get("SDL_VIDEODRIVER", "").lower() == "kmsdrm":
        os.environ.setdefault("SDL_FRAMEBUFFER_ACCELERATION", KMSDRM_RENDERER)  # an operator's own value wins
    try:
        pygame.display.init()
        pygame.font.init()
        surface = pygame.display.set_mode((0, 0) if fullscreen else config.screen.size,
                                          pygame.FULLSCREEN if fullscreen else 0)
    except pygame.error as exc:
        pygame.display.quit()
        raise ScreenError(f"no screen: SDL could not open the display ({exc}). Check that the display is "
                          "connected and that the service may use /dev/dri (groups video, render)") from exc
    name = pygame.display.get_driver()
    if not headless and name in INVISIBLE_DRIVERS:
        pygame.display.quit()
        raise ScreenError(f"no screen: SDL fell back to the {name!r} video driver. Check that the display is "
                          "connected and that the service may use /dev/dri (groups video, render), or run "
                          "with --headless")
    pygame.display.set_caption("DeskPulse")
    if fullscreen:
        pygame.mouse.set_visible(False)
    return Screen(surface, name, fullscreen)


def open_blind(config: KioskConfig) -> Screen:
    """The dummy driver, at the configured size: the event loop and the buttons work, nothing shows."""
    os.environ["SDL_VIDEODRIVER"] = "dummy"
    pygame.display.init()
    pygame.font.init()
    return Screen(pygame.display.set_mode(config.screen.size), "dummy", False)


class ScreenRetry:
    """Tries the real screen again while the kiosk runs blind (called by the kiosk loop).

    Args:
        config: the kiosk configuration.
        fullscreen: as for :func:`open_screen`.
        driver: the driver the kiosk asked for at start (None: SDL's choice).
        every_s: how long between tries.
    """

    def __init__(self, config: KioskConfig, *, fullscreen: bool, driver: str | None,
                 every_s: float = RETRY_S) -> None:
        self.config = config
        self.fullscreen = fullscreen
        self.driver = driver
        self.every_s = every_s

    def __call__(self) -> tuple[Screen, str | None]:
        """Close the blind display and try the real one.

        Returns:
            The screen now open, and None; or a blind screen again and why the real one failed.

        The caller hands every queued event to the kiosk first: closing SDL's
        video subsystem drops its event queue.
        """
        pygame.display.quit()
        if self.driver is None:
            os.environ.pop("SDL_VIDEODRIVER", None)
        try:
            screen = open_screen(self.config, fullscreen=self.fullscreen, driver=self.driver)
        except ScreenError as exc:
            return open_blind(self.config), str(exc)
        log.warning("the screen is back (%s driver)", screen.driver)
        return screen, None

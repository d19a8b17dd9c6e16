"""``deskpulse-kiosk``: run the kiosk, check its configuration, or draw screenshots."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from device import __version__
from device.config import DEFAULT_PATH, KioskConfig, load
from device.screenshot import SCREENS
from display.texts import LANGUAGES
from sync.errors import DeskPulseError

EPILOG = """\
examples:
  deskpulse-kiosk                                  run with /etc/deskpulse/kiosk.toml (fullscreen)
  deskpulse-kiosk run -c kiosk.toml --windowed     run in a window on a desktop
  deskpulse-kiosk run -c kiosk.toml --headless --script 5,4,2
                                                   no screen: tap three answers, keep syncing
  deskpulse-kiosk check-config -c kiosk.toml       validate a configuration file and exit (offline)
  sudo deskpulse-kiosk doctor                      check this Pi end to end: config, display, touch,
                                                   GPIO, broker login, clock, power, disk, outbox, unit
  deskpulse-kiosk screenshot --all --out docs/img  PNGs of every screen (in --lang)
  deskpulse-kiosk screenshot --screen followup --size 720x1280 --rotation 90 --lang uk --out f.png
  deskpulse-kiosk hash-pin                         make the staff.pin_hash line for a PIN

In fullscreen kiosk mode Escape and a window close open the staff PIN pad; only
"Quit kiosk" on the staff screen (or SIGTERM) ends the program.

Every configuration key is described in docs/configuration.md.
Logs go to stderr (the journal, under systemd).
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deskpulse-kiosk",
        description="DeskPulse kiosk: asks customers how the service was, stores each answer "
        "durably on this device, then syncs it to central over MQTT.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"deskpulse-kiosk {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add_config(p: argparse.ArgumentParser) -> None:
        p.add_argument("-c", "--config", type=Path, default=DEFAULT_PATH,
                       help=f"kiosk TOML file (default: {DEFAULT_PATH})")
        p.add_argument("-v", "--verbose", action="store_true", help="log debug details")

    run = sub.add_parser("run", help="run the kiosk (the default command)",
                         description="Run the kiosk until SIGTERM or Ctrl-C.")
    add_config(run)
    mode = run.add_mutually_exclusive_group()
    mode.add_argument("--windowed", action="store_true",
                      help="use a window of screen.size instead of fullscreen (development)")
    mode.add_argument("--headless", action="store_true",
                      help="draw on SDL's dummy driver: no screen needed (demo, tests)")
    run.add_argument("--script", metavar="RATINGS",
                     help="comma-separated ratings to tap automatically, e.g. 5,4,2")
    run.add_argument("--witness", type=Path, metavar="FILE",
                     help="append each answer's id to FILE after its thank-you was shown (tests)")

    check = sub.add_parser("check-config", help="validate the configuration file and exit (offline)",
                           description="Validate a kiosk TOML file; exit 0 if it is good. It does not contact "
                           "the broker: 'deskpulse-kiosk doctor' does.")
    add_config(check)

    doctor = sub.add_parser(
        "doctor", help="check this Pi end to end and say what to fix",
        description="Check the configuration (valid, readable by the service's user), the display (KMSDRM "
        "libraries, a DRM device the user may open), a touch input device, the GPIO chip (when [gpio] is "
        "used), the broker (a real login with these credentials and TLS, then a subscription: it logs in "
        "with the kiosk's client id, so a running kiosk reconnects once), the clock, under-voltage, free "
        "disk, the outbox (sound, nothing waiting over an hour) and the systemd unit. Each says what it "
        "found and what to do. Exit 0 only when every check passes; 1 otherwise.")
    add_config(doctor)
    doctor.add_argument("--json", action="store_true", help="print the checks as JSON")
    doctor.add_argument("--user", default="deskpulse", help="the service's user (default deskpulse)")

    shot = sub.add_parser("screenshot", help="save PNGs of kiosk screens",
                          description="Draw kiosk screens headless and save them as PNG files.")
    shot.add_argument("--screen", choices=list(SCREENS), default="rating",
                      help="which screen (default: rating)")
    shot.add_argument("--all", action="store_true",
                      help="every screen at 800x480 and 720x1280 (in --lang) into the folder --out")
    shot.add_argument("--size", default="800x480", help="panel size in pixels, WxH (default 800x480)")
    shot.add_argument("--mm", default=None, help="panel size in mm, WxH (default: 7-inch panel proportions)")
    shot.add_argument("--rotation", type=int, choices=[0, 90, 180, 270], default=0)
    shot.add_argument("--lang", default="en", choices=list(LANGUAGES), help="language (default en)")
    shot.add_argument("--scale", type=int, choices=[3, 4, 5], default=5)
    shot.add_argument("--out", type=Path, required=True, help="output PNG file, or directory with --all")

    sub.add_parser("hash-pin", help="print a staff.pin_hash for a PIN read from the terminal",
                   description="Asks for a staff PIN (4 to 12 digits; 6 or more recommended) twice (or reads "
                   "one line from standard input when it is not a terminal) and prints the line to put into "
                   "[staff] of kiosk.toml. The PIN itself is stored nowhere. On the kiosk, wrong PINs lock the "
                   "pad for longer and longer, across restarts; but whoever copies kiosk.toml can try every "
                   "4-digit PIN offline in minutes, so a longer PIN is worth it.")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``deskpulse-kiosk``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("run", "check-config", "doctor", "screenshot", "hash-pin", "-h", "--help",
                                   "--version"):
        argv = ["run", *argv]  # `deskpulse-kiosk [-c FILE]` runs the kiosk
    args = _parser().parse_args(argv)
    command = args.command
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        if command == "hash-pin":
            return hash_pin_command()
        if command == "screenshot":
            from device.screenshot import save_screenshots
            for path in save_screenshots(args):
                print(path)
            return 0
        if command == "doctor":
            from device.doctor import diagnose, report

            checks = diagnose(args.config, user=args.user)
            print(report(checks, as_json=args.json))
            return 0 if all(c.status == "ok" for c in checks) else 1
        config = load(args.config)
        if command == "check-config":
            print(f"{args.config}: ok ({config.site}/{config.device}, broker {config.broker.url}); checked "
                  "offline: the broker was not contacted ('deskpulse-kiosk doctor' logs in)")
            return 0
        return run(config, args)
    except DeskPulseError as exc:
        print(f"deskpulse-kiosk: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        pygame = sys.modules.get("pygame")
        if pygame is None or not isinstance(exc, pygame.error):
            raise
        # SDL failing where no step expected it (a screen lost while running): a sentence, not a traceback.
        driver = os.environ.get("SDL_VIDEODRIVER") or "SDL's default"
        print(f"deskpulse-kiosk: SDL failed: {exc} (video driver {driver}); 'deskpulse-kiosk doctor' checks "
              "the display", file=sys.stderr)
        return 3


def hash_pin_command() -> int:
    """Read a PIN twice (without echo) and print its ``pin_hash`` line."""
    import getpass

    from device.staff import hash_pin

    if sys.stdin.isatty():
        pin = getpass.getpass("staff PIN (4 to 12 digits): ")
        again = getpass.getpass("again: ")
    else:  # e.g. `echo 2468 | deskpulse-kiosk hash-pin` in an install script
        pin = again = sys.stdin.readline().strip()
    if again != pin:
        print("deskpulse-kiosk: the PINs differ", file=sys.stderr)
        return 2
    if pin.isdigit() and 4 <= len(pin) < 6:
        print("deskpulse-kiosk: note: a PIN of 6 or more digits is much harder to find from a copied "
              "kiosk.toml", file=sys.stderr)
    try:
        print(f'pin_hash = "{hash_pin(pin)}"')
    except ValueError as exc:
        print(f"deskpulse-kiosk: {exc}", file=sys.stderr)
        return 2
    return 0


def run(config: KioskConfig, args: argparse.Namespace) -> int:
    """Open the screen, start the sender and run the kiosk loop."""
    if args.headless:
        os.environ["SDL_VIDEODRIVER"] = "dummy"
        os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    import pygame

    from device.kiosk import Kiosk, make_sender
    from device.screen import ScreenError, ScreenRetry, open_blind, open_screen
    from device.script import TapScript

    fullscreen = not (args.windowed or args.headless) and config.screen.fullscreen
    wanted_driver = os.environ.get("SDL_VIDEODRIVER")
    screen_down: str | None = None
    try:
        screen = open_screen(config, fullscreen=fullscreen, headless=args.headless)
    except ScreenError as exc:
        if not config.gpio.buttons:
            print(f"deskpulse-kiosk: {exc}.", file=sys.stderr)
            return 3
        # Buttons still collect answers: run blind, report it, try the screen again now and then.
        screen_down = str(exc)
        logging.getLogger("deskpulse.kiosk").error("%s; collecting from the buttons and trying the screen "
                                                   "again every minute", exc)
        screen = open_blind(config)
    surface, driver = screen.surface, screen.driver
    script = None
    if args.script:
        try:
            script = TapScript([int(r) for r in args.script.split(",") if r.strip()])
        except ValueError:
            print(f"deskpulse-kiosk: --script wants ratings like 5,4,2, not {args.script!r}", file=sys.stderr)
            return 2
    buttons = lights = None
    if config.gpio.used:
        from device.buttons import build, post_press

        try:
            buttons, lights = build(config.gpio, post_press)
        except Exception as exc:  # gpiozero raises many kinds (no GPIO chip, pin in use, ...)
            print(f"deskpulse-kiosk: {config.source}: [gpio] pins cannot be used: {exc}", file=sys.stderr)
            return 3
    retry = ScreenRetry(config, fullscreen=fullscreen, driver=wanted_driver) if screen_down else None
    kiosk = Kiosk(config, surface, flip=pygame.display.flip, sender=None, witness=args.witness,
                  exit_on_quit=not fullscreen, lights=lights, screen_down=screen_down, screen_retry=retry)
    kiosk.sender = make_sender(config).start()  # after the kiosk created the outbox
    logging.getLogger("deskpulse.kiosk").info(
        "kiosk %s/%s on %s (%dx%d), broker %s, outbox %s", config.site, config.device, driver,
        *surface.get_size(), config.broker.url, config.outbox_path)
    try:
        kiosk.run(script)
    finally:
        if buttons is not None:
            buttons.close()
        kiosk.close()
        pygame.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The kiosk's configuration: one TOML file, validated at start into frozen dataclasses.

A wrong value fails at start with the file, the key and the reason; nothing
reads the file or the environment later. See docs/configuration.md for every
key (``deskpulse-kiosk --help`` names the default path).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from display import texts
from sync.broker import BrokerSettings
from sync.configfile import BROKER_KEYS, TableReader, read_broker, read_toml, type_name
from sync.protocol import SLUG_RE

DEFAULT_PATH = Path("/etc/deskpulse/kiosk.toml")
DEFAULT_SIZE = (800, 480)
DEFAULT_MM = (154.0, 86.0)  # Raspberry Pi Touch Display (7"), active area


@dataclass(frozen=True, slots=True)
class ScreenConfig:
    """The panel: window size, physical size (for millimetre layout) and rotation."""

    size: tuple[int, int] = DEFAULT_SIZE
    mm: tuple[float, float] = DEFAULT_MM
    rotation: int = 0
    fullscreen: bool = True


@dataclass(frozen=True, slots=True)
class SoundConfig:
    """The optional confirmation chime after each stored answer."""

    confirm: bool = False
    volume: float = 0.4


@dataclass(frozen=True, slots=True)
class SurveyConfig:
    """The default survey (a remote config may override it later)."""

    scale: int = 5
    default_lang: str = "en"
    languages: tuple[str, ...] = texts.LANGUAGES
    thank_you_s: float = 3.0
    repeat_interval_s: float = 5.0
    follow_up_ratings: tuple[int, ...] = (1, 2)
    reasons: tuple[str, ...] = texts.DEFAULT_REASONS
    follow_up_s: float = 10.0
    inactivity_s: float = 30.0


@dataclass(frozen=True, slots=True)
class GpioConfig:
    """Buttons and lights on the Pi's header (gpiozero pin names or BCM numbers)."""

    buttons: tuple[int | str, ...] = ()  # one per rating, worst first; empty: no buttons
    thank_you_led: int | str | None = None
    status_led: int | str | None = None
    buzzer: int | str | None = None
    debounce_ms: float = 50.0
    pull_up: bool = True

    @property
    def used(self) -> bool:
        """Whether any pin is configured."""
        return bool(self.buttons) or any(p is not None for p in (self.thank_you_led, self.status_led, self.buzzer))


@dataclass(frozen=True, slots=True)
class StaffConfig:
    """Staff mode: the PIN's hash (``deskpulse-kiosk hash-pin`` makes one); None: no staff mode."""

    pin_hash: str | None = None
    #: Test mode ends by itself after this many minutes.
    test_mode_minutes: float = 15.0


@dataclass(frozen=True, slots=True)
class SyncConfig:
    """How the sender delivers the outbox."""

    resend_after_s: float = 30.0
    max_inflight: int = 100
    retention_days: float = 7.0
    max_outbox_mb: float = 500.0
    #: A sender failing this long stops the kiosk feeding systemd's watchdog (systemd restarts it).
    sender_down_limit_s: float = 300.0


@dataclass(frozen=True, slots=True)
class KioskConfig:
    """Everything the kiosk needs, validated."""

    site: str
    device: str
    data_dir: Path
    broker: BrokerSettings = BrokerSettings()
    screen: ScreenConfig = ScreenConfig()
    survey: SurveyConfig = SurveyConfig()
    sync: SyncConfig = SyncConfig()
    gpio: GpioConfig = GpioConfig()
    staff: StaffConfig = StaffConfig()
    sound: SoundConfig = SoundConfig()
    source: str = "<defaults>"

    @property
    def outbox_path(self) -> Path:
        """The outbox database inside the data directory."""
        return self.data_dir / "outbox.sqlite3"


def load(path: Path | str) -> KioskConfig:
    """Read and validate a kiosk TOML file.

    Raises:
        ConfigError: the file is missing, not TOML, or a value is wrong.
    """
    path = Path(path)
    data = read_toml(path)
    return from_dict(data, source=str(path), base=path.parent.resolve())


def from_dict(data: dict[str, Any], *, source: str = "<config>", base: Path | None = None) -> KioskConfig:
    """Validate a configuration given as a dict (as parsed from TOML)."""
    base = base or Path.cwd()
    top = TableReader(source, data, "", {"device", "broker", "screen", "survey", "sync", "gpio", "staff", "sound"})
    tables = {}
    for name in ("device", "broker", "screen", "survey", "sync", "gpio", "staff", "sound"):
        tables[name] = top.get(name, dict, {})

    dev = TableReader(source, tables["device"], "device.", {"site", "name", "data_dir"})
    site = dev.get("site", str, None)
    name = dev.get("name", str, None)
    for key, value in (("site", site), ("name", name)):
        if value is None:
            raise dev.fail(key, "is required")
        if not SLUG_RE.fullmatch(value):
            raise dev.fail(key, f"must be a slug of a-z, 0-9 and '-' (1 to 64), got {value!r}")
    data_dir = dev.path("data_dir", base, Path("/var/lib/deskpulse"))
    assert data_dir is not None

    broker = read_broker(TableReader(source, tables["broker"], "broker.", set(BROKER_KEYS)), base)

    sc = TableReader(source, tables["screen"], "screen.", {"size", "mm", "rotation", "fullscreen"})
    rotation = sc.get("rotation", int, 0)
    if rotation not in (0, 90, 180, 270):
        raise sc.fail("rotation", f"must be 0, 90, 180 or 270, got {rotation}")
    screen = ScreenConfig(
        size=sc.pair("size", DEFAULT_SIZE, int),
        mm=sc.pair("mm", DEFAULT_MM, (int, float)),
        rotation=rotation,
        fullscreen=sc.get("fullscreen", bool, True),
    )

    so = TableReader(source, tables["sound"], "sound.", {"confirm", "volume"})
    sound = SoundConfig(confirm=so.get("confirm", bool, False), volume=so.number("volume", 0.4, 0, 1))

    survey = _survey(TableReader(source, tables["survey"], "survey.", set(SURVEY_KEYS)))
    gpio = _gpio(TableReader(source, tables["gpio"], "gpio.", set(GPIO_KEYS)), survey.scale)
    st = TableReader(source, tables["staff"], "staff.", {"pin_hash", "test_mode_minutes"})
    pin_hash = st.get("pin_hash", str, None)
    if pin_hash is not None:
        from device.staff import check_hash_format

        problem = check_hash_format(pin_hash)
        if problem:
            raise st.fail("pin_hash", problem)
    staff = StaffConfig(pin_hash=pin_hash, test_mode_minutes=st.number("test_mode_minutes", 15.0, 1, 24 * 60))

    sy = TableReader(source, tables["sync"], "sync.",
                     {"resend_after_s", "max_inflight", "retention_days", "max_outbox_mb", "sender_down_limit_s"})
    sync = SyncConfig(
        resend_after_s=sy.number("resend_after_s", 30.0, 0.5, 86400),
        max_inflight=int(sy.number("max_inflight", 100, 1, 65535)),
        retention_days=sy.number("retention_days", 7.0, 0, 3650),
        max_outbox_mb=sy.number("max_outbox_mb", 500.0, 1, 1_000_000),
        sender_down_limit_s=sy.number("sender_down_limit_s", 300.0, 1, 86400),
    )
    return KioskConfig(site=site, device=name, data_dir=data_dir, broker=broker,
                       screen=screen, survey=survey, sync=sync, gpio=gpio, staff=staff, sound=sound, source=source)


SURVEY_KEYS = ("scale", "default_lang", "languages", "thank_you_s", "repeat_interval_s", "follow_up_ratings",
               "reasons", "reason_preset", "follow_up_s", "inactivity_s")
GPIO_KEYS = ("buttons", "thank_you_led", "status_led", "buzzer", "debounce_ms", "pull_up")


def _list_of(reader: TableReader, key: str, kind: type | tuple[type, ...], default: tuple[Any, ...]) -> tuple[Any, ...]:
    value = reader.get(key, list, None)
    if value is None:
        return default
    for item in value:
        if isinstance(item, bool) or not isinstance(item, kind):
            raise reader.fail(key, f"must be a list of {type_name(kind)}, got {item!r} in it")
    if len(set(value)) != len(value):
        raise reader.fail(key, f"must not repeat an entry, got {value!r}")
    return tuple(value)


def _survey(sv: TableReader) -> SurveyConfig:
    scale = sv.get("scale", int, 5)
    if scale not in (3, 4, 5):
        raise sv.fail("scale", f"must be 3, 4 or 5, got {scale}")
    shipped = ", ".join(texts.LANGUAGES)
    languages = _list_of(sv, "languages", str, texts.LANGUAGES)
    if not languages:
        raise sv.fail("languages", "must name at least one language")
    for lang in languages:
        if lang not in texts.TEXTS:
            raise sv.fail("languages", f"has {lang!r}, which has no translation (shipped: {shipped})")
    default_lang = sv.get("default_lang", str, languages[0] if "en" not in languages else "en")
    if default_lang not in languages:
        raise sv.fail("default_lang", f"must be one of survey.languages ({', '.join(languages)}), "
                      f"got {default_lang!r}")
    ratings = _list_of(sv, "follow_up_ratings", int, (1, 2))
    for r in ratings:
        if not 1 <= r <= scale:
            raise sv.fail("follow_up_ratings", f"must be ratings from 1 to {scale}, got {r}")
    preset = sv.get("reason_preset", str, None)
    if preset is not None and preset not in texts.PRESETS:
        raise sv.fail("reason_preset", f"must be one of {', '.join(texts.PRESETS)}, got {preset!r}")
    if preset is not None and "reasons" in sv.table:
        raise sv.fail("reason_preset", "give survey.reasons or survey.reason_preset, not both")
    reasons = texts.PRESETS[preset] if preset else _list_of(sv, "reasons", str, texts.DEFAULT_REASONS)
    if not 2 <= len(reasons) <= 8:
        raise sv.fail("reasons", f"must offer 2 to 8 reasons, got {len(reasons)}")
    for key in reasons:
        if key not in texts.REASONS:
            raise sv.fail("reasons", f"has {key!r}, which is not a known reason ({', '.join(texts.REASONS)})")
    return SurveyConfig(
        scale=scale,
        default_lang=default_lang,
        languages=languages,
        thank_you_s=sv.number("thank_you_s", 3.0, 0.5, 60),
        repeat_interval_s=sv.number("repeat_interval_s", 5.0, 0, 3600),
        follow_up_ratings=tuple(sorted(ratings)),
        reasons=reasons,
        follow_up_s=sv.number("follow_up_s", 10.0, 1, 600),
        inactivity_s=sv.number("inactivity_s", 30.0, 5, 3600),
    )


def _pin(reader: TableReader, key: str) -> int | str | None:
    value = reader.get(key, (int, str), None)
    if isinstance(value, int) and not 0 <= value <= 27:
        raise reader.fail(key, f"must be a BCM GPIO number 0..27 or a gpiozero pin name, got {value}")
    return value  # type: ignore[no-any-return]


def _gpio(gp: TableReader, scale: int) -> GpioConfig:
    buttons = _list_of(gp, "buttons", (int, str), ())
    if buttons and len(buttons) != scale:
        raise gp.fail("buttons", f"must list one pin per rating ({scale}, worst first), got {len(buttons)}")
    for pin in buttons:
        if isinstance(pin, int) and not 0 <= pin <= 27:
            raise gp.fail("buttons", f"must be BCM GPIO numbers 0..27 or gpiozero pin names, got {pin}")
    config = GpioConfig(
        buttons=buttons,
        thank_you_led=_pin(gp, "thank_you_led"),
        status_led=_pin(gp, "status_led"),
        buzzer=_pin(gp, "buzzer"),
        debounce_ms=gp.number("debounce_ms", 50.0, 1, 1000),
        pull_up=gp.get("pull_up", bool, True),
    )
    pins = [p for p in (*buttons, config.thank_you_led, config.status_led, config.buzzer) if p is not None]
    if len(set(pins)) != len(pins):
        raise gp.fail("buttons", f"and the LED/buzzer pins must all differ, got {pins}")
    return config

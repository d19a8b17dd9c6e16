"""The kiosk's configuration: one TOML file, validated at start into frozen dataclasses.

A wrong value fails at start with the file, the key and the reason; nothing
reads the file or the environment later. See docs/configuration.md for every
key (``deskpulse-kiosk --help`` names the default path).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sync.broker import BrokerSettings
from sync.configfile import BROKER_KEYS, TableReader, read_broker, read_toml
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
class SurveyConfig:
    """The default survey (a remote config may override it later)."""

    scale: int = 5
    default_lang: str = "en"
    thank_you_s: float = 3.0
    repeat_interval_s: float = 5.0


@dataclass(frozen=True, slots=True)
class SyncConfig:
    """How the sender delivers the outbox."""

    resend_after_s: float = 30.0
    max_inflight: int = 100
    retention_days: float = 7.0


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
    top = TableReader(source, data, "", {"device", "broker", "screen", "survey", "sync"})
    tables = {}
    for name in ("device", "broker", "screen", "survey", "sync"):
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

    sv = TableReader(source, tables["survey"], "survey.",
                 {"scale", "default_lang", "thank_you_s", "repeat_interval_s"})
    scale = sv.get("scale", int, 5)
    if scale not in (3, 4, 5):
        raise sv.fail("scale", f"must be 3, 4 or 5, got {scale}")
    survey = SurveyConfig(
        scale=scale,
        default_lang=sv.get("default_lang", str, "en"),
        thank_you_s=sv.number("thank_you_s", 3.0, 0.5, 60),
        repeat_interval_s=sv.number("repeat_interval_s", 5.0, 0, 3600),
    )

    sy = TableReader(source, tables["sync"], "sync.", {"resend_after_s", "max_inflight", "retention_days"})
    sync = SyncConfig(
        resend_after_s=sy.number("resend_after_s", 30.0, 0.5, 86400),
        max_inflight=int(sy.number("max_inflight", 100, 1, 65535)),
        retention_days=sy.number("retention_days", 7.0, 0, 3650),
    )
    return KioskConfig(site=site, device=name, data_dir=data_dir, broker=broker,
                       screen=screen, survey=survey, sync=sync, source=source)

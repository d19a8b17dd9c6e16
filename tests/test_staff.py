"""Staff mode on the real kiosk: the hidden gesture, the PIN (stored hashed, rate-limited),
the status screen and test mode."""

from __future__ import annotations

import pytest

from device.staff import FREE_TRIES, GESTURE_TAPS, LOCK_S, StaffMode, hash_pin, pin_matches
from display.view import PinView, RatingView, StatusView
from sync.errors import ConfigError
from tests.support.kiosk import HeadlessKiosk, corner, enter, stored

PIN = "2468"
HASH = hash_pin(PIN, iterations=1000)


@pytest.fixture
def staffed(kiosk_config):
    clock = [500.0]
    with HeadlessKiosk(kiosk_config(staff={"pin_hash": HASH}, survey={"thank_you_s": 1, "repeat_interval_s": 0}),
                       clock=lambda: clock[0]) as k:
        k.clock = clock  # type: ignore[attr-defined]
        yield k


def test_the_hash_is_not_the_pin_and_checks_it() -> None:
    assert PIN not in HASH and pin_matches(PIN, HASH) and not pin_matches("1357", HASH)
    with pytest.raises(ValueError):
        hash_pin("12")


def test_a_plain_pin_in_the_config_is_refused(kiosk_config) -> None:
    with pytest.raises(ConfigError, match="staff.pin_hash must be a hash"):
        kiosk_config(staff={"pin_hash": "1234"})


def test_the_gesture_and_pin_open_the_status_screen(staffed: HeadlessKiosk) -> None:
    corner(staffed, GESTURE_TAPS - 1)
    assert isinstance(staffed.kiosk.view, RatingView)  # not yet
    corner(staffed, 1)
    assert isinstance(staffed.kiosk.view, PinView)
    enter(staffed, PIN)
    view = staffed.kiosk.view
    assert isinstance(view, StatusView)
    facts = dict(view.lines)
    assert facts["Site / device"] == "test-site / desk-1"
    assert {"Version", "Broker", "Backlog", "Last sync", "Answers today", "IP address"} <= set(facts)
    assert stored(staffed) == []  # the corner taps were no answers


def test_test_mode_flags_answers_and_the_status_counts_them(staffed: HeadlessKiosk) -> None:
    corner(staffed)
    enter(staffed, PIN)
    staffed.tap_target(("test_mode", None))
    staffed.tap_target(("close", None))
    staffed.tap_rating(4)
    assert stored(staffed)[-1]["flags"] == ["test"]
    staffed.clock[0] += 5
    staffed.pump()
    corner(staffed)
    enter(staffed, PIN)
    assert dict(staffed.kiosk.view.lines)["Answers today"] == "1"
    staffed.tap_target(("test_mode", None))
    staffed.tap_target(("close", None))
    staffed.tap_rating(4)
    assert stored(staffed)[-1]["flags"] == []


def test_wrong_pins_are_rate_limited(staffed: HeadlessKiosk) -> None:
    corner(staffed)
    for _ in range(FREE_TRIES):
        enter(staffed, "1111")
    assert "locked" in staffed.kiosk.view.message
    enter(staffed, PIN)  # even the right PIN waits
    assert isinstance(staffed.kiosk.view, PinView)
    staffed.clock[0] += LOCK_S
    enter(staffed, PIN)
    assert isinstance(staffed.kiosk.view, StatusView)


def test_the_lock_doubles_with_each_further_wrong_pin() -> None:
    staff = StaffMode(HASH)
    staff.open(0)
    for _ in range(FREE_TRIES):
        staff.digits = "9"
        staff.key("pin_ok", None, 0)
    assert staff.locked_until == LOCK_S
    staff.digits = "9"
    staff.key("pin_ok", None, LOCK_S)
    assert staff.locked_until == LOCK_S + 2 * LOCK_S


def test_quit_on_the_status_screen_ends_the_kiosk(staffed: HeadlessKiosk) -> None:
    corner(staffed)
    enter(staffed, PIN)
    staffed.tap_target(("quit", None))
    assert not staffed.kiosk.running


def test_staff_screens_close_by_themselves(staffed: HeadlessKiosk) -> None:
    corner(staffed)
    staffed.clock[0] += 61
    staffed.pump()
    assert isinstance(staffed.kiosk.view, RatingView)


def test_without_a_pin_the_gesture_does_nothing(kiosk: HeadlessKiosk) -> None:
    corner(kiosk, GESTURE_TAPS * 2)
    assert isinstance(kiosk.kiosk.view, RatingView) and stored(kiosk) == []


def test_hash_pin_prints_a_hash_the_config_accepts(kiosk_config, monkeypatch, capsys) -> None:
    import io

    from device.cli import main

    monkeypatch.setattr("sys.stdin", io.StringIO("97531\n"))
    assert main(["hash-pin"]) == 0
    out = capsys.readouterr()
    assert "6 or more digits" in out.err  # a short PIN gets the advice, and its hash
    line = out.out.strip()
    value = line.split('"')[1]
    assert line.startswith("pin_hash = ") and "97531" not in line and pin_matches("97531", value)
    assert kiosk_config(staff={"pin_hash": value}).staff.pin_hash == value
    monkeypatch.setattr("sys.stdin", io.StringIO("97531864\n"))
    assert main(["hash-pin"]) == 0
    assert capsys.readouterr().err == ""


def test_the_lockout_survives_a_restart(kiosk_config) -> None:
    """Restarting the kiosk (pulling the plug) must not hand an attacker fresh tries."""
    clock = [500.0]
    config = kiosk_config(staff={"pin_hash": HASH})
    lock_file = config.data_dir / "staff-lock.json"
    with HeadlessKiosk(config, clock=lambda: clock[0]) as k:
        corner(k)
        for _ in range(FREE_TRIES):
            enter(k, "1111")
        assert "locked for 30 s" in k.kiosk.view.message and lock_file.exists()
    clock[0] = 3.0  # a new boot: the monotonic clock starts again
    with HeadlessKiosk(config, clock=lambda: clock[0]) as again:
        corner(again)
        assert "locked for" in again.kiosk.view.message  # shown at once
        enter(again, PIN)
        assert isinstance(again.kiosk.view, PinView), "the right PIN still waits out the lockout"
        clock[0] += LOCK_S
        enter(again, "1111")  # the count went on too: one more wrong PIN locks for longer
        assert "locked for 60 s" in again.kiosk.view.message
        clock[0] += 2 * LOCK_S
        enter(again, PIN)
        assert isinstance(again.kiosk.view, StatusView) and not lock_file.exists()


def test_a_damaged_lock_file_is_ignored_with_a_warning(kiosk_config, caplog: pytest.LogCaptureFixture) -> None:
    config = kiosk_config(staff={"pin_hash": HASH})
    config.data_dir.mkdir(parents=True, exist_ok=True)
    (config.data_dir / "staff-lock.json").write_text("{not json")
    with HeadlessKiosk(config) as k:
        corner(k)
        enter(k, PIN)
        assert isinstance(k.kiosk.view, StatusView)
    assert "unreadable staff lock file" in caplog.text


def test_staff_screens_speak_the_kiosks_language(kiosk_config) -> None:
    with HeadlessKiosk(kiosk_config(staff={"pin_hash": HASH}, survey={"default_lang": "de"})) as k:
        corner(k)
        assert k.kiosk.view.title == "Personal-PIN"
        enter(k, "1111")
        assert k.kiosk.view.message == "falsche PIN"
        enter(k, PIN)
        view = k.kiosk.view
        assert isinstance(view, StatusView)
        facts = dict(view.lines)
        assert facts["Standort / Gerät"] == "test-site / desk-1" and facts["Testmodus"] == "aus"
        assert view.buttons == ("Testmodus: aus", "Schließen", "Kiosk beenden")

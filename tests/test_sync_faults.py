"""Faults the delivery promise must survive (issue: sync).

Each test drives the real kiosk (display code on SDL's dummy driver, or the
``deskpulse-kiosk`` process), a private Mosquitto and a ``deskpulse-central``
process, breaks something, and then checks the whole promise with
:func:`tests.support.delivery.assert_delivered`. Random choices print their seed.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from device.kiosk import make_sender
from tests.support.broker import Mosquitto
from tests.support.central import CentralProcess
from tests.support.delivery import assert_delivered, outbox_states, witnessed
from tests.support.kiosk import HeadlessKiosk
from tests.support.wait import wait_for

pytestmark = pytest.mark.slow


def seeded(name: str) -> random.Random:
    seed = int(os.environ.get("DESKPULSE_SEED", random.randrange(1 << 30)))
    print(f"{name}: seed {seed} (rerun with DESKPULSE_SEED={seed})")
    return random.Random(seed)


@pytest.fixture
def central(broker: Mosquitto, tmp_path: Path):
    with CentralProcess(broker, tmp_path / "central") as proc:
        yield proc


def all_settled(path: Path) -> bool:
    states = outbox_states(path)
    return bool(states) and all(s >= 2 for s in states.values())


def test_broker_killed_and_restarted_during_a_burst_loses_nothing(broker, central, kiosk_config, tmp_path) -> None:
    rng = seeded("burst")
    total, kill_at = 2000, rng.randrange(300, 1500)
    config = kiosk_config(broker.url, sync={"resend_after_s": 2, "max_inflight": 200},
                          survey={"thank_you_s": 0.5, "repeat_interval_s": 0})
    witness = tmp_path / "witness.log"
    clock = [0.0]
    with HeadlessKiosk(config, sender=make_sender(config).start(), witness=witness,
                       clock=lambda: clock[0]) as k:
        for n in range(total):
            if n == kill_at:
                broker.kill()  # SIGKILL: whatever it held in memory is gone
            if n == kill_at + 200:
                broker.start()
            k.tap_rating(1 + n % 5)
            assert k.kiosk.flow.state.screen == "thanks"
            clock[0] += 1.0  # past the thank-you
            k.pump()
        assert len(witnessed(witness)) == total
        wait_for(lambda: all_settled(config.outbox_path), timeout=120, what="every answer confirmed")
    assert_delivered(witnessed(witness), central.events(), [config.outbox_path])


def test_a_network_black_hole_is_noticed_within_11_s_and_loses_nothing(broker, central, kiosk_config,
                                                                        tmp_path) -> None:
    from tests.support.proxy import BlackholeProxy

    proxy = BlackholeProxy(broker.port)
    config = kiosk_config(proxy.url, sync={"resend_after_s": 2})  # keepalive 5 s (kiosk_config)
    witness = tmp_path / "witness.log"
    clock = [0.0]
    sender = make_sender(config).start()
    try:
        with HeadlessKiosk(config, sender=sender, witness=witness, clock=lambda: clock[0]) as k:
            wait_for(lambda: sender.status.connected and sender.status.central_online, what="the sender online")

            def answer(rating: int) -> None:
                k.tap_rating(rating)
                clock[0] += 10
                k.pump()

            answer(5)
            proxy.blackhole()
            holed_at = time.monotonic()
            for rating in (4, 3, 2):  # answers keep coming during the outage
                answer(rating)
            wait_for(lambda: not sender.status.connected, timeout=15, what="the sender to notice")
            noticed = time.monotonic() - holed_at
            assert noticed <= 11, f"the sender took {noticed:.1f} s to notice the black hole"
            proxy.heal()
            answer(1)
            wait_for(lambda: all_settled(config.outbox_path), timeout=60, what="every answer confirmed")
    finally:
        proxy.close()
    assert len(witnessed(witness)) == 5
    assert_delivered(witnessed(witness), central.events(), [config.outbox_path])


def test_kiosk_killed_at_random_moments_over_30_restarts_loses_nothing(broker, central, tmp_path) -> None:
    from tests.support.kioskproc import kiosk_toml, outbox_of, start_kiosk

    rng = seeded("kiosk-kills")
    config = kiosk_toml(tmp_path, broker.url)
    witness, log = tmp_path / "witness.log", tmp_path / "kiosk.log"
    script = ",".join(str(1 + n % 5) for n in range(100))
    for run in range(30):
        loops = log.read_text().count(" on dummy (") if log.exists() else 0
        kiosk = start_kiosk(config, log, "--script", script, "--witness", str(witness))
        # SIGKILL at a random moment: every third run while it may still be starting, the others
        # counted from its loop's first line (so a slow, loaded machine still kills it while it
        # answers, writes and sends, not always before its first answer).
        if run % 3 == 0:
            time.sleep(rng.uniform(0.2, 2.2))  # fault timing (a random kill moment), not waiting for anything
        else:
            wait_for(lambda: log.read_text().count(" on dummy (") > loops or kiosk.poll() is not None,  # noqa: B023
                     timeout=30, what="the kiosk's loop to start")
            time.sleep(rng.uniform(0.0, 1.5))  # fault timing, as above
        kiosk.send_signal(signal.SIGKILL)
        kiosk.wait(10)
    thanked = witnessed(witness)
    assert len(thanked) >= 6, f"only {len(thanked)} answers in 30 runs; log:\n{log.read_text()[-2000:]}"
    # One last, clean run without a script delivers whatever is left.
    started = log.read_text().count(" on dummy (")
    kiosk = start_kiosk(config, log, "-v")
    try:
        try:
            wait_for(lambda: all_settled(outbox_of(config)), timeout=60, what="every answer confirmed")
        except AssertionError as exc:
            import sqlite3
            with sqlite3.connect(outbox_of(config)) as db:
                rows = db.execute("SELECT seq, id, state, attempts, sent_at FROM outbox WHERE state < 2").fetchall()
            raise AssertionError(f"{exc}\nunsettled: {rows}\nstored: {len(central.events())}\n"
                                 f"kiosk log tail:\n{log.read_text()[-3000:]}\n"
                                 f"central log tail:\n{central.log()[-3000:]}") from None
        wait_for(lambda: log.read_text().count(" on dummy (") > started, what="the kiosk's loop to run")
    finally:
        kiosk.terminate()
        assert kiosk.wait(15) == 0
    assert_delivered(thanked, central.events(), [outbox_of(config)])


def test_a_full_disk_is_reported_in_status_and_loses_nothing_thanked_for(broker, central, kiosk_config,
                                                                         tmp_path) -> None:
    from sync import protocol
    from sync.outbox import Outbox
    from tests.support.mqtt_client import MqttClient

    config = kiosk_config(broker.url, sync={"resend_after_s": 2})
    witness = tmp_path / "witness.log"
    topic = protocol.status_topic("test-site", "desk-1")
    probe = MqttClient(broker, "probe", subscribe=[topic])

    def alarms() -> set[str]:
        last = probe.last_json(topic) or {}
        return {a["code"] for a in last.get("health", {}).get("alarms", [])}

    clock = [0.0]
    try:
        with HeadlessKiosk(config, sender=make_sender(config).start(), witness=witness,
                           clock=lambda: clock[0]) as k:
            def answer(rating: int) -> str:
                k.tap_rating(rating)
                screen = k.kiosk.flow.state.screen
                clock[0] += 60
                k.pump()
                return screen

            assert answer(5) == "thanks"
            box: Outbox = k.kiosk.outbox
            pages = box._conn.execute("PRAGMA page_count").fetchone()[0]
            box._conn.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full now
            screens = [answer(r) for r in (4, 3, 2, 1) * 10]
            assert "sorry" in screens  # the customer is told, the kiosk keeps running
            wait_for(lambda: "save-failed" in alarms(), what="status to carry the save-failed alarm")
            box._conn.execute("PRAGMA max_page_count = 1073741823")  # space again
            assert answer(5) == "thanks"
            wait_for(lambda: "save-failed" not in alarms(), what="the alarm to clear")
            wait_for(lambda: all_settled(config.outbox_path), timeout=30, what="every saved answer confirmed")
    finally:
        probe.close()
    thanked = witnessed(witness)
    assert len(thanked) == 2 + screens.count("thanks")
    assert_delivered(thanked, central.events(), [config.outbox_path])


@pytest.mark.parametrize("point", ["after-receive", "after-commit", "after-ack"])
def test_collector_killed_at_a_fault_point_loses_and_doubles_nothing(broker, kiosk_config, tmp_path, point) -> None:
    import json
    import urllib.request

    from dev.broker import free_port

    workdir = tmp_path / "central"
    workdir.mkdir()
    port = free_port()
    faulty = subprocess.Popen(
        [sys.executable, "-m", "central.cli", "--broker", broker.url, "--db",
         f"sqlite:///{workdir / 'central.sqlite3'}", "--bind", f"127.0.0.1:{port}", "--fault-point", point],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "faulty.log", "wb"))

    def up() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as reply:
                return bool(json.load(reply)["ok"])
        except OSError:
            return False

    wait_for(up, timeout=30, what="the faulty central to start")
    config = kiosk_config(broker.url, sync={"resend_after_s": 2})
    witness = tmp_path / "witness.log"
    clock = [0.0]
    with HeadlessKiosk(config, sender=make_sender(config).start(), witness=witness,
                       clock=lambda: clock[0]) as k:
        wait_for(lambda: k.kiosk.sender.status.central_online, what="the device to see central online")
        for rating in (5, 4, 3, 2, 1):
            k.tap_rating(rating)
            clock[0] += 10
            k.pump()
        assert faulty.wait(30) == -signal.SIGKILL, f"central did not die at {point}"
        assert not all_settled(config.outbox_path)  # killed before any receipt
        with CentralProcess(broker, workdir) as central:
            wait_for(lambda: all_settled(config.outbox_path), timeout=60, what="every answer confirmed")
            events = central.events()
    assert len(witnessed(witness)) == 5
    assert_delivered(witnessed(witness), events, [config.outbox_path])

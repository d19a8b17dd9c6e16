"""The shared fixtures do what later tests rely on."""

from __future__ import annotations

import subprocess

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.broker import Mosquitto


def connect_rc(broker: Mosquitto, username: str | None = None, password: str | None = None) -> int:
    """CONNACK reason code value for a fresh client (0 = accepted)."""
    result: list[int] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    if username:
        client.username_pw_set(username, password)
    client.on_connect = lambda c, u, f, reason, p: result.append(reason.value)
    client.connect(broker.host, broker.port)
    for _ in range(50):
        client.loop(0.05)
        if result:
            break
    client.disconnect()
    return result[0]


def test_broker_restarts_on_the_same_port_with_extra_config(broker: Mosquitto, tmp_path) -> None:
    assert connect_rc(broker) == 0
    port = broker.port
    passwords = tmp_path / "passwords"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "desk", "secret"], check=True)
    broker.extra_config = f"allow_anonymous false\npassword_file {passwords}"
    broker.restart()
    assert broker.port == port
    assert connect_rc(broker) != 0  # anonymous refused now
    assert connect_rc(broker, "desk", "wrong") != 0
    assert connect_rc(broker, "desk", "secret") == 0


def test_mock_factory_is_the_default_and_pins_fire_callbacks(mock_factory) -> None:
    from gpiozero import Button, Device

    assert Device.pin_factory is mock_factory
    presses: list[int] = []
    button = Button(17, pin_factory=mock_factory)
    button.when_pressed = lambda: presses.append(1)
    mock_factory.pin(17).drive_low()
    button.close()
    assert presses == [1]


def test_parallel_workers_take_ports_from_their_own_blocks_and_skip_taken_ones() -> None:
    import json
    import os
    import socket
    import sys

    code = ("import json, socket\nfrom dev.broker import free_port\n"
            "held = socket.socket(); held.bind(('127.0.0.1', 29000)); held.listen()\n"
            "print(json.dumps([free_port() for _ in range(5)]))")
    ports = {}
    # Blocks of workers 5 and 6, which make test (2 workers) does not run.
    for worker in ("gw5", "gw6"):
        env = {**os.environ, "PYTEST_XDIST_WORKER": worker}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        ports[worker] = json.loads(out.stdout)
    assert all(27500 <= p < 29000 for p in ports["gw5"]), ports
    # gw6's block starts at 29000, which the child holds: it is skipped.
    assert all(29000 < p < 30500 for p in ports["gw6"]), ports
    assert len(set(ports["gw5"])) == len(set(ports["gw6"])) == 5
    for port in ports["gw5"] + ports["gw6"]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # really free

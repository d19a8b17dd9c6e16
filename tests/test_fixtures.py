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

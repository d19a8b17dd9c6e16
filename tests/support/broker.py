"""The test suite's broker: a real Mosquitto the test starts itself (see sync.devbroker)."""

from sync.devbroker import Mosquitto, find_mosquitto, free_port

__all__ = ["Mosquitto", "find_mosquitto", "free_port"]

"""The test suite's broker: a real Mosquitto the test starts itself (see dev.broker)."""

from dev.broker import Mosquitto, find_mosquitto, free_port

__all__ = ["Mosquitto", "find_mosquitto", "free_port"]

"""A paho client that reads plain QoS 1 PUBLISH packets without paho's per-message property parsing.

paho builds a full :class:`paho.mqtt.properties.Properties` object for every
MQTT 5 PUBLISH it receives, even one that carries no property at all: in a
profile of an idle subscriber that is a third of paho's time per message
(``Properties.__init__``, ``clear`` and ``unpack``). The collector receives
thousands of such messages a second and never reads their properties, so
:class:`LeanReadClient` parses a QoS 1 PUBLISH whose property block is empty
itself (topic, packet id, payload) and hands it to the same dispatch
(``on_message`` and the per-topic callbacks) and the same acknowledgement
(``manual_ack`` or an immediate PUBACK) paho uses. Everything else -- QoS 0
and 2, a message with properties, MQTT 3.1.1, a packet too short for what its
lengths say -- goes through paho's own ``_handle_publish`` unchanged, which
also raises paho's ``MalformedPacket`` for the last case.

This overrides a private paho method (``paho-mqtt`` 2.1 and 2.2); should a
later paho no longer have the attributes it reads, the client quietly uses
paho's own path (``tests/test_leanread.py`` checks both, against a real broker).
"""

from __future__ import annotations

import time
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

#: The fixed header's QoS bits for QoS 1.
_QOS1: Final = 0x02


class LeanReadClient(mqtt.Client):
    """``paho.mqtt.client.Client`` with a fast path for QoS 1 PUBLISH packets without properties."""

    def _handle_publish(self) -> MQTTErrorCode:
        if not _SUPPORTED:
            return super()._handle_publish()
        header: int = self._in_packet["command"]
        packet: bytes | bytearray = self._in_packet["packet"]
        if header & 0x06 != _QOS1 or self._protocol != mqtt.MQTTv5:
            return super()._handle_publish()
        end = 2 + int.from_bytes(packet[0:2], "big")  # the topic's length, then the topic
        # after the topic: the packet id (2 bytes), then the properties' length (none: one byte 0)
        if end < 3 or len(packet) < end + 3 or packet[end + 2] != 0:
            return super()._handle_publish()
        mid = int.from_bytes(packet[end:end + 2], "big")
        message = mqtt.MQTTMessage(mid, bytes(packet[2:end]))
        message.qos = 1
        message.dup = bool(header & 0x08)
        message.retain = bool(header & 0x01)
        message.payload = packet[end + 3:]
        message.timestamp = time.monotonic()
        self._handle_on_message(message)
        if self._manual_ack:
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        return self._send_puback(mid)


def lean_read_supported(client: Any) -> bool:
    """Whether ``client`` has the paho internals :class:`LeanReadClient` reads."""
    return all(hasattr(client, name) for name in ("_in_packet", "_protocol", "_manual_ack",
                                                  "_handle_on_message", "_send_puback"))


#: Checked once: every paho internal the fast path reads (``_in_packet`` and the rest are set
#: per instance, so they are looked up on a throwaway client).
_SUPPORTED: Final = lean_read_supported(mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)) \
    and hasattr(mqtt.Client, "_handle_publish")

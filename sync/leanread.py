"""A paho client that reads plain QoS 1 PUBLISH packets without paho's per-message property parsing.

paho builds a full :class:`paho.mqtt.properties.Properties` object for every
MQTT 5 PUBLISH it receives, even one that carries no property at all: in a
profile of an idle subscriber that is a third of paho's time per message
(``Properties.__init__``, ``clear`` and ``unpack``). The collector receives
thousands of such messages a second and never reads their properties, so
:class:`LeanReadClient` parses a QoS 1 PUBLISH whose property block is empty
itself (topic, packet id, payload) and hands it to the same dispatch
(``on_message``, or the per-topic callbacks when there are any: paho matches
every message's topic against them even when there are none) and the same acknowledgement
(``manual_ack`` or an immediate PUBACK) paho uses; its ``properties`` are None
where paho would give an empty ``Properties``. Everything else -- QoS 0
and 2, a message with properties, MQTT 3.1.1, a packet too short for what its
lengths say -- goes through paho's own ``_handle_publish`` unchanged, which
also raises paho's ``MalformedPacket`` for the last case.

This overrides a private paho method (``paho-mqtt`` 2.1 and 2.2); should a
later paho no longer have the attributes it reads, the client quietly uses
paho's own path (``tests/test_leanread.py`` checks both, against a real broker).
"""

from __future__ import annotations

import ssl
import time
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.client import MQTT_LOG_ERR
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

#: Bytes read from the socket at a time.
_READ_SIZE: Final = 65536
#: Packets read in one ``loop_read`` from what is buffered.
_MAX_PACKETS: Final = 1000
#: The fixed header's QoS bits for QoS 1.
_QOS1: Final = 0x02


def _plain_body(packet: bytes | bytearray, start: int, stop: int) -> tuple[int, bytes, bytes | bytearray] | None:
    """A QoS 1 PUBLISH's variable header and payload, ``packet[start:stop]``: (packet id, topic, payload).

    None when its topic is empty (an alias) or it carries properties: paho's own path reads those.
    """
    end = start + 2 + int.from_bytes(packet[start:start + 2], "big")  # the topic's length, then the topic
    # after the topic: the packet id (2 bytes), then the properties' length (none: one byte 0)
    if end == start + 2 or end + 3 > stop or packet[end + 2] != 0:
        return None
    return int.from_bytes(packet[end:end + 2], "big"), bytes(packet[start + 2:end]), packet[end + 3:stop]


class _ReadBuffer:
    """A socket that reads up to 64 KiB at a time and hands paho its small reads from that.

    paho reads each packet with three or more ``recv`` calls (the first byte, the length byte by
    byte, the rest) after a ``select`` of its own: every one of them lets other threads take the
    interpreter lock. ``pending()`` (which paho asks SSL sockets) says buffered bytes are there, so
    paho reads them without waiting; :meth:`LeanReadClient.loop_read` reads every whole packet held.
    """

    __slots__ = ("_sock", "_buf", "_pos")

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0

    def recv(self, size: int) -> bytes:
        if self._pos >= len(self._buf):
            data: bytes = self._sock.recv(_READ_SIZE)  # BlockingIOError, SSL errors: as paho expects
            if len(data) <= size:
                return data
            self._buf, self._pos = data, 0
        start = self._pos
        self._pos = min(start + size, len(self._buf))
        return self._buf[start:self._pos]

    def pending(self) -> int:
        inner = self._sock.pending() if hasattr(self._sock, "pending") else 0
        return len(self._buf) - self._pos + inner

    def buffered(self) -> int:
        """Bytes read from the socket that paho has not taken yet."""
        return len(self._buf) - self._pos

    def fill(self) -> bool | None:
        """Read what the socket holds now, after what is buffered. True: read some; False: nothing
        there now; None: the connection ended or failed (paho's own ``recv`` will meet that too)."""
        try:
            data: bytes = self._sock.recv(_READ_SIZE)
        except (BlockingIOError, ssl.SSLWantReadError):
            return False
        except OSError:
            return None
        if not data:
            return None
        rest = self._buf[self._pos:]
        self._buf, self._pos = (rest + data if rest else data), 0
        return True

    def take_publish(self) -> tuple[int, int, bytes, bytes | bytearray] | None:
        """A whole QoS 1 PUBLISH without properties at the front of the buffer, taken out of it:
        (fixed header, packet id, topic, payload). None (nothing taken): anything else, or not whole yet.
        """
        buf, pos = self._buf, self._pos
        size = len(buf)
        if pos >= size or buf[pos] & 0xF6 != 0x32:  # PUBLISH (0x30), QoS 1 (0x02); DUP and RETAIN any
            return None
        length, shift, i = 0, 0, pos + 1
        while True:  # the remaining length: 1 to 4 bytes, 7 bits each, least significant first
            if i >= size or shift > 21:
                return None  # not all here yet, or malformed: paho reads (and refuses) it
            byte = buf[i]
            i += 1
            length |= (byte & 127) << shift
            shift += 7
            if byte < 128:
                break
        stop = i + length
        body = _plain_body(buf, i, stop) if stop <= size else None
        if body is None:
            return None  # not whole yet, an empty topic (an alias) or properties: paho's path
        self._pos = stop
        if stop == size:
            self._buf, self._pos = b"", 0
        return (buf[pos], *body)

    def __getattr__(self, name: str) -> Any:  # fileno, send, setblocking, close, ...
        return getattr(self._sock, name)


class LeanReadClient(mqtt.Client):
    """``paho.mqtt.client.Client`` with a fast path for QoS 1 PUBLISH packets without properties."""

    def _create_socket(self) -> Any:
        sock = super()._create_socket()
        return _ReadBuffer(sock) if _SUPPORTED and self._transport != "websockets" else sock

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """Every packet the socket holds now (at most :data:`_MAX_PACKETS` per call).

        A whole plain QoS 1 PUBLISH at the buffer's front is parsed here and handed on as
        :meth:`_handle_publish` would; anything else (and a packet paho has begun) is read
        by paho's own ``loop_read``, from the buffer and then the socket.
        """
        sock = self._sock
        if not isinstance(sock, _ReadBuffer) or self._protocol != mqtt.MQTTv5:
            return super().loop_read(max_packets)
        buffer: _ReadBuffer = sock
        rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        taken = 0
        filled = False
        for _ in range(_MAX_PACKETS):
            if self._sock is not buffer:
                break
            if self._in_packet["command"] == 0:
                publish = buffer.take_publish()
                if publish is None and not filled:  # the buffer is empty or ends in a cut packet
                    filled = True
                    got = buffer.fill()
                    if got is None:  # ended or failed: paho's recv finds out and says so
                        rc = super().loop_read(1)
                        break
                    publish = buffer.take_publish() if got else None
                if publish is not None:
                    taken += 1
                    rc = self._deliver(*publish)
                    if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                        break
                    continue
            if filled and not buffer.buffered():
                break  # all read: select says when more comes
            rc = super().loop_read(1)  # one packet by paho (reading the buffer, then the socket)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or not buffer.buffered():
                break
        if taken:
            with self._msgtime_mutex:  # what paho's keepalive reads, as its _packet_read sets it
                self._last_bytes_received = time.monotonic()
        return rc

    def _handle_publish(self) -> MQTTErrorCode:
        if not _SUPPORTED:
            return super()._handle_publish()
        header: int = self._in_packet["command"]
        packet: bytes | bytearray = self._in_packet["packet"]
        if header & 0x06 != _QOS1 or self._protocol != mqtt.MQTTv5:
            return super()._handle_publish()
        body = _plain_body(packet, 0, len(packet))
        if body is None:
            return super()._handle_publish()
        return self._deliver(header, *body)

    def _deliver(self, header: int, mid: int, topic: bytes, payload: bytes | bytearray) -> MQTTErrorCode:
        """A QoS 1 message to ``on_message`` (or the per-topic callbacks), then its PUBACK unless manual."""
        message = mqtt.MQTTMessage(mid, topic)
        message.qos = 1
        message.dup = bool(header & 0x08)
        message.retain = bool(header & 0x01)
        message.payload = payload
        message.timestamp = time.monotonic()
        on_message = self._on_message
        if on_message is None or self._on_message_filtered._root._children:
            self._handle_on_message(message)  # per-topic callbacks: paho matches the topic
        else:  # what _handle_on_message does when no per-topic callback exists, without matching
            with self._in_callback_mutex:
                try:
                    on_message(self, self._userdata, message)
                except Exception as err:
                    self._easy_log(MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
                    if not self.suppress_exceptions:
                        raise
        if self._manual_ack:
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        return self._send_puback(mid)


def lean_read_supported(client: Any) -> bool:
    """Whether ``client`` has the paho internals :class:`LeanReadClient` reads."""
    return all(hasattr(client, name) for name in (
        "_in_packet", "_protocol", "_manual_ack", "_handle_on_message", "_send_puback", "_on_message",
        "_in_callback_mutex", "_userdata", "_easy_log", "suppress_exceptions", "_msgtime_mutex",
        "_last_bytes_received")) \
        and hasattr(getattr(getattr(client, "_on_message_filtered", None), "_root", None), "_children")


#: Checked once: every paho internal the fast path reads (``_in_packet`` and the rest are set
#: per instance, so they are looked up on a throwaway client).
_SUPPORTED: Final = lean_read_supported(mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)) \
    and hasattr(mqtt.Client, "_handle_publish")

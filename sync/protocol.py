"""The DeskPulse wire protocol (v1): topics, schemas and a strict JSON codec.

Both ends import this module, so the device and central validate against the
same JSON Schemas (kept in ``sync/schema/``) and agree on every topic name.

Decoding is deliberately stricter than :func:`json.loads`: payloads must be
UTF-8, at most a size limit, free of duplicate keys and of ``NaN``/``Infinity``
or numbers that overflow a float, and nested at most :data:`MAX_DEPTH` levels.
Validation is stricter than plain jsonschema too: an ``integer`` in a schema
accepts only a JSON integer literal (``3.0`` and ``true`` are not ratings), an
``enum`` or ``const`` matches only a value of the same JSON type (``5.0`` is not
the scale ``5``), and a ``pattern``'s ``$`` is the end of the string (Python's
``$`` alone would also accept a trailing newline).
"""

from __future__ import annotations

import json
import math
import os
import re
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache, lru_cache
from importlib import resources
from itertools import accumulate
from typing import Any, Final, Literal

import jsonschema
import msgspec
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from sync import messages, slugs
from sync.errors import ProtocolError

SCHEMA_VERSION: Final = 1
TOPIC_ROOT: Final = "deskpulse/v1"
CENTRAL_STATUS_TOPIC: Final = f"{TOPIC_ROOT}/_central/status"

#: Largest payload accepted per kind, in bytes. A feedback event is < 1 KiB.
MAX_PAYLOAD: Final[dict[str, int]] = {
    "feedback": 8 * 1024,
    "status": 16 * 1024,
    "config": 64 * 1024,
    "receipt": 256 * 1024,
    "alert": 8 * 1024,
    "central-status": 4 * 1024,
}

#: Deepest nesting of arrays and objects a payload may have (the schemas need 4).
#: Refused before parsing, so neither the JSON parser nor jsonschema (whose
#: messages repr the value recursively) ever meets Python's recursion limit.
MAX_DEPTH: Final = 32

#: A site or device slug (defined in sync.slugs, which the installer's helpers import on a bare python3).
SLUG_PATTERN: Final = slugs.SLUG_PATTERN
SLUG_RE: Final = slugs.SLUG_RE

Kind = Literal["feedback", "status", "config", "receipt", "alert", "central-status"]
KINDS: Final[tuple[Kind, ...]] = ("feedback", "status", "config", "receipt", "alert", "central-status")


# --------------------------------------------------------------------------- topics


def check_slug(value: str, what: str = "slug") -> str:
    """Return ``value`` if it is a valid site or device slug, else raise ProtocolError."""
    if not isinstance(value, str) or not SLUG_RE.fullmatch(value):
        raise ProtocolError(f"{what} {value!r} is not a slug ([a-z0-9-], 1 to 64 characters)")
    return value


def feedback_topic(site: str, device: str) -> str:
    """Topic a device publishes its answers to."""
    return f"{TOPIC_ROOT}/{check_slug(site, 'site')}/{check_slug(device, 'device')}/feedback"


def status_topic(site: str, device: str) -> str:
    """Retained device status topic (with the last will)."""
    return f"{TOPIC_ROOT}/{check_slug(site, 'site')}/{check_slug(device, 'device')}/status"


def receipt_topic(site: str, device: str) -> str:
    """Topic central publishes a device's receipts to."""
    return f"{TOPIC_ROOT}/{check_slug(site, 'site')}/{check_slug(device, 'device')}/receipt"


def site_config_topic(site: str) -> str:
    """Retained survey configuration for a whole site."""
    return f"{TOPIC_ROOT}/{check_slug(site, 'site')}/config"


def device_config_topic(site: str, device: str) -> str:
    """Retained survey configuration for one device (overrides the site's)."""
    return f"{TOPIC_ROOT}/{check_slug(site, 'site')}/{check_slug(device, 'device')}/config"


def alerts_topic(site: str) -> str:
    """Topic central publishes a site's alerts to."""
    return f"{TOPIC_ROOT}/{check_slug(site, 'site')}/alerts"


#: The health alarm a kiosk raises while staff test mode is on (its answers are flagged ``test``).
TEST_MODE_ALARM: Final = "test-mode"


#: Subscription filters central uses. Feedback goes through a shared
#: subscription so several collectors split the load; retained topics must not
#: (shared subscriptions get no retained messages on most brokers).
FEEDBACK_FILTER: Final = f"{TOPIC_ROOT}/+/+/feedback"
STATUS_FILTER: Final = f"{TOPIC_ROOT}/+/+/status"


def shared(filter_: str, group: str = "deskpulse-central") -> str:
    """Wrap a topic filter in an MQTT 5 shared subscription for ``group``."""
    return f"$share/{group}/{filter_}"


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed DeskPulse topic."""

    kind: str
    site: str | None = None
    device: str | None = None


@lru_cache(maxsize=8192)
def parse_topic(topic: str) -> Topic:
    """Split a DeskPulse topic into its kind, site and device.

    Remembers the last 8,192 valid topics (a collector sees the same few per
    device again and again); a refused topic raises every time.

    Raises:
        ProtocolError: the topic is not one of the protocol's.
    """
    parts = topic.split("/")
    if len(parts) < 3 or "/".join(parts[:2]) != TOPIC_ROOT:
        raise ProtocolError(f"topic {topic!r} is not under {TOPIC_ROOT}/")
    rest = parts[2:]
    if rest == ["_central", "status"]:
        return Topic("central-status")
    if len(rest) == 2 and rest[1] in ("config", "alerts"):
        kind = "config" if rest[1] == "config" else "alert"
        return Topic(kind, check_slug(rest[0], "site"))
    if len(rest) == 3 and rest[2] in ("feedback", "status", "receipt", "config"):
        return Topic(rest[2], check_slug(rest[0], "site"), check_slug(rest[1], "device"))
    raise ProtocolError(f"topic {topic!r} is not a DeskPulse v1 topic")


# --------------------------------------------------------------------------- schemas


def _schema_text(kind: str) -> str:
    return (resources.files("sync") / "schema" / f"{kind}.v1.json").read_text("utf-8")


@cache
def schema(kind: Kind) -> dict[str, Any]:
    """The JSON Schema (as a dict) of one payload kind."""
    if kind not in KINDS:
        raise ValueError(f"unknown payload kind {kind!r}")
    result: dict[str, Any] = json.loads(_schema_text(kind))
    return result


def _is_strict_integer(checker: object, instance: object) -> bool:
    # JSON Schema counts 3.0 as an integer; our decoder turns 3.0 into a float,
    # and a rating of 3.0 is a sender bug we want to see, not silently accept.
    return isinstance(instance, int) and not isinstance(instance, bool)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


def _strict_equal(one: Any, two: Any) -> bool:
    """JSON equality that also compares types: ``5.0`` is not ``5``, ``true`` is not ``1``."""
    kind = _json_type(one)
    if kind != _json_type(two):
        return False
    if kind == "array":
        return len(one) == len(two) and all(map(_strict_equal, one, two))
    if kind == "object":
        return bool(one.keys() == two.keys()) and all(_strict_equal(v, two[k]) for k, v in one.items())
    return bool(one == two)


_NOTHING: Final = object()


def _same_number(one: Any, two: Any) -> bool:
    """Equal numbers of different types (``5.0`` and ``5``): plain jsonschema would accept them."""
    numbers = ("integer", "number")
    return _json_type(one) in numbers and _json_type(two) in numbers and bool(one == two)


def _strict_enum(validator: Any, enums: list[Any], instance: Any, schema: Any) -> Iterator[Any]:
    if not any(_strict_equal(each, instance) for each in enums):
        alike = next((each for each in enums if _same_number(each, instance)), _NOTHING)
        hint = "" if alike is _NOTHING else f" ({_json_type(instance)}, not {_json_type(alike)})"
        yield jsonschema.ValidationError(f"{instance!r} is not one of {enums!r}{hint}")


def _strict_const(validator: Any, const: Any, instance: Any, schema: Any) -> Iterator[Any]:
    if not _strict_equal(instance, const):
        hint = f" ({_json_type(instance)}, not {_json_type(const)})" if _same_number(instance, const) else ""
        yield jsonschema.ValidationError(f"{const!r} was expected, not {instance!r}{hint}")


def _full_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[Any]:
    # JSON Schema's "$" is the end of the string; Python's also matches before a final "\n".
    if validator.is_type(instance, "string") and not messages.compile_pattern(pattern).search(instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


_STRICT_TYPES = Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_strict_integer)
_StrictValidator = jsonschema.validators.extend(
    Draft202012Validator,
    validators={"enum": _strict_enum, "const": _strict_const, "pattern": _full_pattern},
    type_checker=_STRICT_TYPES,
)


@cache
def _registry() -> Registry:
    registry: Registry = Registry()
    for kind in KINDS:
        doc = schema(kind)
        registry = registry.with_resource(doc["$id"], Resource.from_contents(doc))
        # $refs between files use the bare file name relative to deskpulse/v1/.
    return registry


@cache
def validator(kind: Kind) -> Any:
    """A strict validator for one payload kind (cached)."""
    doc = schema(kind)
    return _StrictValidator(doc, registry=_registry())


def validate(kind: Kind, payload: Any) -> None:
    """Validate a decoded payload against its schema.

    The kinds defined as msgspec Structs (:mod:`sync.messages`: feedback,
    receipt) are checked by msgspec in C; only when it refuses does jsonschema
    look, to say where and why in the same words as for every other kind.

    Raises:
        ProtocolError: naming the first offending field and why.
    """
    struct_type = messages.TYPES.get(kind)
    if struct_type is None:
        _explain_invalid(kind, payload)
    else:
        try:
            msgspec.convert(payload, struct_type, strict=True)
        except (msgspec.ValidationError, UnicodeError) as exc:  # a lone surrogate in a key: UnicodeEncodeError
            _explain_invalid(kind, payload)
            raise ProtocolError(f"{kind} payload invalid: {exc}") from None  # jsonschema saw nothing: be strict
    _check_ts(kind, payload)


def _explain_invalid(kind: Kind, payload: Any) -> None:
    """jsonschema's verdict on ``payload``: raise ProtocolError with the best explanation, or return."""
    if _deeper_than(payload, MAX_DEPTH):  # jsonschema would recurse (and repr) through all of it
        raise ProtocolError(f"{kind} payload is nested too deeply (more than {MAX_DEPTH} levels)")
    error = jsonschema.exceptions.best_match(validator(kind).iter_errors(payload))
    if error is not None:
        raise ProtocolError(f"{kind} payload invalid at {_explain(error)}")


def _check_ts(kind: Kind, payload: Any) -> None:
    # The schema's pattern checks the shape of a timestamp, not that the day exists.
    if isinstance(payload, dict) and isinstance(payload.get("ts"), str):
        try:
            parse_timestamp(payload["ts"])
        except ValueError:
            raise ProtocolError(
                f"{kind} payload invalid at ts: {payload['ts']!r} is not a real date and time"
            ) from None


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _short_middle(text: str, limit: int) -> str:
    """Cut ``text`` in the middle: its start says what, its end usually says why."""
    if len(text) <= limit:
        return text
    head = (limit - 1) * 2 // 3
    return text[:head] + "…" + text[len(text) - (limit - 1 - head):]


#: Longest repr of an offending value kept in a reason, and longest reason part.
_VALUE_REPR = 60
_WHERE_LIMIT = 60
_MESSAGE_LIMIT = 200


def _explain(error: jsonschema.ValidationError) -> str:
    """``<where>: <message>`` for an error, at most about 270 characters.

    jsonschema's messages start with the repr of the offending value, which may
    be the whole payload; cutting the message's end would cut the explanation
    ("is not of type 'object'"). The value's repr is shortened instead.
    """
    where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
    message = error.message
    shown = repr(error.instance)
    if len(shown) > _VALUE_REPR and shown in message:
        message = message.replace(shown, _short(shown, _VALUE_REPR))
    return f"{_short_middle(where, _WHERE_LIMIT)}: {_short_middle(message, _MESSAGE_LIMIT)}"


# --------------------------------------------------------------------------- codec


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)  # in C; a key seen twice makes the dict shorter than the pairs
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ProtocolError(f"duplicate key {key!r}")
            seen.add(key)
    return result


def _reject_constant(name: str) -> Any:
    raise ProtocolError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ProtocolError(f"number {_short(text, 40)} is out of range")
    return value


#: A JSON string, escapes included; its closing quote is optional so that the
#: pattern never fails (a failed match would be retried at every later quote).
#: Once strings are removed, brackets are structure.
_STRINGS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.S)
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")
_DEPTH_STEP: Final = {"[": 1, "{": 1, "]": -1, "}": -1}


def _nested_deeper_than(text: str, limit: int) -> bool:
    """Whether the JSON ``text`` opens more than ``limit`` arrays/objects at once.

    Brackets inside strings do not count. No recursion and no Python loop per
    character: strings and everything but brackets are removed by regular
    expressions, then the depth is a running sum.
    """
    if text.count("[") + text.count("{") <= limit:  # every feedback event: nothing more to do
        return False
    brackets = _NOT_BRACKETS.sub("", _STRINGS.sub("", text))
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0) > limit


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether a decoded value nests arrays/objects more than ``limit`` deep (iteratively)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth == limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def loads(raw: bytes | bytearray, *, limit: int) -> Any:
    """Decode one JSON payload strictly.

    Args:
        raw: the payload bytes as received.
        limit: largest accepted size in bytes.

    Raises:
        ProtocolError: too large, not UTF-8, not JSON, duplicate keys,
            NaN/Infinity, overflowing numbers or nested more than
            :data:`MAX_DEPTH` levels.
    """
    if len(raw) > limit:
        raise ProtocolError(f"payload of {len(raw)} bytes exceeds the limit of {limit} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"payload is not UTF-8 (byte {exc.start})") from None
    if _nested_deeper_than(text, MAX_DEPTH):
        raise ProtocolError(f"payload is nested too deeply (more than {MAX_DEPTH} levels)")
    try:
        return json.loads(
            text,
            object_pairs_hook=_reject_duplicates,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
        )
    except ProtocolError:
        raise
    except RecursionError:
        raise ProtocolError("payload is nested too deeply") from None
    except ValueError as exc:  # json.JSONDecodeError
        raise ProtocolError(f"payload is not JSON: {exc}") from None


def decode(kind: Kind, raw: bytes | bytearray) -> Any:
    """Strictly decode and validate a payload of ``kind``.

    Feedback events and receipts are decoded straight into their msgspec
    Structs (:mod:`sync.messages`) and handed back as plain dicts and lists.
    msgspec keeps the last of two equal keys, so a payload longer than the
    compact JSON of what was decoded (which a duplicate key makes it) goes the
    slow way too: :func:`loads` then :func:`validate`, which refuse and explain
    whatever msgspec refused, in the same words as for the other kinds.
    """
    decoder = messages.DECODERS.get(kind)
    if decoder is not None and len(raw) <= MAX_PAYLOAD[kind]:
        try:
            value = decoder.decode(raw)
        except msgspec.MsgspecError:
            pass
        else:
            if messages.canonical_length(value) == len(raw):  # no room for a duplicate key
                payload = msgspec.to_builtins(value)
                _check_ts(kind, payload)
                return payload
    payload = loads(raw, limit=MAX_PAYLOAD[kind])
    validate(kind, payload)
    return payload


def encode(kind: Kind, payload: Any) -> bytes:
    """Validate and encode a payload compactly (UTF-8, no NaN)."""
    validate(kind, payload)
    raw = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    if len(raw) > MAX_PAYLOAD[kind]:
        raise ProtocolError(f"{kind} payload of {len(raw)} bytes exceeds {MAX_PAYLOAD[kind]}")
    return raw


def decode_feedback(topic: str, raw: bytes | bytearray) -> dict[str, Any]:
    """Decode a feedback event and check that its body matches its topic.

    ACLs guard topics, not bodies: a device allowed to publish under its own
    topic must not be able to speak for another desk.
    """
    where = parse_topic(topic)
    if where.kind != "feedback":
        raise ProtocolError(f"topic {topic!r} is not a feedback topic")
    event: dict[str, Any] = decode("feedback", raw)
    if event["site"] != where.site or event["device"] != where.device:
        raise ProtocolError(
            f"body names {event['site']}/{event['device']} but the topic is {where.site}/{where.device}"
        )
    return event


# --------------------------------------------------------------------------- helpers


def uuid7(unix_ms: int | None = None) -> str:
    """A UUIDv7 string (RFC 9562): 48-bit Unix milliseconds, then randomness.

    Ids sort by creation time, which keeps the central index append-mostly.
    """
    ms = time.time_ns() // 1_000_000 if unix_ms is None else unix_ms
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


def utc_timestamp(when: datetime | None = None) -> str:
    """ISO 8601 UTC with milliseconds and a ``Z``, as every payload's ``ts``."""
    when = datetime.now(UTC) if when is None else when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


@lru_cache(maxsize=8192)
def parse_timestamp(text: str) -> datetime:
    """Parse a protocol timestamp (``...Z``) into an aware UTC datetime.

    Remembered for the last few thousand texts: central parses each event's ``ts`` three times
    on its way in (the decoder's check, the collector's, the row's).
    """
    return datetime.fromisoformat(text.replace("Z", "+00:00"))

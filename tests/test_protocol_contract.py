"""The protocol contract both ends share: schemas, documented examples, strict decoding."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from sync import protocol
from sync.errors import ProtocolError

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
EXAMPLES = re.findall(r"```json ([a-z-]+)\n(.*?)```", DOC.read_text(), flags=re.S)


def valid_event(**changes: object) -> dict:
    event = json.loads(dict(EXAMPLES)["feedback"])
    event.update(changes)
    return event


def test_every_schema_is_valid_draft_2020_12() -> None:
    for kind in protocol.KINDS:
        Draft202012Validator.check_schema(protocol.schema(kind))


def test_docs_give_an_example_of_every_payload() -> None:
    assert {kind for kind, _ in EXAMPLES} == set(protocol.KINDS)


@pytest.mark.parametrize(("kind", "text"), EXAMPLES, ids=[k for k, _ in EXAMPLES])
def test_documented_examples_validate(kind: str, text: str) -> None:
    protocol.decode(kind, text.encode())  # type: ignore[arg-type]


def test_the_feedback_example_decodes_on_its_topic() -> None:
    raw = json.dumps(valid_event()).encode()
    event = protocol.decode_feedback("deskpulse/v1/airport-t1/baggage-1/feedback", raw)
    assert event["rating"] == 2


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b'{"schema":1,"schema":1}', "duplicate key"),
        (b"NaN", "NaN"),
        (b"[1e400]", "out of range"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[" * 3000 + b"]" * 3000, "nested"),
        (b"{", "not JSON"),
        (b" " * 9000, "exceeds the limit"),
    ],
)
def test_strict_decoding_refuses_with_a_reason(raw: bytes, why: str) -> None:
    with pytest.raises(ProtocolError, match=why):
        protocol.decode("feedback", raw)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("rating", True),
        ("rating", 3.0),
        ("rating", 0),
        ("rating", "4"),
        ("scale", 7),
        ("seq", 0),
        ("site", "Airport T1"),
        ("id", "not-a-uuid"),
        ("id", "0f1e2d3c-4b5a-4978-8796-a5b4c3d2e1f0"),  # a v4, not a v7
        ("ts", "2026-11-23 09:41:07"),
        ("source", "voice"),
        ("flags", ["vip"]),
        ("schema", 2),
    ],
)
def test_wrong_fields_are_refused(field: str, value: object) -> None:
    with pytest.raises(ProtocolError, match=field if field != "schema" else "schema"):
        protocol.validate("feedback", valid_event(**{field: value}))


def test_rating_above_its_scale_is_refused() -> None:
    with pytest.raises(ProtocolError, match="rating"):
        protocol.validate("feedback", valid_event(rating=5, scale=4))
    protocol.validate("feedback", valid_event(rating=5, scale=5))


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ProtocolError):
        protocol.validate("feedback", valid_event(extra=1))


def test_body_must_match_topic() -> None:
    raw = json.dumps(valid_event()).encode()
    with pytest.raises(ProtocolError, match="topic"):
        protocol.decode_feedback("deskpulse/v1/airport-t1/other-desk/feedback", raw)


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        (protocol.feedback_topic("s", "d"), protocol.Topic("feedback", "s", "d")),
        (protocol.status_topic("s", "d"), protocol.Topic("status", "s", "d")),
        (protocol.receipt_topic("s", "d"), protocol.Topic("receipt", "s", "d")),
        (protocol.device_config_topic("s", "d"), protocol.Topic("config", "s", "d")),
        (protocol.site_config_topic("s"), protocol.Topic("config", "s")),
        (protocol.alerts_topic("s"), protocol.Topic("alert", "s")),
        (protocol.CENTRAL_STATUS_TOPIC, protocol.Topic("central-status")),
    ],
)
def test_topics_round_trip(topic: str, expected: protocol.Topic) -> None:
    assert protocol.parse_topic(topic) == expected


@pytest.mark.parametrize("topic", ["deskpulse/v2/s/d/feedback", "deskpulse/v1/S/d/feedback",
                                   "deskpulse/v1/s/d/e/feedback", "deskpulse/v1/s/d/other"])
def test_foreign_topics_are_refused(topic: str) -> None:
    with pytest.raises(ProtocolError):
        protocol.parse_topic(topic)


def test_uuid7_is_time_ordered_and_valid() -> None:
    ids = [protocol.uuid7(unix_ms=1_700_000_000_000 + i) for i in range(50)]
    assert ids == sorted(ids)
    for id_ in ids:
        protocol.validate("feedback", valid_event(id=id_))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600) | st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
).map(lambda v: json.dumps(v).encode()))
def test_decoder_only_ever_raises_protocol_error(raw: bytes) -> None:
    try:
        protocol.decode_feedback("deskpulse/v1/s/d/feedback", raw)
    except ProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(
    rating=st.integers(1, 5), scale=st.sampled_from([3, 4, 5]),
    reasons=st.lists(st.from_regex(r"[a-z0-9_-]{1,32}", fullmatch=True), max_size=8, unique=True),
    source=st.sampled_from(["touch", "button"]),
    flags=st.lists(st.sampled_from(["rapid_repeat", "test"]), unique=True),
)
def test_encode_decode_round_trip(rating: int, scale: int, reasons: list[str], source: str,
                                  flags: list[str]) -> None:
    rating = min(rating, scale)
    event = valid_event(rating=rating, scale=scale, reasons=reasons, source=source, flags=flags)
    raw = protocol.encode("feedback", event)
    assert protocol.decode_feedback("deskpulse/v1/airport-t1/baggage-1/feedback", raw) == event


@pytest.mark.parametrize("ts", ["2026-02-30T09:41:07.000Z", "2026-13-01T00:00:00Z", "2026-01-01T24:00:00Z"])
def test_a_timestamp_of_the_right_shape_but_no_such_time_is_refused(ts: str) -> None:
    from tests.support.events import feedback_event, raw

    event = feedback_event(ts=ts, check=False)
    with pytest.raises(ProtocolError, match="ts"):
        protocol.decode_feedback(protocol.feedback_topic(event["site"], event["device"]), raw(event))


# --- the fast path may only accept what the schema accepts -------------------------------

_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10**16) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=70) | st.sampled_from(["touch", "button", "test", "rapid_repeat", "en", "de-CH",
                                              "a\n", "stored", "rejected", "duplicate"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=6,
)


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_the_fast_feedback_check_never_accepts_what_the_schema_refuses(data) -> None:
    from sync._fastcheck import feedback_ok
    from tests.support.events import feedback_event

    event = feedback_event()
    assert feedback_ok(event)  # the fast path is really taken for valid events
    for _ in range(data.draw(st.integers(1, 3))):
        key = data.draw(st.sampled_from([*event, "extra"]))
        if data.draw(st.booleans()) and key in event:
            del event[key]
        else:
            event[key] = data.draw(_JSON_VALUES)
    if feedback_ok(event):
        assert protocol.validator("feedback").is_valid(event), event


@settings(max_examples=300, deadline=None)
@given(items=st.lists(st.fixed_dictionaries(
    {"id": st.sampled_from([protocol.uuid7(), "not-an-id", protocol.uuid7() + "\n"]),
     "outcome": st.sampled_from(["stored", "duplicate", "rejected", "lost"])},
    optional={"reason": st.text(max_size=600) | st.integers(), "x": st.none()}), max_size=3))
def test_the_fast_receipt_check_never_accepts_what_the_schema_refuses(items) -> None:
    from sync._fastcheck import receipt_ok

    if receipt_ok(items):
        assert protocol.validator("receipt").is_valid(items), items


def test_valid_receipts_take_the_fast_path() -> None:
    from sync._fastcheck import receipt_ok

    assert receipt_ok([{"id": protocol.uuid7(), "outcome": "stored"},
                       {"id": protocol.uuid7(), "outcome": "rejected", "reason": "why"}])

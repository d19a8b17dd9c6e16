"""The protocol contract both ends share: schemas, documented examples, strict decoding."""

from __future__ import annotations

import json
import re
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from sync import messages, protocol
from sync.errors import ProtocolError

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
EXAMPLES = re.findall(r"```json ([a-z-]+)\n(.*?)```", DOC.read_text(), flags=re.S)


def accepts(kind: str, value: object) -> bool:
    """Whether msgspec (the Struct of ``kind`` in sync/messages.py) accepts a decoded value."""
    try:
        msgspec.convert(value, messages.TYPES[kind], strict=True)
    except msgspec.ValidationError:
        return False
    return True


def feedback_ok(event: object) -> bool:
    return accepts("feedback", event)


def receipt_ok(items: object) -> bool:
    return accepts("receipt", items)


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


@pytest.mark.parametrize("kind", ["feedback", "receipt"])
def test_a_lone_surrogate_in_a_key_or_a_value_is_refused_and_named(kind: str) -> None:
    """JSON may escape half a UTF-16 pair (\\ud800); msgspec's check of such a decoded dict raises
    UnicodeEncodeError, not its ValidationError: still a ProtocolError that names the key (the
    collector dead-letters with that reason; found by the fuzz tests)."""
    body: object = ({**valid_event(), "0\ud800": 1} if kind == "feedback"
                    else [{"id": protocol.uuid7(), "outcome": "stored", "0\ud800": 1}])
    with pytest.raises(ProtocolError, match=re.escape(repr("0\ud800"))):
        protocol.decode(kind, json.dumps(body).encode())
    with pytest.raises(ProtocolError, match="lang"):
        protocol.decode("feedback", json.dumps(valid_event(lang="e\udfffn")).encode())


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


# --- full-string patterns, strictly typed enums and consts, nesting, readable reasons ----

_UUID7 = "019ab3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b"


@pytest.mark.parametrize(("field", "value"), [
    ("id", _UUID7 + "\n"),
    ("epoch", "5b0c7a4e-2f1d-4c3b-9a8e-7d6c5b4a3f2e\n"),
    ("boot_id", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0\n"),
    ("lang", "de\n"),
    ("lang", "de-CH\n"),
    ("site", "airport-t1\n"),
    ("device", "baggage-1\n"),
    ("ts", "2026-11-23T09:41:07.123Z\n"),
    ("reasons", ["waiting-time\n"]),
])
def test_a_trailing_newline_does_not_pass_a_pattern(field: str, value: object) -> None:
    event = valid_event(**{field: value})
    assert not feedback_ok(event)
    assert not protocol.validator("feedback").is_valid(event)
    with pytest.raises(ProtocolError, match=f"invalid at {field}.*does not match"):
        protocol.decode("feedback", json.dumps(event).encode())


def test_a_trailing_newline_does_not_pass_a_pattern_anywhere() -> None:
    with pytest.raises(ProtocolError, match="texts|question"):
        protocol.validate("config", {"schema": 1, "version": 1, "scale": 5, "question": {"en\n": "Hi?"}})
    with pytest.raises(ProtocolError, match="key"):
        protocol.validate("alert", {**json.loads(dict(EXAMPLES)["alert"]), "key": "a\n"})
    with pytest.raises(ProtocolError, match="id"):
        protocol.validate("receipt", [{"id": _UUID7 + "\n", "outcome": "stored"}])


@pytest.mark.parametrize(("pattern", "text", "matches"), [
    ("^a$", "a", True), ("^a$", "a\n", False), ("^a$", "\na", False),
    ("a$", "ba", True),  # unanchored at the start, as JSON Schema's "pattern" is
    (r"^a\$$", "a$", True), (r"^a\$$", "a$\n", False),  # an escaped $ is a dollar sign
    ("^[$]$", "$", True), ("^[a$]+$", "a$a", True), ("^[a$]+$", "a\n", False),  # a $ in a class too
    ("^(a|b$)", "b\n", False), ("^(a|b$)", "a\n", True),
])
def test_schema_patterns_end_at_the_end_of_the_string(pattern: str, text: str, matches: bool) -> None:
    assert (messages.compile_pattern(pattern).search(text) is not None) is matches


@pytest.mark.parametrize(("field", "literal"), [
    ("scale", b"5.0"), ("scale", b"5e0"), ("scale", b"4.0"), ("scale", b"3.0"), ("scale", b"true"),
    ("schema", b"1.0"), ("schema", b"1e0"), ("schema", b"true"),
])
def test_an_enum_or_const_takes_only_its_own_type(field: str, literal: bytes) -> None:
    raw = json.dumps({**valid_event(rating=1), field: "__x__"}).encode().replace(b'"__x__"', literal)
    assert not feedback_ok(json.loads(raw))
    with pytest.raises(ProtocolError, match=field) as caught:
        protocol.decode("feedback", raw)
    if literal != b"true":
        assert "number, not integer" in str(caught.value)


def test_enums_and_consts_are_strict_in_every_payload() -> None:
    config = json.loads(dict(EXAMPLES)["config"])
    with pytest.raises(ProtocolError, match="scale"):
        protocol.validate("config", {**config, "scale": 4.0})
    with pytest.raises(ProtocolError, match="schema"):
        protocol.validate("config", {**config, "schema": 1.0})
    with pytest.raises(ProtocolError, match="schema"):
        protocol.validate("central-status", {"schema": True, "state": "online"})
    with pytest.raises(ProtocolError, match="schema"):
        protocol.validate("status", {"schema": 1.0, "site": "s", "device": "d", "state": "offline"})
    protocol.validate("config", {**config, "scale": 4, "schema": 1})


def _nested(depth: int, inner: object = "x") -> bytes:
    return b"[" * depth + json.dumps(inner).encode() + b"]" * depth


@pytest.mark.parametrize("depth", [33, 100, 976, 977, 2000, 3000])
def test_nesting_deeper_than_the_limit_is_refused_before_parsing(depth: int) -> None:
    assert protocol.MAX_DEPTH == 32
    raw = json.dumps(valid_event(reasons="__x__")).encode().replace(b'"__x__"', _nested(depth - 1))
    with pytest.raises(ProtocolError, match="nested too deeply \\(more than 32 levels\\)"):
        protocol.decode("feedback", raw)
    with pytest.raises(ProtocolError, match="nested too deeply"):
        protocol.loads(_nested(depth), limit=10**6)


def test_nesting_up_to_the_limit_is_parsed_and_brackets_in_strings_do_not_count() -> None:
    assert protocol.loads(_nested(31), limit=10**6) is not None  # 32 levels: the array of "x" is one
    assert protocol.loads(b"{" + b'"a":{' * 31 + b"}" * 32, limit=10**6) is not None
    assert protocol.loads(_nested(3, "[" * 500 + "{" * 500), limit=10**6) is not None
    assert protocol.loads(_nested(3, '\\"' + "[" * 500), limit=10**6) is not None  # escaped quotes
    with pytest.raises(ProtocolError, match="feedback payload invalid at reasons/0: "):
        protocol.decode("feedback", json.dumps(valid_event(reasons="__x__")).encode()
                        .replace(b'"__x__"', _nested(30)))  # 32 levels with the event: the schema says no


def test_validating_a_deep_object_raises_protocol_error_not_recursion_error() -> None:
    deep: list[object] = []
    for _ in range(5000):
        deep = [deep]
    for kind, payload in [("feedback", valid_event(reasons=deep)), ("status", deep),
                          ("config", {"schema": 1, "version": 1, "scale": 5, "question": {"en": deep}})]:
        with pytest.raises(ProtocolError, match="nested too deeply"):
            protocol.validate(kind, payload)  # type: ignore[arg-type]
        with pytest.raises(ProtocolError, match="nested too deeply"):
            protocol.encode(kind, payload)  # type: ignore[arg-type]


@pytest.mark.parametrize(("kind", "payload", "says"), [
    ("feedback", [valid_event()], ("invalid at (top level)", "is not of type 'object'")),
    ("feedback", valid_event(reasons=["x" * 5000]), ("invalid at reasons/0", "does not match")),
    ("feedback", valid_event(lang="e" * 3000), ("invalid at lang", "does not match")),
    ("feedback", valid_event(rating=[list(range(2000))]), ("invalid at rating", "is not of type 'integer'")),
    ("feedback", valid_event(reasons=["a"] * 3000), ("invalid at reasons", "is too long")),
    ("feedback", valid_event(**{"x" * 3000: 1}), ("Additional properties", "was unexpected")),
    ("feedback", valid_event(scale=7.0 + 10**300), ("invalid at scale", "is not one of")),
    ("status", {"schema": 1, "site": "s", "device": "d", "state": "online",
                "health": {"alarms": [{"code": "x", "message": "m" * 4000}]}},
     ("invalid at health/alarms/0/message", "is too long")),
    ("receipt", [{"id": _UUID7, "outcome": "stored"}] * 1001, ("invalid at (top level)", "is too long")),
])
def test_a_reason_says_what_is_wrong_however_long_the_value(kind: str, payload: object,
                                                             says: tuple[str, ...]) -> None:
    with pytest.raises(ProtocolError) as caught:
        protocol.validate(kind, payload)  # type: ignore[arg-type]
    reason = str(caught.value)
    assert len(reason) <= 300, reason
    for part in says:
        assert part in reason, reason


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


# --- msgspec (the Structs) accepts exactly what the generated schema accepts -------------

_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10**16) | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([1.0, 3.0, 4.0, 5.0, 1, 3, 4, 5, True])
    | st.text(max_size=70) | st.sampled_from(["touch", "button", "test", "rapid_repeat", "en", "de-CH",
                                              "a\n", "en\n", "de-CH\n", "touch\n", "stored", "rejected",
                                              "duplicate", "stored\n"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=6,
)


def _near(value: object, how: str) -> object:
    if how == "newline" and isinstance(value, str):
        return value + "\n"
    if how == "newline" and isinstance(value, list):
        return [*value, "waiting-time\n"]
    if how == "float" and type(value) is int:
        return float(value)
    if how == "bool" and type(value) is int and value in (0, 1):
        return bool(value)
    if how == "nest":
        return [value]
    return value


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_the_struct_accepts_a_feedback_event_exactly_when_the_schema_does(data) -> None:
    from tests.support.events import feedback_event

    event = feedback_event()
    assert feedback_ok(event)
    for _ in range(data.draw(st.integers(1, 3))):
        key = data.draw(st.sampled_from([*event, "extra"]))
        how = data.draw(st.sampled_from(["drop", "replace", "near"]))
        if how == "drop" and key in event:
            del event[key]
        elif how == "near" and key in event:  # almost the valid value: what plain jsonschema let through
            event[key] = _near(event[key], data.draw(st.sampled_from(["newline", "float", "bool", "nest"])))
        else:
            event[key] = data.draw(_JSON_VALUES)
    assert feedback_ok(event) is protocol.validator("feedback").is_valid(event), event


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(["id", "epoch", "boot_id", "site", "device", "ts", "lang"]),
       text=st.text(max_size=40) | st.sampled_from(["\n", "a\n", "en\n"]), newline=st.booleans())
def test_patterns_match_the_whole_string_in_both_checks(field: str, text: str, newline: bool) -> None:
    """A pattern field's value is accepted exactly when the schema's pattern matches all of it."""
    from tests.support.events import feedback_event

    event = feedback_event(site="airport-t1", device="baggage-1")
    value = (event[field] if newline else text) + ("\n" if newline else "")
    event[field] = value
    defs = protocol.schema("feedback")["$defs"]
    pattern = (protocol.schema("feedback")["properties"]["lang"]["pattern"] if field == "lang" else
               defs[{"id": "uuid7", "epoch": "uuid", "boot_id": "uuid", "site": "slug", "device": "slug",
                     "ts": "timestamp"}[field]]["pattern"])
    whole = re.fullmatch(pattern.removeprefix("^").removesuffix("$"), value) is not None
    assert protocol.validator("feedback").is_valid(event) is whole
    assert feedback_ok(event) is whole


@settings(max_examples=300, deadline=None)
@given(items=st.lists(st.fixed_dictionaries(
    {"id": st.sampled_from([protocol.uuid7(), "not-an-id", protocol.uuid7() + "\n"]),
     "outcome": st.sampled_from(["stored", "duplicate", "rejected", "lost"])},
    optional={"reason": st.text(max_size=600) | st.integers(), "x": st.none()}), max_size=3))
def test_the_struct_accepts_a_receipt_exactly_when_the_schema_does(items) -> None:
    assert receipt_ok(items) is protocol.validator("receipt").is_valid(items), items


def test_valid_receipts_are_accepted_by_the_struct() -> None:
    assert receipt_ok([{"id": protocol.uuid7(), "outcome": "stored"},
                       {"id": protocol.uuid7(), "outcome": "rejected", "reason": "why"}])


@pytest.mark.parametrize("kind", sorted(messages.TYPES))
def test_the_committed_schemas_are_the_ones_generated_from_the_structs(kind: str) -> None:
    """sync/schema/{feedback,receipt}.v1.json are made by `python -m sync.messages --write`, never by hand."""
    assert protocol.schema(kind) == json.loads(messages.generated_schema(kind))  # type: ignore[arg-type]
    assert messages.schema_path(kind).read_text("utf-8") == messages.generated_schema(kind)


def test_a_compact_valid_event_is_decoded_without_the_slow_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a kiosk sends is decoded by msgspec alone; a duplicate key (msgspec keeps the last) goes the slow way."""
    event = valid_event()
    raw = json.dumps(event, separators=(",", ":")).encode()

    def slow(*args: object, **kwargs: object) -> object:
        raise AssertionError("the slow path was taken")

    monkeypatch.setattr(protocol, "loads", slow)
    assert protocol.decode("feedback", raw) == event
    receipt = [{"id": protocol.uuid7(), "outcome": "rejected", "reason": "nope"}]
    assert protocol.decode("receipt", json.dumps(receipt, separators=(",", ":")).encode()) == receipt
    monkeypatch.undo()
    twice = raw[:-1] + b',"rating":1}'
    with pytest.raises(ProtocolError, match="duplicate key 'rating'"):
        protocol.decode("feedback", twice)
    spaced = json.dumps(event).encode()  # not compact: the slow way, same verdict
    assert protocol.decode("feedback", spaced) == event

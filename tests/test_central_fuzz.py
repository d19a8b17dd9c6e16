"""Fuzzing central's ingest through a real Mosquitto (issue 5, "Central ingest").

Every payload goes the whole way: a fake device (tests/support/mqtt_client.py)
publishes it (QoS 1) on a feedback topic, Mosquitto hands it to a real
:class:`central.ingest.Collector` through the shared subscription, and the
collector writes a real SQLite file or PostgreSQL database (``DESKPULSE_TEST_PG_URL``). For each bad payload:

* the collector does not crash: its thread is alive, it is connected, and it
  still acknowledges. The collector announces a Receive Maximum of 20, so the
  broker stops handing over messages once 20 are unacknowledged; every named
  case publishes its payload ``COPIES`` (21) times and then a valid event, so
  the valid event is stored only if every copy was acknowledged;
* each copy is dead-lettered once, on its topic, with a reason that names the
  problem, and its raw bytes are kept (cut to ``MAX_DEAD_LETTER_BYTES``, which
  the reason then says);
* a valid event published after it is stored (and receipted ``stored``);
* a refused body that names a readable UUIDv7 id gets a ``rejected`` receipt.

One broker, store and collector per backend serve the whole module (setting
up a migrated database per case would cost more than the cases); each case
publishes as a device of its own, so no case sees another's rows.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central.config import from_dict
from central.ingest import RECEIPT_MAX_REASON, Collector
from central.store import MAX_DEAD_LETTER_BYTES, Store, dead_letters
from sync import protocol
from tests.support.broker import Mosquitto
from tests.support.central_rows import get_event
from tests.support.events import feedback_event, raw
from tests.support.mqtt_client import FakeDevice
from tests.support.wait import wait_for

SITE = "fuzz-site"
#: More copies of each bad payload than the collector's Receive Maximum (20):
#: had it left them unacknowledged, the valid event after them would never arrive.
COPIES = 21
#: The longest wait for one case's messages to be settled.
TIMEOUT = 20.0


# --------------------------------------------------------------------------- the rig


@dataclass
class Rig:
    broker: Mosquitto
    store: Store
    collector: Collector

    def alive(self) -> None:
        thread = self.collector._thread
        assert thread is not None and thread.is_alive(), "the collector's thread has died"
        assert self.collector.stats.connected, f"the collector is not connected: {self.collector.stats.last_error}"

    def letters(self, topic: str) -> list[tuple[str, bytes]]:
        """(reason, raw) of every dead letter on ``topic``, oldest first."""
        stmt = (sa.select(dead_letters.c.reason, dead_letters.c.raw).where(dead_letters.c.topic == topic)
                .order_by(dead_letters.c.dead_id))
        with self.store.engine.connect() as conn:
            return [(r.reason, bytes(r.raw)) for r in conn.execute(stmt)]

    def letters_with_raw(self, kept: bytes) -> list[str]:
        """Reasons of every dead letter whose kept raw bytes are ``kept``."""
        stmt = sa.select(dead_letters.c.reason).where(dead_letters.c.raw == kept)
        with self.store.engine.connect() as conn:
            return list(conn.execute(stmt).scalars())


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def rig(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """One Mosquitto, one migrated store and one collector per backend, for the module."""
    workdir = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    if request.param == "sqlite":
        database = nullcontext(f"sqlite:///{workdir / 'central.sqlite3'}")
    else:
        base = os.environ.get("DESKPULSE_TEST_PG_URL")
        if not base:
            pytest.skip("DESKPULSE_TEST_PG_URL is not set (see README: PostgreSQL tests)")
        from tests.support.postgres import temporary_database

        database = temporary_database(base)
    with database as url:
        broker = Mosquitto(workdir / "mosquitto").start()
        store = Store(url)
        collector: Collector | None = None
        try:
            store.migrate()
            # batch_size 10: the Receive Maximum is its floor of 20 (see COPIES).
            config = from_dict({"broker": {"url": broker.url, "keepalive": 5, "client_id": f"fuzz-{request.param}"},
                                "ingest": {"batch_size": 10, "batch_ms": 5}})
            collector = Collector(config, store).start()
            assert collector.wait_subscribed(10), "the collector did not subscribe"
            yield Rig(broker, store, collector)
        finally:
            if collector is not None:
                collector.stop()
            store.close()
            broker.kill()


@pytest.fixture
def device(rig: Rig) -> Iterator[FakeDevice]:
    with FakeDevice(rig.broker, f"fuzz-{uuid.uuid4().hex[:10]}", site=SITE) as d:
        yield d


def store_valid_event(rig: Rig, device: FakeDevice) -> None:
    """Publish a valid event and wait for its ``stored`` receipt (the collector still works)."""
    good = feedback_event(SITE, device.device, seq=1)
    device.send(protocol.encode("feedback", good))
    wait_for(lambda: device.outcomes(good["id"]), timeout=TIMEOUT, what="the valid event's receipt")
    assert device.outcomes(good["id"]) == ["stored"]
    stored = get_event(rig.store, good["id"])
    assert stored is not None and all(stored[k] == v for k, v in good.items())


# --------------------------------------------------------------------------- named cases


def literal(event: dict[str, Any], field: str, text: bytes) -> bytes:
    """The event encoded compactly, with ``field``'s value replaced by the JSON text ``text``."""
    marker = f"__{uuid.uuid4().hex}__"
    return raw({**event, field: marker}).replace(f'"{marker}"'.encode(), text)


def with_(**fields: Any) -> Callable[[dict[str, Any]], bytes]:
    return lambda e: raw({**e, **fields})


def lit(field: str, text: bytes) -> Callable[[dict[str, Any]], bytes]:
    return lambda e: literal(e, field, text)


def without(*fields: str) -> Callable[[dict[str, Any]], bytes]:
    return lambda e: raw({k: v for k, v in e.items() if k not in fields})


def newline(field: str) -> Callable[[dict[str, Any]], bytes]:
    """The field's own value with a newline appended (Python's ``$`` matches before it)."""
    return lambda e: raw({**e, field: e[field] + "\n"})


def one_mib(e: dict[str, Any]) -> bytes:
    head = raw(e)[:-1] + b',"pad":"'
    return head + b"x" * (1024 * 1024 - len(head) - 2) + b'"}'


@dataclass(frozen=True)
class Case:
    build: Callable[[dict[str, Any]], bytes]
    expect: tuple[str, ...]  # each must occur in the reason (case-insensitive)
    receipt: bool = False  # the body names a readable UUIDv7 id: a 'rejected' receipt is due
    topic: Callable[[str], str] | None = None  # another topic than the device's own


def bad_topic(site: str) -> Callable[[str], str]:
    return lambda device: f"{protocol.TOPIC_ROOT}/{site}/{device}/feedback"


CASES = {
    # wrong types
    "wrong-type-rating-string": Case(with_(rating="4"), ("rating", "integer"), receipt=True),
    "wrong-type-seq-string": Case(with_(seq="1"), ("seq", "integer"), receipt=True),
    "wrong-type-clock-synced-int": Case(with_(clock_synced=1), ("clock_synced", "boolean"), receipt=True),
    "wrong-type-reasons-string": Case(with_(reasons="waiting-time"), ("reasons", "array"), receipt=True),
    "wrong-type-flags-null": Case(with_(flags=None), ("flags",), receipt=True),
    "wrong-type-lang-number": Case(with_(lang=7), ("lang", "string"), receipt=True),
    "wrong-type-top-level-array": Case(lambda e: b'[1,"a"]', ("top level", "object")),
    # a long offending value is shortened in the reason, which still says what is wrong with it
    "wrong-type-event-in-an-array": Case(lambda e: b"[" + raw(e) + b"]", ("top level", "is not of type 'object'")),
    "long-reason-key": Case(with_(reasons=["x" * 300]), ("reasons/0", "does not match"), receipt=True),
    "long-lang-string": Case(with_(lang="e" * 2000), ("lang", "does not match"), receipt=True),
    "wrong-type-top-level-string": Case(lambda e: b'"feedback"', ("top level", "object")),
    "wrong-type-top-level-null": Case(lambda e: b"null", ("top level", "object")),
    # numbers
    "bool-rating-true": Case(lit("rating", b"true"), ("rating", "integer"), receipt=True),
    "rating-3.0": Case(lit("rating", b"3.0"), ("rating", "integer"), receipt=True),
    "rating-3e0": Case(lit("rating", b"3e0"), ("rating", "integer"), receipt=True),
    "nan-mono-ms": Case(lit("mono_ms", b"NaN"), ("NaN",)),
    "infinity-seq": Case(lit("seq", b"-Infinity"), ("Infinity",)),
    "number-1e400": Case(lit("mono_ms", b"1e400"), ("1e400", "out of range")),
    "number-minus-1e400-in-extra-field": Case(lambda e: raw(e)[:-1] + b',"x":-1e400}', ("1e400", "out of range")),
    "huge-integer-rating": Case(with_(rating=10**30), ("rating", "maximum"), receipt=True),
    "huge-integer-seq-2-64": Case(with_(seq=2**64), ("seq", "maximum"), receipt=True),
    "negative-mono-ms": Case(with_(mono_ms=-1), ("mono_ms", "minimum"), receipt=True),
    "integer-5000-digits": Case(lit("survey", b"9" * 5000), ("digits",)),
    "rating-above-scale": Case(with_(rating=5, scale=3), ("rating", "maximum"), receipt=True),
    # JSON syntax and encoding
    "duplicate-key-rating": Case(lit("rating", b'4,"rating":5'), ("duplicate key", "rating")),
    "duplicate-key-id": Case(lambda e: raw(e)[:-1] + f',"id":"{protocol.uuid7()}"}}'.encode(), ("duplicate key", "id")),
    "bad-utf8-ff": Case(lit("lang", b'"\xff\xfe"'), ("not UTF-8",)),
    "bad-utf8-overlong": Case(lit("lang", b'"\xc0\xaf"'), ("not UTF-8",)),
    "bad-utf8-encoded-surrogate": Case(lit("lang", b'"\xed\xa0\x80"'), ("not UTF-8",)),
    "bad-utf8-truncated": Case(lambda e: raw(e)[:-1] + b',"x":"\xe2\x82"}', ("not UTF-8",)),
    "utf8-bom": Case(lambda e: b"\xef\xbb\xbf" + raw(e), ("BOM",)),
    "not-json": Case(lambda e: raw(e)[:-1], ("not JSON",)),
    "empty-payload": Case(lambda e: b"", ("not JSON",)),
    "payload-1mib": Case(one_mib, ("exceeds the limit", str(1024 * 1024), f"cut to {MAX_DEAD_LETTER_BYTES}")),
    "payload-8kib-plus-1": Case(lambda e: raw(e)[:-1] + b',"p":"' + b"x" * (8192 - len(raw(e)) - 6) + b'"}',
                                ("exceeds the limit", "8193")),
    "nesting-10000-arrays": Case(lambda e: b"[" * 10_000 + b"]" * 10_000, ("exceeds the limit",)),
    "nesting-4000-arrays-within-limit": Case(lambda e: b"[" * 4000 + b"]" * 4000, ("nested too deeply",)),
    "nesting-3000-in-reasons": Case(lit("reasons", b"[" * 3000 + b"]" * 3000), ("nested too deeply",)),
    # deep enough for jsonschema's messages to hit the recursion limit, not deep enough for the parser's
    "nesting-976-in-reasons": Case(lit("reasons", b"[" * 976 + b"]" * 976), ("nested too deeply", "32 levels")),
    "nesting-33-levels": Case(lit("reasons", b"[" * 32 + b"]" * 32), ("nested too deeply", "32 levels")),
    # body against topic
    "body-site-not-topic": Case(with_(site="other-site"), ("body names other-site/", "topic"), receipt=True),
    "body-device-not-topic": Case(with_(device="other-desk"), ("body names", "/other-desk", "topic"), receipt=True),
    # schema version
    "schema-version-2": Case(with_(schema=2), ("schema",), receipt=True),
    "schema-version-string": Case(with_(schema="1"), ("schema",), receipt=True),
    "schema-version-0": Case(with_(schema=0), ("schema",), receipt=True),
    # an enum or a const matches only a value of its type: 5.0 is not the scale 5
    "schema-version-1.0": Case(lit("schema", b"1.0"), ("schema", "1 was expected"), receipt=True),
    "scale-5.0": Case(lit("scale", b"5.0"), ("scale", "not one of"), receipt=True),
    "scale-5e0": Case(lit("scale", b"5e0"), ("scale", "not one of"), receipt=True),
    "scale-true": Case(lit("scale", b"true"), ("scale", "not one of"), receipt=True),
    # a pattern's $ is the end of the string (Python's $ also matches before a final newline)
    "trailing-newline-id": Case(newline("id"), ("id", "does not match")),  # no longer a UUIDv7: no receipt
    "trailing-newline-epoch": Case(newline("epoch"), ("epoch", "does not match"), receipt=True),
    "trailing-newline-boot-id": Case(newline("boot_id"), ("boot_id", "does not match"), receipt=True),
    "trailing-newline-lang": Case(newline("lang"), ("lang", "does not match"), receipt=True),
    "trailing-newline-reason": Case(with_(reasons=["waiting-time\n"]), ("reasons/0", "does not match"),
                                    receipt=True),
    "trailing-newline-ts": Case(newline("ts"), ("ts", "does not match"), receipt=True),
    # slugs
    "bad-slug-topic-uppercase": Case(with_(site="Fuzz-Site"), ("'Fuzz-Site' is not a slug",),
                                     topic=bad_topic("Fuzz-Site")),
    "bad-slug-topic-65-chars": Case(with_(site="s" * 65), ("not a slug",), topic=bad_topic("s" * 65)),
    "bad-slug-topic-underscore": Case(with_(site="fuzz_site"), ("'fuzz_site' is not a slug",),
                                      topic=bad_topic("fuzz_site")),
    "bad-slug-body-uppercase": Case(with_(site="FUZZ-SITE"), ("site",), receipt=True),
    # missing and extra fields
    "missing-rating": Case(without("rating"), ("'rating' is a required property",), receipt=True),
    "missing-id": Case(without("id"), ("'id' is a required property",)),
    "missing-ts-and-seq": Case(without("ts", "seq"), ("required property",), receipt=True),
    "empty-object": Case(lambda e: b"{}", ("required property",)),
    "extra-field-comment": Case(with_(comment="great!"), ("comment", "unexpected"), receipt=True),
    "extra-field-nested": Case(with_(meta={"a": [1, {"b": None}]}), ("meta", "unexpected"), receipt=True),
    # values the schema's shape allows but that are wrong
    "impossible-date": Case(with_(ts="2026-02-30T09:41:07.000Z"), ("ts", "not a real date"), receipt=True),
    "id-uuid4-not-uuid7": Case(with_(id=str(uuid.uuid4())), ("id",)),
}


@pytest.mark.parametrize("name", [pytest.param(name, id=name) for name in CASES])
def test_a_bad_payload_is_dead_lettered_with_its_reason_and_ingest_goes_on(rig: Rig, device: FakeDevice,
                                                                          name: str) -> None:
    case = CASES[name]
    rig.alive()
    event = feedback_event(SITE, device.device, seq=1)
    payload = case.build(event)
    topic = case.topic(device.device) if case.topic else device.topic
    rejected_before = rig.collector.stats.rejected
    for _ in range(COPIES):
        device.send(payload, topic)
    store_valid_event(rig, device)  # published after the copies: the collector acked them all
    wait_for(lambda: len(rig.letters(topic)) >= COPIES, timeout=TIMEOUT, what="every copy dead-lettered")

    letters = rig.letters(topic)
    assert len(letters) == COPIES
    kept = payload[:MAX_DEAD_LETTER_BYTES]
    for reason, kept_raw in letters:
        assert kept_raw == kept
        for part in case.expect:
            assert part.lower() in reason.lower(), f"reason {reason!r} does not say {part!r}"
        if len(payload) > MAX_DEAD_LETTER_BYTES:
            assert f"cut to {MAX_DEAD_LETTER_BYTES} of {len(payload)} bytes" in reason
    assert get_event(rig.store, event["id"]) is None
    assert rig.collector.stats.rejected - rejected_before == COPIES
    if case.receipt:
        wait_for(lambda: len(device.outcomes(event["id"])) >= COPIES, timeout=TIMEOUT, what="rejected receipts")
        receipts = device.receipts_for(event["id"])
        assert len(receipts) == COPIES
        assert {r["outcome"] for r in receipts} == {"rejected"}
        assert {r["reason"] for r in receipts} == {letters[0][0][:RECEIPT_MAX_REASON]}
    rig.alive()


@pytest.mark.parametrize("depth", [pytest.param(d, id=f"depth-{d}") for d in (100, 976, 990)])
def test_a_deeply_nested_status_is_dead_lettered_not_dropped(rig: Rig, device: FakeDevice, depth: int) -> None:
    """A status goes through its own handler: refused, it must be dead-lettered too, never acked and dropped
    (976 levels once raised RecursionError from jsonschema's messages, which that handler did not catch)."""
    rig.alive()
    topic = protocol.status_topic(SITE, device.device)
    status = {"schema": 1, "site": SITE, "device": device.device, "state": "online", "version": "__v__"}
    payload = raw(status).replace(b'"__v__"', b"[" * depth + b"]" * depth)
    device.send(payload, topic)
    wait_for(lambda: rig.letters(topic), timeout=TIMEOUT, what="the status dead-lettered")
    store_valid_event(rig, device)
    letters = rig.letters(topic)
    assert len(letters) == 1 and letters[0][1] == payload[:MAX_DEAD_LETTER_BYTES]
    assert "nested too deeply" in letters[0][0] and "32 levels" in letters[0][0], letters[0][0]
    rig.alive()


# --------------------------------------------------------------------------- hypothesis


_SCHEMA = protocol.schema("feedback")
_DEFS = {name: d["pattern"] for name, d in _SCHEMA["$defs"].items() if "pattern" in d}
#: Each string field's pattern, taken from the schema.
PATTERNS = {"id": _DEFS["uuid7"], "epoch": _DEFS["uuid"], "boot_id": _DEFS["uuid"], "site": _DEFS["slug"],
            "device": _DEFS["slug"], "ts": _DEFS["timestamp"], "lang": _SCHEMA["properties"]["lang"]["pattern"]}
INTEGERS = {"seq": (1, 2**53 - 1), "mono_ms": (0, 2**53 - 1), "survey": (0, 2**31 - 1)}
FIELDS = tuple(_SCHEMA["required"])
KIND = {**{f: "string" for f in (*PATTERNS, "source")}, **{f: "integer" for f in (*INTEGERS, "rating", "scale",
        "schema")}, "clock_synced": "boolean", "reasons": "array", "flags": "array"}
TYPE_OK: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: type(v) is str,
    "integer": lambda v: type(v) is int,
    "boolean": lambda v: type(v) is bool,
    "array": lambda v: type(v) is list,
}

#: Text with every code point, lone surrogates included (JSON can carry them as \\ud800).
any_text = st.text(st.characters(exclude_categories=()), max_size=24)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | any_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=8,
)


def ecma_match(pattern: str, text: str) -> bool:
    """The schema's pattern as JSON Schema means it: ``$`` is the end of the string."""
    return re.fullmatch(pattern, text) is not None


def other_slug(slug: str) -> Callable[[dict[str, Any]], str]:
    """A slug that differs from the event's own value of the field."""
    return lambda own: slug if slug != own else ("a" if own != "a" else "b")


@dataclass(frozen=True)
class Mutation:
    """One change to a valid event; ``expect`` None: the outcome is not known in advance."""

    describe: str
    apply: Callable[[dict[str, Any]], bytes]
    expect: str | None


@st.composite
def mutations(draw: st.DrawFn) -> Mutation:
    op = draw(st.sampled_from(["drop", "extra", "retype", "range", "pattern", "other-desk", "array",
                               "duplicate-key", "number-literal", "bytes"]))
    field = draw(st.sampled_from(FIELDS))
    if op == "drop":
        return Mutation(f"drop {field}", without(field), f"'{field}' is a required property")
    if op == "extra":
        key = draw(st.text(st.characters(exclude_categories=()), max_size=12).filter(lambda k: k not in FIELDS))
        value = draw(json_values)
        return Mutation(f"extra {key!r}", lambda e: raw({**e, key: value}), repr(key))
    if op == "retype":
        kind = KIND[field]
        value = draw(json_values.filter(lambda v: not TYPE_OK[kind](v)))
        return Mutation(f"{field} = {value!r}", with_(**{field: value}), field)
    if op == "range":
        field = draw(st.sampled_from([*INTEGERS, "rating", "scale", "schema"]))
        if field in INTEGERS:
            lo, hi = INTEGERS[field]
            value = draw(st.integers().filter(lambda n: not lo <= n <= hi))
        elif field == "scale":
            value = draw(st.integers().filter(lambda n: n not in (3, 4, 5)))
        elif field == "schema":
            value = draw(st.integers().filter(lambda n: n != 1))
        else:  # rating: 1 to the event's scale (5 in the base event)
            value = draw(st.integers().filter(lambda n: not 1 <= n <= 5))
        return Mutation(f"{field} = {value}", with_(**{field: value}), field)
    if op == "pattern":
        field = draw(st.sampled_from([*PATTERNS, "source"]))
        if field == "source":
            text = draw(any_text.filter(lambda t: t not in ("touch", "button")))
        else:
            pattern = PATTERNS[field]
            text = draw(any_text.filter(lambda t: not ecma_match(pattern, t)))
        return Mutation(f"{field} = {text!r}", with_(**{field: text}), field)
    if op == "other-desk":
        field = draw(st.sampled_from(["site", "device"]))
        slug = draw(st.from_regex(r"[a-z0-9-]{1,64}", fullmatch=True))
        pick = other_slug(slug)
        return Mutation(f"{field} = {slug!r}", lambda e: raw({**e, field: pick(e[field])}), "but the topic is")
    if op == "array":
        field = draw(st.sampled_from(["reasons", "flags"]))
        good = r"[a-z0-9_-]{1,32}" if field == "reasons" else r"rapid_repeat|test"
        items = draw(st.one_of(
            st.lists(any_text.filter(lambda t: not re.fullmatch(good, t)),
                     min_size=1, max_size=3),
            st.lists(st.from_regex(good, fullmatch=True), min_size=1, max_size=2).map(lambda xs: xs + xs[:1]),
            st.lists(st.from_regex(good, fullmatch=True), min_size=9, max_size=12, unique=True)
            if field == "reasons" else st.just(["test", "rapid_repeat", "test", "rapid_repeat", "test"]),
        ))
        return Mutation(f"{field} = {items!r}", with_(**{field: items}), field)
    if op == "duplicate-key":
        value = draw(json_values)
        text = json.dumps(value).encode()
        return Mutation(f"{field} twice", lambda e: raw(e)[:-1] + b',"' + field.encode() + b'":' + text + b"}",
                        f"duplicate key '{field}'")
    if op == "number-literal":
        field = draw(st.sampled_from([*INTEGERS, "rating", "scale", "schema"]))
        text, expect = draw(st.sampled_from([
            (b"NaN", "NaN"), (b"Infinity", "Infinity"), (b"-Infinity", "Infinity"),
            (b"1e400", "out of range"), (b"-2.5e309", "out of range"), (b"1.0", field), (b"true", field),
            (b"false", field), (b"3e0", field), (b"5.0", field), (b"4e0", field),
        ]))
        return Mutation(f"{field} = {text.decode()}", lit(field, text), expect)
    # bytes: flip, insert or delete one byte anywhere; may even leave a valid event
    where = draw(st.floats(0, 1, exclude_max=True))
    kind = draw(st.sampled_from(["replace", "insert", "delete"]))
    byte = bytes([draw(st.integers(0, 255))])

    def mangle(e: dict[str, Any]) -> bytes:
        data = raw(e)
        at = int(where * len(data))
        tail = data[at + 1:] if kind in ("replace", "delete") else data[at:]
        return data[:at] + (b"" if kind == "delete" else byte) + tail

    return Mutation(f"{kind} byte {byte!r} at {where:.3f}", mangle, None)


@pytest.fixture
def fuzz_device(rig: Rig) -> Iterator[FakeDevice]:
    with FakeDevice(rig.broker, f"fuzz-h-{uuid.uuid4().hex[:8]}", site=SITE) as d:
        yield d


@pytest.mark.slow
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                HealthCheck.function_scoped_fixture])
@given(mutation=mutations())
def test_mutated_events_are_stored_as_sent_or_dead_lettered_once(rig: Rig, fuzz_device: FakeDevice,
                                                                 mutation: Mutation) -> None:
    device = fuzz_device
    rig.alive()
    event = feedback_event(SITE, device.device, seq=1)
    payload = mutation.apply(event)
    device.send(payload)
    store_valid_event(rig, device)
    kept = payload[:MAX_DEAD_LETTER_BYTES]
    try:
        sent_id = json.loads(payload).get("id", event["id"])
    except (ValueError, AttributeError):
        sent_id = event["id"]

    def settled() -> bool:
        return bool(rig.letters_with_raw(kept)) or (type(sent_id) is str and get_event(rig.store, sent_id) is not None)

    wait_for(settled, timeout=TIMEOUT, what=f"the fate of {mutation.describe}")
    reasons = rig.letters_with_raw(kept)
    if mutation.expect is not None:
        assert len(reasons) == 1, f"{mutation.describe}: {len(reasons)} dead letters"
        assert mutation.expect.lower() in reasons[0].lower(), f"{mutation.describe}: reason {reasons[0]!r}"
        assert get_event(rig.store, event["id"]) is None
    else:
        body = json.loads(payload) if not reasons else None
        if body is None:
            assert len(reasons) == 1 and reasons[0], f"{mutation.describe}: {reasons}"
        else:  # the change left a valid event: stored exactly as sent, once
            stored = get_event(rig.store, body["id"])
            assert stored is not None and all(stored[k] == v for k, v in body.items()), mutation.describe
    rig.alive()


def test_the_module_leaves_the_collector_acking(rig: Rig, device: FakeDevice) -> None:
    """More valid events than the Receive Maximum, after everything above: all stored."""
    rig.alive()
    events = [feedback_event(SITE, device.device, seq=n) for n in range(1, COPIES * 2)]
    for e in events:
        device.send(protocol.encode("feedback", e))
    wait_for(lambda: all(device.outcomes(e["id"]) for e in events), timeout=TIMEOUT, what="every receipt")
    assert all(get_event(rig.store, e["id"]) is not None for e in events)
    rig.alive()

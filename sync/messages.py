"""The hot messages of the protocol (feedback event, receipt), defined once as msgspec Structs.

These Structs are the source of ``sync/schema/feedback.v1.json`` and
``sync/schema/receipt.v1.json``: :func:`generated_schema` writes those files
(``python -m sync.messages --write``) and ``tests/test_protocol_contract.py``
keeps the committed files equal to what it generates. msgspec decodes and
validates a payload against a Struct in C, strictly: a JSON ``true`` or ``3.0``
is not an integer, ``5.0`` is not the scale ``5``, unknown fields are refused,
a number that overflows a float is out of range, ``NaN`` is not JSON and the
bytes must be UTF-8.

What msgspec's own constraints cannot say is checked in ``__post_init__`` and
written into the generated schema by hand, next to the check: the rating at
most the scale (``allOf``/``if``/``then``), no repeated reason or flag
(``uniqueItems``), a rejected receipt item has a reason. A schema ``pattern``
keeps JSON Schema's meaning (``$`` is the end of the string): msgspec gets the
same pattern with ``$`` written as ``\\Z`` (:func:`compile_pattern`), the
schema the ``$`` form. Duplicate keys are found by :mod:`sync.protocol` (msgspec
keeps the last one silently).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from sync import slugs


@cache
def compile_pattern(pattern: str) -> re.Pattern[str]:
    """Compile a schema ``pattern`` with JSON Schema's (ECMA-262) meaning of ``$``.

    In a JSON Schema pattern (no multiline flag) ``$`` matches only at the very
    end of the string; Python's ``$`` also matches before a final ``"\\n"``, so
    ``"<uuid>\\n"`` would pass ``^...$``. Every ``$`` outside a character class
    and not escaped becomes ``\\Z``; the result is used with ``search``, as the
    JSON Schema ``pattern`` keyword is unanchored (and as msgspec uses it).
    """
    out: list[str] = []
    in_class = escaped = False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "$":
            out.append(r"\Z")
            continue
        out.append(char)
    return re.compile("".join(out))


#: The shared patterns (JSON Schema form), written into feedback.v1.json's ``$defs`` for the other schemas.
PATTERNS: Final[dict[str, str]] = {
    "slug": slugs.SLUG_PATTERN,
    "key": "^[a-z0-9_-]{1,32}$",
    "uuid": "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
    "uuid7": "^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$",
    "timestamp": "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,6})?Z$",
}
LANG_PATTERN: Final = "^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$"
#: msgspec's pattern (``\\Z``) -> the schema's (``$``), for the generator.
_SCHEMA_PATTERN: Final = {compile_pattern(p).pattern: p for p in (*PATTERNS.values(), LANG_PATTERN)}


def _text(name: str) -> Any:
    return Meta(pattern=compile_pattern(PATTERNS[name]).pattern)


MAX_SAFE: Final = 9007199254740991
Slug = Annotated[str, _text("slug")]
Key = Annotated[str, _text("key")]
Uuid = Annotated[str, _text("uuid")]
Uuid7 = Annotated[str, _text("uuid7")]
Timestamp = Annotated[str, _text("timestamp")]
Lang = Annotated[str, Meta(pattern=compile_pattern(LANG_PATTERN).pattern)]
_UNIQUE: Final = {"uniqueItems": True}


class Feedback(Struct, forbid_unknown_fields=True):
    """One customer answer. Topic deskpulse/v1/{site}/{device}/feedback, QoS 1, not retained. `id` is the deduplication key."""  # noqa: E501

    schema: Literal[1]
    id: Uuid7
    site: Slug
    device: Slug
    epoch: Uuid
    seq: Annotated[int, Meta(ge=1, le=MAX_SAFE)]
    ts: Timestamp
    clock_synced: bool
    boot_id: Uuid
    mono_ms: Annotated[int, Meta(ge=0, le=MAX_SAFE)]
    rating: Annotated[int, Meta(ge=1, le=5)]
    scale: Literal[3, 4, 5]
    reasons: Annotated[list[Key], Meta(max_length=8, extra_json_schema=_UNIQUE)]
    lang: Lang
    source: Literal["touch", "button"]
    survey: Annotated[int, Meta(ge=0, le=2147483647)]
    flags: Annotated[list[Literal["rapid_repeat", "test"]], Meta(max_length=4, extra_json_schema=_UNIQUE)]

    def __post_init__(self) -> None:
        # Not expressible in msgspec's constraints: written into the schema by _FEEDBACK_EXTRA.
        if self.rating > self.scale:
            raise ValueError(f"rating {self.rating} is above the scale {self.scale}")
        if len(set(self.reasons)) != len(self.reasons):
            raise ValueError("a reason is given twice")
        if len(set(self.flags)) != len(self.flags):
            raise ValueError("a flag is given twice")


#: The rating at most the scale, in JSON Schema (Feedback.__post_init__ checks it).
_FEEDBACK_EXTRA: Final = {"allOf": [
    {"if": {"properties": {"scale": {"const": s}}}, "then": {"properties": {"rating": {"maximum": s}}}}
    for s in (3, 4)
]}


class ReceiptItem(Struct, forbid_unknown_fields=True, omit_defaults=True):
    """What central did with one answer."""

    id: Uuid7
    outcome: Literal["stored", "duplicate", "rejected"]
    reason: Annotated[str, Meta(max_length=500)] | UnsetType = UNSET

    def __post_init__(self) -> None:
        if self.outcome == "rejected" and self.reason is UNSET:
            raise ValueError("a rejected answer needs a reason")


#: A rejected item has a reason, in JSON Schema (ReceiptItem.__post_init__ checks it).
_RECEIPT_ITEM_EXTRA: Final = {"if": {"properties": {"outcome": {"const": "rejected"}}},
                              "then": {"required": ["reason"]}}

Receipt = Annotated[list[ReceiptItem], Meta(min_length=1, max_length=1000)]

#: Decoders of the kinds defined here (JSON bytes -> Structs), and their types for dicts (msgspec.convert).
TYPES: Final[dict[str, Any]] = {"feedback": Feedback, "receipt": Receipt}
DECODERS: Final[dict[str, msgspec.json.Decoder[Any]]] = {
    kind: msgspec.json.Decoder(kind_type) for kind, kind_type in TYPES.items()}
_encode: Final = msgspec.json.Encoder().encode


def canonical_length(value: Any) -> int:
    """Bytes of ``value`` (Structs) as compact JSON: no payload holding the same values is shorter."""
    return len(_encode(value))


# --------------------------------------------------------------------------- the generated schemas

_HEAD: Final = {
    "feedback": ("deskpulse/v1/feedback.json", "DeskPulse feedback event (v1)"),
    "receipt": ("deskpulse/v1/receipt.json", "DeskPulse receipt (v1)"),
}
_RECEIPT_DESCRIPTION: Final = (
    "Topic deskpulse/v1/{site}/{device}/receipt, QoS 1, not retained. Published by central after the store "
    "commit. Only a receipt confirms an answer; a PUBACK does not.")


def _schema_patterns(node: Any) -> Any:
    """msgspec writes its own (``\\Z``) patterns into the schema: put JSON Schema's ``$`` back."""
    if isinstance(node, dict):
        # uniqueItems last: jsonschema's best_match then names a too long list before a repeat in it.
        order = sorted(node, key=lambda k: k == "uniqueItems")
        return {k: (_SCHEMA_PATTERN[node[k]] if k == "pattern" else _schema_patterns(node[k])) for k in order}
    if isinstance(node, list):
        return [_schema_patterns(v) for v in node]
    return node


def schema_document(kind: str) -> dict[str, Any]:
    """The JSON Schema of ``kind`` ("feedback" or "receipt"), made from its Struct."""
    (top,), components = msgspec.json.schema_components([TYPES[kind]], ref_template="#/$defs/{name}")
    components = _schema_patterns(components)
    schema_id, title = _HEAD[kind]
    doc: dict[str, Any] = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": schema_id,
                           "title": title}
    if kind == "feedback":
        body = dict(components["Feedback"])
        doc["description"] = body.pop("description")
        del body["title"]
        body["properties"]["schema"] = {"const": 1}  # Literal[1] is {"enum": [1]}: the same, said as before
        doc.update(body)
        doc.update(_FEEDBACK_EXTRA)
        doc["$defs"] = {name: {"type": "string", "pattern": pattern} for name, pattern in PATTERNS.items()}
    else:
        item = dict(components["ReceiptItem"])
        del item["title"]
        item.update(_RECEIPT_ITEM_EXTRA)
        doc["description"] = _RECEIPT_DESCRIPTION
        doc.update({k: v for k, v in top.items() if k != "items"})
        doc["items"] = item
    return doc


def generated_schema(kind: str) -> str:
    """The text of ``sync/schema/<kind>.v1.json`` as :func:`schema_document` makes it."""
    return json.dumps(schema_document(kind), indent=2, ensure_ascii=False) + "\n"


def schema_path(kind: str) -> Path:
    """Where the committed schema of ``kind`` lives in the source tree."""
    return Path(str(resources.files("sync") / "schema" / f"{kind}.v1.json"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sync.messages",
        description="Check (or --write) sync/schema/feedback.v1.json and receipt.v1.json against the schemas "
        "generated from the msgspec Structs in sync/messages.py.")
    parser.add_argument("--write", action="store_true", help="write the generated schemas")
    args = parser.parse_args(argv)
    stale = []
    for kind in TYPES:
        text, path = generated_schema(kind), schema_path(kind)
        if path.read_text("utf-8") != text:
            if args.write:
                path.write_text(text, "utf-8")
                print(f"wrote {path}")
            else:
                stale.append(str(path))
    if stale:
        print("out of date (run python -m sync.messages --write): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

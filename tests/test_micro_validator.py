"""The collector's JSON Schema draft-04 validator, cross-checked against ``jsonschema``.

Every bundled Iglu schema, and a set of synthetic schemas using every supported keyword, is
given hundreds of generated instances (valid and invalid, seeded) and each verdict — and the
set of failing locations — must be the one ``jsonschema.Draft4Validator`` (with format
checks) gives. Deliberate differences (stricter formats) are pinned separately.
"""

from __future__ import annotations

import copy
import json
import random
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft4Validator, FormatChecker

from snowplow_threaded.collector import SchemaError, Validator
from snowplow_threaded.collector.iglu import BUNDLED_DIR

BUNDLED_FILES = sorted(p for p in BUNDLED_DIR.glob("*/*/jsonschema/*") if p.is_file())
#: Cross-checked: the schemas the official trackers emit (the tracker protocol, the events
#: and entities of tracker-core, the browser, node and mobile trackers). The rest of Iglu
#: Central is only checked to compile (test_every_bundled_schema_compiles): many of its
#: schemas use the ``uri`` format, which this validator checks and jsonschema does not.
_TRACKER_SCHEMAS = {
    "payload_data", "contexts", "unstruct_event", "web_page", "client_session",
    "browser_context", "application", "activity_metrics", "link_click", "submit_form",
    "change_form", "focus_form", "site_search", "add_to_cart", "remove_from_cart",
    "screen_view", "social_interaction", "ad_impression", "ad_click", "ad_conversion",
    "consent_granted", "consent_withdrawn", "consent_document",
}
SCHEMA_FILES = [p for p in BUNDLED_FILES
                if (p.parts[-4] == "com.snowplowanalytics.mobile"
                    and p.parts[-3] in ("screen", "screen_view"))
                or (p.parts[-4] == "com.snowplowanalytics.snowplow"
                    and p.parts[-3] in _TRACKER_SCHEMAS)]

# (valid, invalid) strings of each format on which both validators agree (see
# test_documented_differences for where they do not).
FORMAT_POOLS: dict[str, tuple[list[str], list[str]]] = {
    "uuid": ([str(uuid.uuid4()), str(uuid.uuid4()).upper(), str(uuid.uuid4())],
             ["not-a-uuid", "", "0" * 32, "{" + str(uuid.uuid4()) + "}",
              "12345678-1234-1234-1234-12345678", "urn:uuid:" + str(uuid.uuid4())]),
    "date-time": (["2024-02-29T12:34:56Z", "2024-02-29T12:34:56.123+02:00",
                   "1999-12-31T23:59:59.5-05:30", "2024-01-01t10:00:00z"],
                  ["2023-02-29T12:00:00Z", "2024-13-01T00:00:00Z", "2024-01-01", "yesterday",
                   "2024-04-31T00:00:00Z", "2024-01-01Tnonsense", "2024-01-01T25:61:00Z",
                   "2024-01-01T23:59:60Z", "2024-01-01T10:00:00+24:00",
                   "2024-01-01 10:00:00Z", "2024-01-01T10:00:00.Z", "0000-01-01T00:00:00Z",
                   "2024-01-01T10:00Z"]),
    "ipv4": (["127.0.0.1", "255.255.255.255", "0.0.0.0"],
             ["256.1.1.1", "1.2.3", "1.2.3.04", "::1", "1.2.3.4 "]),
    "ipv6": (["::1", "2001:db8::8a2e:370:7334", "::ffff:1.2.3.4"],
             ["fe80::1%eth0", "12345::", "1.2.3.4", "", ":::"]),
    "email": (["a@b.example", "first.last@sub.example.org"], ["no-at-sign", ""]),
}
STRINGS = ["", "a", "hello", "ünïcödé", "😀😀", "x" * 70, "SELECT", "INPUT", "COOKIE_1",
           "0123456789abcdef", "iglu:com.acme/event/jsonschema/1-0-0",
           "iglu:com.acme/event/jsonschema/1-0", "iglu:a/b/c/1-0-0\n", "https://example.com/x"]


def draft4(schema: dict[str, Any]) -> Draft4Validator:
    doc = {k: v for k, v in schema.items() if k != "$schema"}  # Iglu's meta-schema URI
    return Draft4Validator(doc, format_checker=FormatChecker())


def random_value(rng: random.Random, depth: int = 0) -> Any:
    choice = rng.randrange(9 if depth < 2 else 6)
    if choice == 0:
        return None
    if choice == 1:
        return rng.choice([True, False])
    if choice == 2:
        return rng.choice([0, 1, -3, 7, 2**31, 10**20])
    if choice == 3:
        return rng.choice([0.5, 1.0, -2.25, 1e300, 3.0])
    if choice in (4, 5):
        return rng.choice(STRINGS)
    if choice in (6, 7):
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(["a", "b", "name", "id"]): random_value(rng, depth + 1)
            for _ in range(rng.randrange(3))}


def _string(schema: dict[str, Any], rng: random.Random) -> str:
    fmt = schema.get("format")
    if fmt in FORMAT_POOLS and rng.random() < 0.9:
        valid, invalid = FORMAT_POOLS[fmt]
        return rng.choice(valid if rng.random() < 0.75 else invalid)
    if "pattern" in schema and rng.random() < 0.9:
        candidates = [str(uuid.uuid4()), uuid.uuid4().hex[:16], str(uuid.uuid4()).upper(),
                      "iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0",
                      "iglu:com.acme/x/jsonschema/1-0-0", "iglu:bad uri", "12-34",
                      "iglu:a/b/c/1-0-0\n", "abc", "x_y"]
        regex = re.compile(schema["pattern"])
        matching = [c for c in candidates if regex.search(c)]
        if matching and rng.random() < 0.75:
            return rng.choice(matching)
        return rng.choice(candidates)
    text = rng.choice(STRINGS)
    high = schema.get("maxLength")
    if high is not None and rng.random() < 0.3:
        text = rng.choice(["y" * high, "y" * (high + 1), "😀" * high])
    return text


def _number(schema: dict[str, Any], rng: random.Random, integer: bool) -> Any:
    bounds = [b for b in (schema.get("minimum"), schema.get("maximum")) if b is not None]
    pool: list[Any] = [0, 1, 2, 42, -1, 2.5, 1.0, 2**31 - 1, 2**31, 10**15]
    for b in bounds:
        pool += [b, b - 1, b + 1, float(b)]
    if "multipleOf" in schema:
        m = schema["multipleOf"]
        pool += [m * 3, m * 3 + 0.001, m * 7, 0.3, 0.7, 10]
    value = rng.choice(pool)
    return int(value) if integer and rng.random() < 0.8 and not isinstance(value, bool) else value


def generate(schema: Any, rng: random.Random, root: dict[str, Any], depth: int = 0) -> Any:
    """A random instance, mostly shaped like *schema*, sometimes not."""
    if not isinstance(schema, dict) or depth > 6 or rng.random() < 0.02:
        return random_value(rng, depth)
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            if part:
                target = target[part]
        return generate(target, rng, root, depth + 1)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema and rng.random() < 0.8:
            return generate(rng.choice(schema[key]), rng, root, depth + 1)
    if "enum" in schema and rng.random() < 0.8:
        return copy.deepcopy(rng.choice(schema["enum"]))
    declared = schema.get("type", rng.choice(["string", "object", "array", "integer"]))
    kind = rng.choice(declared) if isinstance(declared, list) else declared
    if kind == "object":
        return _object(schema, rng, root, depth)
    if kind == "array":
        items = schema.get("items", {})
        count = rng.choice([0, 1, 2, 3, schema.get("minItems", 1), schema.get("maxItems", 2)])
        if isinstance(items, list):
            return [generate(items[i], rng, root, depth + 1) if i < len(items)
                    else random_value(rng, depth + 1) for i in range(count)]
        out = [generate(items, rng, root, depth + 1) for _ in range(count)]
        if out and schema.get("uniqueItems") and rng.random() < 0.3:
            out.append(copy.deepcopy(out[0]))
        return out
    if kind == "string":
        return _string(schema, rng)
    if kind in ("integer", "number"):
        return _number(schema, rng, kind == "integer")
    if kind == "boolean":
        return rng.choice([True, False, 1])
    return None


def _object(schema: dict[str, Any], rng: random.Random, root: dict[str, Any],
            depth: int) -> dict[str, Any]:
    props = schema.get("properties", {})
    required = set(schema.get("required", []))
    out: dict[str, Any] = {}
    for name, sub in props.items():
        if rng.random() < (0.93 if name in required else 0.6):
            out[name] = generate(sub, rng, root, depth + 1)
    for pattern, sub in schema.get("patternProperties", {}).items():
        if rng.random() < 0.5:
            out[rng.choice(["x_1", "x_two", "y1"]) if "x" in pattern else "k"] = generate(
                sub, rng, root, depth + 1)
    if rng.random() < 0.05:
        out[rng.choice(["unexpected", "extra"])] = random_value(rng, depth + 1)
    return out


def cross_check(schema: dict[str, Any], instances: list[Any]) -> tuple[int, int]:
    """Assert both validators agree on every instance; returns (valid, invalid) counts."""
    mine, reference = Validator(schema), draft4(schema)
    valid = invalid = 0
    for instance in instances:
        ours = mine.errors(instance)
        theirs = list(reference.iter_errors(instance))
        assert (not ours) == (not theirs), (
            f"disagreement on {instance!r}:\n ours: {[str(e) for e in ours]}\n"
            f" jsonschema: {[e.message for e in theirs]}")
        # we report an unexpected property at its own path, jsonschema at its parent's
        our_paths = {e.path[:-1] if e.keyword.startswith("additional") else e.path
                     for e in ours}
        their_paths = {tuple(e.absolute_path) for e in theirs}
        assert our_paths == their_paths, (instance, [str(e) for e in ours],
                                          [(list(e.absolute_path), e.message) for e in theirs])
        if ours:
            invalid += 1
        else:
            valid += 1
    return valid, invalid


#: Iglu Central schemas whose ``$ref`` points outside the schema (to a remote metaschema):
#: not event or entity schemas, and they stay unusable here.
REMOTE_REFS = {"com.snowplowanalytics.sauna.commands/command/jsonschema/1-0-0",
               "com.snowplowanalytics.self-desc/schema/jsonschema/1-0-0"}


def test_every_bundled_schema_compiles() -> None:
    """All of Iglu Central is bundled: each schema parses, names itself where it lies, and
    compiles (but the two with remote references)."""
    assert len(BUNDLED_FILES) >= 660
    unusable = set()
    for path in BUNDLED_FILES:
        document = json.loads(path.read_text(encoding="utf-8"))
        vendor, name, fmt, version = path.parts[-4:]
        assert document["self"] == {"vendor": vendor, "name": name, "format": fmt,
                                    "version": version}, path
        try:
            Validator(document)
        except SchemaError:
            unusable.add("/".join(path.parts[-4:]))
    assert unusable == REMOTE_REFS


@pytest.mark.parametrize("path", SCHEMA_FILES,
                         ids=lambda p: "/".join(p.parts[-4:-2] + p.parts[-1:]))
def test_bundled_schema_agrees_with_jsonschema(path: Path) -> None:
    schema = json.loads(path.read_text())
    rng = random.Random(path.name + path.parts[-3])
    instances = [generate(schema, rng, schema) for _ in range(600)]
    valid, invalid = cross_check(schema, instances)
    assert valid >= 10 and invalid >= 30, (valid, invalid)  # browser_context: 12 valid


SYNTHETIC: list[dict[str, Any]] = [
    {"type": ["string", "null"], "minLength": 2, "maxLength": 3},
    {"type": "object", "properties": {"n": {"type": "number", "minimum": 0,
                                            "exclusiveMinimum": True, "maximum": 10},
                                      "i": {"type": "integer", "maximum": 5,
                                            "exclusiveMaximum": True, "minimum": -5},
                                      "m": {"multipleOf": 0.1}, "k": {"multipleOf": 3}},
     "required": ["n"], "additionalProperties": {"type": "boolean"}},
    {"type": "object", "patternProperties": {"^x_": {"type": "integer"}},
     "additionalProperties": False, "minProperties": 1, "maxProperties": 2},
    {"enum": ["a", 1, None, True, [1, 2], {"k": 1.0}]},
    {"type": "array", "items": [{"type": "string"}, {"type": "integer"}],
     "additionalItems": False, "minItems": 1},
    {"type": "array", "items": [{"type": "string"}], "additionalItems": {"type": "boolean"}},
    {"type": "array", "items": {"type": ["integer", "string"]}, "uniqueItems": True,
     "maxItems": 3},
    {"type": "array", "uniqueItems": True},
    {"anyOf": [{"type": "string", "pattern": "^[a-z]+$"}, {"type": "integer", "minimum": 3}]},
    {"oneOf": [{"type": "integer"}, {"type": "number", "minimum": 2}]},
    {"allOf": [{"type": "object", "required": ["name"]},
               {"properties": {"name": {"type": "string", "maxLength": 4}}}]},
    {"not": {"type": ["string", "array"]}},
    {"definitions": {"node": {"type": "object", "properties": {
        "name": {"type": "string"}, "id": {"$ref": "#/definitions/id"},
        "b": {"type": "array", "items": {"$ref": "#/definitions/node"}}},
        "required": ["name"], "additionalProperties": False},
        "id": {"type": "string", "format": "uuid"}},
     "$ref": "#/definitions/node"},
    {"type": "object", "properties": {"a": {}, "b": {"type": "string"}},
     "dependencies": {"a": ["b"], "b": {"required": ["id"]}}},
    {"type": "object", "properties": {
        "when": {"type": "string", "format": "date-time"},
        "v4": {"type": "string", "format": "ipv4"},
        "v6": {"format": "ipv6"}, "mail": {"format": "email"},
        "id": {"type": ["string", "null"], "format": "uuid"}}},
    {"type": "string", "format": "some-unknown-format", "description": "ignored"},
    {"type": "number", "maximum": 1e308, "multipleOf": 1e-300},
    {"type": "integer", "multipleOf": 2.5},
]


@pytest.mark.parametrize("index", range(len(SYNTHETIC)))
def test_synthetic_schema_agrees_with_jsonschema(index: int) -> None:
    schema = SYNTHETIC[index]
    draft4(schema).check_schema(schema)
    rng = random.Random(index)
    instances = [generate(schema, rng, schema) for _ in range(500)]
    instances += [random_value(rng) for _ in range(100)]
    valid, invalid = cross_check(schema, instances)
    assert valid >= 5 and invalid >= 5, (valid, invalid)


@pytest.mark.parametrize(("fmt", "value", "ours", "theirs"), [
    # Python's UUID() takes other spellings, as long as dashes are at 8, 13, 18, 23
    ("uuid", "12345678-1234-1234-1234-123456789abc-", False, True),
    # jsonschema only asks for an "@"
    ("email", "@", False, True),
    ("email", "two words@example.com", False, True),
])
def test_documented_differences(fmt: str, value: str, ours: bool, theirs: bool) -> None:
    schema = {"type": "string", "format": fmt}
    assert Validator(schema).is_valid(value) is ours
    assert draft4(schema).is_valid(value) is theirs


@pytest.mark.parametrize(("value", "ok"), [
    ("https://example.com/a?b=c#d", True), ("urn:isbn:0451450523", True),
    ("mailto:a@b.c", True), ("http://[::1]:80/%41", True), ("relative/path", False),
    ("http://exa mple.com", False), ("https://ex.com/%zz", False), ("", False),
])
def test_uri_format(value: str, ok: bool) -> None:
    # jsonschema checks "uri" only with an optional package, so this one is ours alone
    assert Validator({"format": "uri"}).is_valid(value) is ok


def test_lengths_count_code_points() -> None:
    v = Validator({"type": "string", "minLength": 2, "maxLength": 2})
    assert v.is_valid("😀😀")  # 2 code points, 4 UTF-16 units, 8 UTF-8 bytes
    assert not v.is_valid("😀")
    assert not v.is_valid("abc")


def test_error_paths_and_messages() -> None:
    v = Validator({"type": "object", "required": ["a"], "additionalProperties": False,
                   "properties": {"b": {"type": "array", "items": {"type": "integer"}}}})
    errors = v.errors({"b": [1, "x"], "c": 0})
    assert sorted(str(e) for e in errors) == [
        "/: required property 'a' is missing",
        "/b/1: expected integer, got string",
        "/c: property not allowed (additionalProperties is false)",
    ]
    assert {e.keyword for e in errors} == {"required", "type", "additionalProperties"}


def test_deep_instances_do_not_crash() -> None:
    schema = {"definitions": {"t": {"type": "array", "items": {"$ref": "#/definitions/t"}}},
              "$ref": "#/definitions/t"}
    deep: Any = []
    for _ in range(5000):
        deep = [deep]
    errors = Validator(schema).errors(deep)
    assert [e.keyword for e in errors] == ["depth"]


def test_pointer_option_validates_a_subschema() -> None:
    doc = json.loads(Path(BUNDLED_DIR, "com.snowplowanalytics.snowplow", "payload_data",
                          "jsonschema", "1-0-4").read_text())
    item = Validator(doc, pointer="/items")
    assert item.is_valid({"e": "pv", "tv": "t", "p": "web"})
    assert not item.is_valid({"e": "pv", "tv": "t"})


@pytest.mark.parametrize("schema", [
    {"type": "strung"}, {"type": ["string", 3]}, {"minLength": -1}, {"maxLength": "3"},
    {"pattern": "("}, {"enum": []}, {"multipleOf": 0}, {"minimum": "1"},
    {"exclusiveMinimum": 1}, {"required": "a"}, {"properties": []}, {"items": 3},
    {"allOf": []}, {"$ref": "http://example.com/schema"}, {"$ref": "#/definitions/none"},
    {"patternProperties": {"(": {}}}, {"uniqueItems": "yes"}, {"not": "x"},
])
def test_unusable_schemas_raise_schema_error(schema: dict[str, Any]) -> None:
    with pytest.raises(SchemaError):
        Validator(schema)

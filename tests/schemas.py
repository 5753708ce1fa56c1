"""Validation of tracker-protocol payloads against the Iglu schemas in ``tests/iglu``.

All checks raise ``AssertionError`` with a readable message, so they can be used directly
in tests::

    for event in validate_post_body(request.body):
        validate_event(event)

Schemas are JSON Schema draft-04 documents (with Iglu's ``self`` block and a ``$schema``
pointing at Iglu's self-describing meta-schema, which ``jsonschema`` does not know); they
are always validated with :class:`jsonschema.Draft4Validator`, with format checks
(``uuid``, ``date-time``, ...) on.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator, FormatChecker
from jsonschema.exceptions import ValidationError

__all__ = [
    "CONTEXTS",
    "IGLU_DIR",
    "PAYLOAD_DATA",
    "UNSTRUCT_EVENT",
    "context_entities",
    "decode_self_describing",
    "known_schemas",
    "schema_is_known",
    "unstruct_event",
    "validate_event",
    "validate_events",
    "validate_post_body",
    "validate_schema_instance",
]

#: Root of the local Iglu repository (``VENDOR/NAME/jsonschema/VERSION``).
IGLU_DIR = Path(__file__).resolve().parent / "iglu"

PAYLOAD_DATA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
UNSTRUCT_EVENT = "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0"
CONTEXTS = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1"

#: The Iglu URI pattern used by the unstruct_event and contexts schemas.
_IGLU_URI = re.compile(
    r"^iglu:([a-zA-Z0-9\-_.]+)/([a-zA-Z0-9\-_]+)/([a-zA-Z0-9\-_]+)/([0-9]+-[0-9]+-[0-9]+)$"
)
_DIGITS = re.compile(r"[0-9]+")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_URLSAFE_B64 = re.compile(r"[A-Za-z0-9_\-]*={0,2}")

#: Event types of the tracker protocol (``e``).
EVENT_TYPES = frozenset({"pv", "pp", "se", "ue", "tr", "ti"})
#: Platform codes of the tracker protocol (``p``).
PLATFORMS = frozenset({"web", "mob", "pc", "srv", "app", "tv", "cnsl", "iot", "headset"})

_FORMAT_CHECKER = FormatChecker()
_MAX_ERRORS = 10
_MAX_REPR = 500


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_REPR else text[:_MAX_REPR] + "...]"


def _parse_uri(uri: str) -> tuple[str, str, str, str]:
    match = _IGLU_URI.match(uri)
    if match is None:
        raise AssertionError(f"not an Iglu schema URI: {uri!r}")
    vendor, name, fmt, version = match.groups()
    return vendor, name, fmt, version


@functools.lru_cache(maxsize=128)
def _validator(uri: str) -> Draft4Validator | None:
    vendor, name, fmt, version = _parse_uri(uri)
    path = IGLU_DIR / vendor / name / fmt / version
    if not path.is_file():
        return None
    schema = json.loads(path.read_text(encoding="utf-8"))
    self_block = schema.get("self", {})
    found = (
        f"iglu:{self_block.get('vendor')}/{self_block.get('name')}/"
        f"{self_block.get('format')}/{self_block.get('version')}"
    )
    if found != uri:
        raise AssertionError(f"{path}: its self block says {found}, expected {uri}")
    # Iglu's meta-schema URI is unknown to jsonschema: drop it, the dialect is draft-04.
    schema.pop("$schema", None)
    Draft4Validator.check_schema(schema)
    return Draft4Validator(schema, format_checker=_FORMAT_CHECKER)


def schema_is_known(uri: str) -> bool:
    """True when ``uri`` (``iglu:VENDOR/NAME/FORMAT/VERSION``) is in ``tests/iglu``."""
    return _IGLU_URI.match(uri) is not None and _validator(uri) is not None


def known_schemas() -> list[str]:
    """Iglu URIs of every schema in ``tests/iglu``, sorted."""
    uris = []
    for path in IGLU_DIR.glob("*/*/*/*"):
        if path.is_file():
            vendor, name, fmt = path.parts[-4:-1]
            uris.append(f"iglu:{vendor}/{name}/{fmt}/{path.name}")
    return sorted(uris)


def _error_lines(errors: list[ValidationError]) -> str:
    lines = []
    for error in errors[:_MAX_ERRORS]:
        where = "/".join(str(p) for p in error.absolute_path) or "<root>"
        lines.append(f"  at {where}: {error.message}")
    if len(errors) > _MAX_ERRORS:
        lines.append(f"  ... and {len(errors) - _MAX_ERRORS} more")
    return "\n".join(lines)


def validate_schema_instance(uri: str, data: object) -> None:
    """Assert that ``data`` validates against the schema ``uri``
    (``iglu:VENDOR/NAME/jsonschema/VERSION``). Unknown schemas fail too."""
    validator = _validator(uri)
    if validator is None:
        raise AssertionError(f"unknown schema {uri} (not in {IGLU_DIR})")
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        raise AssertionError(
            f"instance does not validate against {uri}:\n{_error_lines(errors)}\n"
            f"instance: {_short(data)}"
        )


def _load_json(text: bytes | str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise AssertionError(f"{what} is not valid JSON ({exc}): {_short(text)}") from None


def validate_post_body(body: bytes | str) -> list[dict[str, str]]:
    """Assert that a POST body is ``{"schema": PAYLOAD_DATA, "data": [events]}`` with the
    events valid against payload_data 1-0-4 and every value a string; return the events.
    (Each event is not checked deeply: use :func:`validate_event` for that.)"""
    payload = _load_json(body, "POST body")
    if not isinstance(payload, dict):
        raise AssertionError(f"POST body is not a JSON object: {_short(payload)}")
    if set(payload) != {"schema", "data"}:
        raise AssertionError(f"POST body keys must be schema and data, got {sorted(payload)}")
    if payload["schema"] != PAYLOAD_DATA:
        raise AssertionError(f"POST body schema is {payload['schema']!r}, expected {PAYLOAD_DATA}")
    events = payload["data"]
    validate_schema_instance(PAYLOAD_DATA, events)
    for i, event in enumerate(events):
        for key, value in event.items():
            if not isinstance(value, str):
                raise AssertionError(f"event {i}: {key!r} is {type(value).__name__}, not str")
    return events  # type: ignore[no-any-return]


def _decode_b64_json(text: str, key: str) -> Any:
    if _URLSAFE_B64.fullmatch(text) is None:
        raise AssertionError(f"{key} is not URL-safe base64: {_short(text)}")
    stripped = text.rstrip("=")
    try:
        raw = base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))
    except (binascii.Error, ValueError) as exc:
        raise AssertionError(f"{key} is not valid base64 ({exc}): {_short(text)}") from None
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AssertionError(f"{key} does not decode to UTF-8 ({exc})") from None
    return _load_json(decoded, key)


def decode_self_describing(
    ev: dict[str, str], plain_key: str, b64_key: str
) -> dict[str, Any] | None:
    """Decode the self-describing JSON of an event field: ``ev[plain_key]`` (plain JSON) or
    ``ev[b64_key]`` (URL-safe base64 of UTF-8 JSON, padding optional). Returns ``None``
    when neither is present; fails when both are, or the value is not a JSON object."""
    has_plain, has_b64 = plain_key in ev, b64_key in ev
    if has_plain and has_b64:
        raise AssertionError(f"event has both {plain_key} and {b64_key}")
    if has_plain:
        decoded = _load_json(ev[plain_key], plain_key)
        key = plain_key
    elif has_b64:
        decoded = _decode_b64_json(ev[b64_key], b64_key)
        key = b64_key
    else:
        return None
    if not isinstance(decoded, dict):
        raise AssertionError(f"{key} is not a JSON object: {_short(decoded)}")
    return decoded


def _check_self_describing(obj: object, where: str) -> tuple[str, Any]:
    if not isinstance(obj, dict) or set(obj) != {"schema", "data"}:
        raise AssertionError(
            f"{where} is not a self-describing JSON {{schema, data}}: {_short(obj)}"
        )
    uri = obj["schema"]
    if not isinstance(uri, str) or _IGLU_URI.match(uri) is None:
        raise AssertionError(f"{where}: schema is not an Iglu URI: {uri!r}")
    return uri, obj["data"]


def _validate_if_known(uri: str, data: object, where: str) -> None:
    if not schema_is_known(uri):
        return  # custom vendor schema (iglu:com.acme/...): nothing to check against
    try:
        validate_schema_instance(uri, data)
    except AssertionError as exc:
        raise AssertionError(f"{where}: {exc}") from None


def unstruct_event(ev: dict[str, str]) -> dict[str, Any] | None:
    """The inner self-describing event ``{"schema": ..., "data": ...}`` of ``ue_pr`` /
    ``ue_px``, validated (envelope, and inner data when its schema is known), or None."""
    envelope = decode_self_describing(ev, "ue_pr", "ue_px")
    if envelope is None:
        return None
    uri, inner = _check_self_describing(envelope, "ue_pr/ue_px")
    if uri != UNSTRUCT_EVENT:
        raise AssertionError(f"ue_pr/ue_px schema is {uri}, expected {UNSTRUCT_EVENT}")
    validate_schema_instance(UNSTRUCT_EVENT, inner)
    inner_uri, inner_data = _check_self_describing(inner, "self-describing event")
    _validate_if_known(inner_uri, inner_data, "self-describing event")
    return inner  # type: ignore[no-any-return]


def context_entities(ev: dict[str, str]) -> list[dict[str, Any]]:
    """The context entities of ``co`` / ``cx``, validated (envelope, and each entity's
    data when its schema is known); an empty list when the event has no contexts."""
    envelope = decode_self_describing(ev, "co", "cx")
    if envelope is None:
        return []
    uri, entities = _check_self_describing(envelope, "co/cx")
    if uri != CONTEXTS:
        raise AssertionError(f"co/cx schema is {uri}, expected {CONTEXTS}")
    validate_schema_instance(CONTEXTS, entities)
    for i, entity in enumerate(entities):
        entity_uri, entity_data = _check_self_describing(entity, f"context entity {i}")
        _validate_if_known(entity_uri, entity_data, f"context entity {i} ({entity_uri})")
    return entities  # type: ignore[no-any-return]


def validate_event(ev: dict[str, str]) -> None:
    """Assert that ``ev`` is a valid tracker-protocol event:

    * valid against payload_data 1-0-4 (known keys only, all values strings);
    * ``e`` (a known event type), ``eid`` (a UUID), ``tv`` and ``p`` (a known platform)
      present; ``dtm``/``stm``/``ttm`` digit strings when present;
    * ``se`` events have ``se_ca`` and ``se_ac``; ``ue`` events have ``ue_pr``/``ue_px``;
    * ``ue_pr``/``ue_px`` and ``co``/``cx`` decode, their envelopes validate against
      unstruct_event 1-0-0 / contexts 1-0-1, and the inner data validate against their
      own schemas when those are in ``tests/iglu`` (unknown vendors are skipped).
    """
    if not isinstance(ev, dict):
        raise AssertionError(f"event is not a dict: {_short(ev)}")
    validate_schema_instance(PAYLOAD_DATA, [ev])
    for key in ("e", "eid", "tv", "p"):
        if not ev.get(key):
            raise AssertionError(f"event lacks {key!r}: {_short(ev)}")
    if ev["e"] not in EVENT_TYPES:
        raise AssertionError(f"unknown event type e={ev['e']!r}")
    if ev["p"] not in PLATFORMS:
        raise AssertionError(f"unknown platform p={ev['p']!r}")
    if _UUID.fullmatch(ev["eid"]) is None:
        raise AssertionError(f"eid is not a UUID (8-4-4-4-12 hex digits): {ev['eid']!r}")
    for key in ("dtm", "stm", "ttm"):
        if key in ev and _DIGITS.fullmatch(ev[key]) is None:
            raise AssertionError(f"{key} is not a digit string: {ev[key]!r}")
    if ev["e"] == "se":
        for key in ("se_ca", "se_ac"):
            if not ev.get(key):
                raise AssertionError(f"structured event lacks {key!r}: {_short(ev)}")
    inner = unstruct_event(ev)
    if ev["e"] == "ue" and inner is None:
        raise AssertionError(f"self-describing event lacks ue_pr/ue_px: {_short(ev)}")
    if ev["e"] != "ue" and inner is not None:
        raise AssertionError(f"e={ev['e']!r} event carries ue_pr/ue_px")
    context_entities(ev)


def validate_events(events: list[dict[str, str]]) -> None:
    """:func:`validate_event` on each event (the message says which one failed)."""
    for i, ev in enumerate(events):
        try:
            validate_event(ev)
        except AssertionError as exc:
            raise AssertionError(f"event {i}: {exc}") from None

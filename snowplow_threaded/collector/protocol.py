"""Validation of one tracker-protocol event, as a Snowplow pipeline would judge it.

:meth:`EventChecker.check` takes an event as received (the JSON object of a POST's
``data`` list, or a GET's query parameters) and returns a :class:`Checked`: the reasons it
is bad (none when good), its type, the schema of its self-describing event and the schemas
of its context entities. The checks:

* the ``payload_data`` schema: only protocol fields, every value a string, ``e``, ``tv``
  and ``p`` present;
* ``e`` a known event type, ``p`` a known platform, ``tv`` not empty, ``eid`` a UUID;
  timestamps and counters integers, amounts numbers, ``res``/``vp``/``ds`` ``WxH``;
  fields no longer than their column in the pipeline's canonical event;
* per type: ``se`` has ``se_ca`` and ``se_ac``; ``ue`` has one of ``ue_pr``/``ue_px`` (and
  only ``ue`` has them); ``tr`` has ``tr_id`` and ``tr_tt``; ``ti`` has ``ti_id``,
  ``ti_sk``, ``ti_pr`` and ``ti_qu``; at most one of ``co``/``cx``;
* ``ue_pr``/``co`` (JSON) and ``ue_px``/``cx`` (URL-safe base64 of UTF-8 JSON, padding
  optional) decode to self-describing JSON; the wrapper is validated against its schema
  (unstruct_event / contexts), and the event and each context entity against theirs.
  A schema the resolver does not know makes the event bad.

Each failure is kept twice: as a readable reason (:attr:`Checked.errors`) and as a message
of a Snowplow bad row (:attr:`Checked.messages`, see :mod:`.badrows`). A GET event
(``api="tp1"``, or a GET on ``.../tp2``) is not checked against ``payload_data``'s list of
fields, as the Snowplow pipeline does not: other query fields (``utm_source=...``) are kept
in its parameters and ignored.

A checker is thread-safe; it caches the outcome of recently seen ``ue_*``/``co``/``cx``
values, which trackers often repeat (4096 values of up to 4096 characters, 8 MB in all).
Reasons are cut to ``MAX_ERROR_LENGTH``; amounts are checked length first, in linear time.
"""

from __future__ import annotations

import binascii
import math
import re
import string
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from . import badrows
from .iglu import InvalidSchemaURI, Resolver, SchemaKey, SchemaUnavailable, parse_schema_uri
from .jsontext import load_json
from .schema_types import ValidationError

__all__ = ["CONTEXTS", "EVENT_TYPES", "PAYLOAD_DATA", "PLATFORMS", "UNSTRUCT_EVENT",
           "Checked", "EventChecker", "decode_base64_json", "decode_field", "load_json"]

_SP = "iglu:com.snowplowanalytics.snowplow/"
PAYLOAD_DATA = _SP + "payload_data/jsonschema/1-0-4"
UNSTRUCT_EVENT = _SP + "unstruct_event/jsonschema/1-0-0"
CONTEXTS = _SP + "contexts/jsonschema/1-0-1"

#: Event type code (``e``) -> the ``event`` column of the canonical event (and Micro's
#: ``eventType``); ``ev`` is the legacy code of a structured event.
EVENT_TYPES = {"pv": "page_view", "pp": "page_ping", "se": "struct", "ev": "struct",
               "ue": "unstruct", "tr": "transaction", "ti": "transaction_item"}
#: Platform codes (``p``).
PLATFORMS = frozenset({"web", "mob", "pc", "srv", "app", "tv", "cnsl", "iot", "headset"})

_TIMESTAMP = re.compile(r"[0-9]{1,15}")
_INTEGER = re.compile(r"-?[0-9]{1,18}")
#: A decimal number (unambiguous: linear time whatever the input; ``[0-9]+\.?[0-9]*``
#: backtracked quadratically on a long run of digits).
_NUMBER = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
#: Longest amount (``se_va``, ``tr_tt``...): a double needs 25 characters at most.
MAX_NUMBER_LENGTH = 64
_DIMENSIONS = re.compile(r"[0-9]{1,9}x[0-9]{1,9}")
_BASE64URL_ALPHABET = (string.ascii_letters + string.digits + "-_").encode("ascii")
_TO_STANDARD_BASE64 = bytes.maketrans(b"-_", b"+/")
_FIELD_RULES: tuple[tuple[re.Pattern[str], str, tuple[str, ...]], ...] = (
    (_TIMESTAMP, "a timestamp in milliseconds", ("dtm", "stm", "ttm")),
    (_INTEGER, "an integer", ("vid", "tid", "cd", "pp_mix", "pp_max", "pp_miy", "pp_may",
                              "ti_qu")),
    (_DIMENSIONS, "WIDTHxHEIGHT", ("res", "vp", "ds")),
)
_NUMBER_FIELDS = frozenset({"se_va", "tr_tt", "tr_tx", "tr_sh", "ti_pr"})
_REQUIRED_BY_TYPE = {"se": ("se_ca", "se_ac"), "ev": ("se_ca", "se_ac"),
                     "tr": ("tr_id", "tr_tt"),
                     "ti": ("ti_id", "ti_sk", "ti_pr", "ti_qu")}
#: Longest value of a field, from the sizes of the canonical event's columns.
MAX_LENGTHS = {
    "aid": 255, "p": 255, "tna": 128, "tv": 100, "eid": 36, "uid": 255, "ip": 128,
    "fp": 128, "duid": 128, "nuid": 128, "tnuid": 128, "sid": 128, "url": 4096,
    "page": 2000, "refr": 4096, "se_ca": 1000, "se_ac": 1000, "se_la": 4096,
    "se_pr": 1000, "tr_id": 255, "tr_af": 255, "tr_ci": 255, "tr_st": 255, "tr_co": 255,
    "tr_cu": 3, "ti_id": 255, "ti_sk": 255, "ti_nm": 255, "ti_na": 255, "ti_ca": 255,
    "ti_cu": 3, "ua": 1000, "lang": 255, "tz": 255, "cs": 128,
}
_UUID_TEXT = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                        r"[0-9a-fA-F]{12}")
#: field -> (pattern it must match, what that is, longest value), for one pass per event.
_RULES: dict[str, tuple[re.Pattern[str] | None, str, int | None]] = {
    **{field: (None, "", limit) for field, limit in MAX_LENGTHS.items()},
    **{field: (pattern, what, MAX_LENGTHS.get(field))
       for pattern, what, fields in _FIELD_RULES for field in fields},
    **{field: (_NUMBER, "a number", MAX_NUMBER_LENGTH) for field in _NUMBER_FIELDS},
    "eid": (_UUID_TEXT, "a UUID", 36),
}
_MAX_ERRORS = 20
#: Longest reason kept (reasons quote what clients sent: a key of 2 MiB, say).
MAX_ERROR_LENGTH = 1000
_CACHE_SIZE = 4096
_CACHE_MAX_TEXT = 4096
#: Most characters the decode cache holds (its keys and its reasons), about 2 bytes each.
_CACHE_BUDGET = 4 * 1024 * 1024


@dataclass(slots=True)
class Checked:
    """The verdict on one event. ``errors`` (readable reasons) is empty for a good event;
    ``messages`` are the same failures as bad-row messages, ``failed`` the fields they are
    in. ``event_type`` is the ``e`` code, ``schema`` the self-describing event's."""

    parameters: dict[str, Any] | None
    errors: list[str]
    event_type: str | None = None
    schema: str | None = None
    contexts: tuple[str, ...] = ()
    messages: list[dict[str, Any]] = field(default_factory=list)
    failed: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class _Decoded:
    errors: tuple[str, ...]
    messages: tuple[dict[str, Any], ...] = ()
    schema: str | None = None
    contexts: tuple[str, ...] = ()


class _Failures:
    """What is wrong with one event, as reasons and as bad-row messages."""

    __slots__ = ("atomic", "fields", "messages", "texts")

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.messages: list[dict[str, Any]] = []
        self.fields: set[str] = set()
        self.atomic: list[tuple[str, str, str]] = []

    def field(self, name: str, text: str, keyword: str = "atomic_field_parse_error") -> None:
        """A failure of one atomic field (reported against the ``atomic`` schema)."""
        self.texts.append(text)
        self.fields.add(name)
        self.atomic.append((name, text, keyword))

    def decoded(self, name: str, found: _Decoded) -> None:
        if found.errors:
            self.texts.extend(found.errors)
            self.messages.extend(found.messages)
            self.fields.add(name)

    def all_messages(self) -> list[dict[str, Any]]:
        if not self.atomic:
            return self.messages
        return [badrows.atomic_message(self.atomic), *self.messages]


def _iso(seconds: float) -> str:
    return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
            + f".{int(seconds * 1000) % 1000:03d}Z")


def decode_base64_json(text: str) -> Any:
    """Decode URL-safe base64 (padding optional) of UTF-8 JSON. Raises ``ValueError``
    (with the reason) for anything else."""
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError("not URL-safe base64") from None
    stripped = raw.rstrip(b"=")
    if len(raw) - len(stripped) > 2 or stripped.translate(None, _BASE64URL_ALPHABET):
        raise ValueError("not URL-safe base64")
    if len(stripped) % 4 == 1:
        raise ValueError("not valid base64 (bad length)")
    try:
        data = binascii.a2b_base64(stripped.translate(_TO_STANDARD_BASE64)
                                   + b"=" * (-len(stripped) % 4))
        decoded = data.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError(f"does not decode to UTF-8 text ({exc})") from None
    return load_json(decoded)


def decode_field(params: dict[str, Any], plain: str, encoded: str) -> Any:
    """The JSON in ``params[plain]`` (plain) or ``params[encoded]`` (base64), or None when
    neither is there or it does not decode."""
    try:
        if plain in params:
            return load_json(params[plain])
        if encoded in params:
            return decode_base64_json(params[encoded])
    except ValueError:
        return None
    return None


def _schema_failure(uri: str, errors: list[ValidationError], prefix: str
                    ) -> tuple[list[str], list[dict[str, Any]]]:
    """Reasons and the bad-row message of *errors* against schema *uri*."""
    errors = errors[:_MAX_ERRORS]
    if not errors:
        return [], []
    texts = [_cut(f"{prefix}{error}") for error in errors]
    return texts, [badrows.validation_message(uri, errors, [_cut(str(e)) for e in errors])]


def _cut(text: str) -> str:
    if len(text) <= MAX_ERROR_LENGTH:
        return text
    return f"{text[:MAX_ERROR_LENGTH]}... ({len(text)} characters)"


def _unavailable(uri: str, exc: SchemaUnavailable, where: str
                 ) -> tuple[list[str], list[dict[str, Any]]]:
    if exc.unusable:
        message = badrows.unusable_schema_message(uri, str(exc))
    else:
        message = badrows.resolution_message(uri, exc.lookups, _iso(exc.at))
    return [f"{where}: {exc}"], [message]


class EventChecker:
    """Checks events against the protocol and the schemas of *resolver*."""

    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self._payload_item = resolver.validator(PAYLOAD_DATA)  # raises if not bundled
        items = resolver.document(PAYLOAD_DATA).get("items", {})
        self._protocol_fields = frozenset(items.get("properties", {}))
        self._cache: dict[tuple[str, str], _Decoded] = {}
        self._cache_size = 0  # characters held by the cache
        self._cache_lock = threading.Lock()

    def check(self, raw: Any, api: str = "tp2") -> Checked:
        """The verdict on *raw*, one event as received (*api*: ``tp2`` for an event of a
        POST body, ``tp1`` for a GET's query). Never raises."""
        if not isinstance(raw, dict):
            text = f"an event must be a JSON object, got {type(raw).__name__}"
            return Checked(None, [text], messages=[badrows.protocol_message(
                "data", str(raw)[:1024], "an event must be a JSON object")])
        failures = _Failures()
        checked = raw
        if api != "tp2":  # the pipeline does not check a GET against payload_data
            checked = {k: v for k, v in raw.items() if k in self._protocol_fields}
        found = self._payload_item.errors([checked])[:_MAX_ERRORS]
        if found:
            texts = [_cut(f"{'/'.join(str(p) for p in e.path[1:]) or 'payload_data'}: "
                          f"{e.message}") for e in found]
            trimmed = [ValidationError(e.path[1:], e.message, e.keyword) for e in found]
            failures.texts.extend(texts)
            failures.fields.update(str(e.path[1]) for e in found if len(e.path) > 1)
            failures.messages.append(badrows.validation_message(PAYLOAD_DATA, trimmed, texts))
        # payload_data allows only string values: without its errors, all are strings
        params = raw if not found else {k: v for k, v in raw.items() if isinstance(v, str)}
        for name, value in params.items():
            rule = _RULES.get(name)
            if rule is None:
                continue
            pattern, what, limit = rule  # the length first: patterns see short values only
            if limit is not None and len(value) > limit:
                failures.field(name, f"{name}: longer than {limit} characters ({len(value)})",
                               "atomic_field_length_exceeded")
            elif pattern is not None and pattern.fullmatch(value) is None:
                failures.field(name, f"{name}: {value[:60]!r} is not {what}")
            elif name in _NUMBER_FIELDS and not math.isfinite(float(value)):
                failures.field(name, f"{name}: {value[:60]!r} is beyond the range of a double")
        e = params.get("e")
        if e is not None and e not in EVENT_TYPES:
            failures.field("e", f"e: unknown event type {e[:60]!r} (expected one of "
                                f"{', '.join(EVENT_TYPES)})")
        platform = params.get("p")
        if platform is not None and platform not in PLATFORMS:
            failures.field("p", f"p: unknown platform {platform[:60]!r}")
        if params.get("tv") == "":
            failures.field("tv", "tv: must not be empty")
        for name in _REQUIRED_BY_TYPE.get(e or "", ()):
            if not params.get(name):
                failures.field(name, f"{name}: required for e={e} events", "required")
        schema, contexts = self._self_describing(e, params, failures)
        if not failures.texts:
            return Checked(raw, [], e, schema, contexts)
        return Checked(raw, [_cut(text) for text in failures.texts[:_MAX_ERRORS]], e, schema,
                       contexts,
                       failures.all_messages(), frozenset(failures.fields))

    def _self_describing(self, e: str | None, params: dict[str, str],
                         failures: _Failures) -> tuple[str | None, tuple[str, ...]]:
        ue_fields = [f for f in ("ue_pr", "ue_px") if f in params]
        schema = None
        if len(ue_fields) == 2:
            failures.field("ue_px", "ue_pr, ue_px: an event carries one or the other, not both")
        elif e == "ue" and not ue_fields:
            failures.field("ue_pr", "ue_pr/ue_px: required for e=ue events", "required")
        elif ue_fields and e != "ue":
            failures.field(ue_fields[0], f"{ue_fields[0]}: only e=ue events carry a "
                                         f"self-describing event")
        elif ue_fields:
            decoded = self._decode(ue_fields[0], params[ue_fields[0]])
            failures.decoded(ue_fields[0], decoded)
            schema = decoded.schema
        cx_fields = [f for f in ("co", "cx") if f in params]
        if len(cx_fields) == 2:
            failures.field("cx", "co, cx: an event carries one or the other, not both")
            return schema, ()
        if not cx_fields:
            return schema, ()
        decoded = self._decode(cx_fields[0], params[cx_fields[0]])
        failures.decoded(cx_fields[0], decoded)
        return schema, decoded.contexts

    def _decode(self, name: str, text: str) -> _Decoded:
        key = (name, text)
        with self._cache_lock:
            found = self._cache.get(key)
        if found is None:
            found = self._decode_uncached(name, text)
            if len(text) <= _CACHE_MAX_TEXT:
                size = 200 + len(text) + sum(map(len, found.errors))
                with self._cache_lock:
                    if (len(self._cache) >= _CACHE_SIZE
                            or self._cache_size + size > _CACHE_BUDGET):
                        self._cache.clear()
                        self._cache_size = 0
                    self._cache[key] = found
                    self._cache_size += size
        return found

    def _decode_uncached(self, name: str, text: str) -> _Decoded:
        try:
            value = decode_base64_json(text) if name in ("ue_px", "cx") else load_json(text)
        except ValueError as exc:
            return _Decoded((f"{name}: {exc}",),
                            (badrows.not_json_message(name, text, str(exc)),))
        errors: list[str] = []
        messages: list[dict[str, Any]] = []
        uri = self._envelope(name, value, errors, messages)
        if uri is None:
            return _Decoded(tuple(errors), tuple(messages))
        data = value["data"]
        self._validate(uri, data, name, errors, messages)
        if errors:
            return _Decoded(tuple(errors[:_MAX_ERRORS]), tuple(messages))
        if name.startswith("ue"):
            inner_uri = data["schema"]
            self._validate(inner_uri, data["data"], f"{name}: event", errors, messages)
            return _Decoded(tuple(errors[:_MAX_ERRORS]), tuple(messages), schema=inner_uri)
        schemas = []
        for index, entity in enumerate(data):
            entity_uri = entity["schema"]
            schemas.append(entity_uri)
            self._validate(entity_uri, entity["data"], f"{name}: context {index}", errors,
                           messages)
        return _Decoded(tuple(errors[:_MAX_ERRORS]), tuple(messages), contexts=tuple(schemas))

    @staticmethod
    def _envelope(name: str, value: Any, errors: list[str],
                  messages: list[dict[str, Any]]) -> str | None:
        """The wrapper's schema URI if *value* is ``{"schema": <wrapper>, "data": ...}``."""
        if not isinstance(value, dict) or set(value) != {"schema", "data"}:
            errors.append(f"{name}: not a self-describing JSON (an object with exactly "
                          f"'schema' and 'data')")
            messages.append(badrows.not_iglu_message(value, "INVALID_DATA_PAYLOAD"))
            return None
        uri = value["schema"]
        key = SchemaKey.parse(uri)
        wanted = "unstruct_event" if name.startswith("ue") else "contexts"
        if key is None or key.vendor != "com.snowplowanalytics.snowplow" or key.name != wanted:
            expected = UNSTRUCT_EVENT if wanted == "unstruct_event" else CONTEXTS
            errors.append(f"{name}: schema is {str(uri)[:200]!r}, expected {expected}")
            if key is None:
                messages.append(badrows.not_iglu_message(value, "INVALID_IGLUURI"))
            else:
                messages.append(badrows.criterion_message(
                    key.uri, f"iglu:com.snowplowanalytics.snowplow/{wanted}/jsonschema/1-*-*"))
            return None
        return str(uri)

    def _validate(self, uri: Any, data: Any, where: str, errors: list[str],
                  messages: list[dict[str, Any]]) -> None:
        """Adds the failures of *data* against schema *uri*, each prefixed with *where*."""
        try:
            parse_schema_uri(uri)
        except InvalidSchemaURI as exc:
            errors.append(f"{where}: {exc}")
            messages.append(badrows.not_iglu_message({"schema": uri, "data": data},
                                                     "INVALID_IGLUURI"))
            return
        try:
            validator = self.resolver.validator(uri)
        except SchemaUnavailable as exc:
            texts, found = _unavailable(uri, exc, where)
        else:
            texts, found = _schema_failure(uri, validator.errors(data), f"{where} ({uri}) ")
        errors.extend(texts)
        messages.extend(found)

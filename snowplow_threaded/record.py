"""Records: one event as the engine holds it between ``track()`` and the collector.

A record is ``bytes``: the UTF-8 JSON object of the event's fields, every value a JSON
string, **without its closing brace**, e.g. ``b'{"e":"se","se_ca":"shop",...,"dtm":"17"'``.
The send time ``stm`` is appended when it is sent (:func:`post_body`), so a POST body is
one ``join`` of the batch's records and nothing is encoded on the sender's thread, which
shares the GIL with the application's threads.

Why not a dict of strings (what the engine held before): a structured event's dict of 12
strings takes about 665 bytes (``tracemalloc``; about 1 KB of RSS), its record about 260
(``python -m stress.record_size``), so a buffer of a given size holds 2.5 times the
events, and one memory bound (``buffer_max_bytes``) means memory. Callbacks, GET and the
reference's store protocol get dicts back (:func:`payload_of`); only they pay to decode.

Making a record on the caller's thread (:class:`CommonFields`): the fields a tracker adds
to every event (its subject's and its own) are encoded once; per set of event keys (a
*shape*), a ``%`` template holds them, the keys and slots for the values, ``eid`` and
``dtm``. Filling it gives exactly what the JSON encoder gives whenever no value of the
event's own fields holds a ``"``, a ``\\`` or a character that is not printable (control
characters, and a few more that the C encoder then writes as they are): three C scans of
those values say so. The parts this library encoded itself (base64, digits; JSON text
escaped by the C string encoder) are not scanned. Otherwise the event's fields go through
the C encoder. Text that is not valid Unicode (a lone surrogate) is sent as U+FFFD
(:func:`.payload.wire_text`, which logs it).

Thread-safe: the template caches are dicts read and written under the GIL, bounded, and a
race only builds the same template twice. Nothing here blocks.
"""

from __future__ import annotations

import json
import json.encoder
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .payload import as_text, not_json, wire_text

__all__ = ["BODY_HEAD_SIZE", "PAYLOAD_DATA_SCHEMA", "STM_SIZE", "CommonFields", "Record",
           "body_size", "get_fields", "payload_of", "post_body", "record_of"]

#: An event as the engine holds it (see the module docstring).
Record = bytes

PAYLOAD_DATA_SCHEMA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
_BODY_HEAD = ('{"schema":"' + PAYLOAD_DATA_SCHEMA + '","data":[').encode()

#: fields the engine sets itself: an event's own value for one of them is never sent
OWN_KEYS = frozenset({"eid", "dtm", "stm"})
#: fields that hold JSON text (self-describing data and contexts sent without base64):
#: full of ``"``, so an event with one goes straight to the C encoder
JSON_KEYS = frozenset({"ue_pr", "co"})
#: shapes remembered per :class:`CommonFields` (events of one application have a few)
_SHAPES_MAX = 256


def _c_object_encoder() -> Callable[[Mapping[str, Any]], str]:
    """Compact JSON of a flat dict of strings, non-ASCII kept as text, as ``json.dumps(d,
    separators=(",", ":"), ensure_ascii=False)`` makes it, without a circular-reference
    table (records are flat)."""
    c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
    if c_make_encoder is None:  # pragma: no cover - interpreters without _json
        return json.JSONEncoder(separators=(",", ":"), ensure_ascii=False,
                                check_circular=False).encode
    c_encode = c_make_encoder(None, not_json, json.encoder.encode_basestring, None, ":",
                              ",", False, False, False)
    return lambda fields: "".join(c_encode(fields, 0))


encode_object = _c_object_encoder()


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: sent as U+FFFD (and logged)
        return wire_text(text).encode("utf-8")


def record_of(payload: Mapping[Any, Any]) -> Record:
    """The record of any payload dict: values made text as the protocol sends them
    (:func:`.payload.as_text`). Raises ``ValueError`` for an empty payload, and what
    ``str()`` of a value raises."""
    if not payload:
        raise ValueError("an event payload must hold at least one field")
    fields = {k if type(k) is str else as_text(k): v if type(v) is str else as_text(v)
              for k, v in payload.items()}
    return _utf8(encode_object(fields))[:-1]


def payload_of(record: Record) -> dict[str, str]:
    """The fields of *record* as a dict of strings (what callbacks and GET get)."""
    fields: dict[str, str] = json.loads(record + b"}")
    return fields


def get_fields(record: Record, stm: str) -> dict[str, str]:
    """The query of a GET request for *record*, sent at *stm*."""
    fields = payload_of(record)
    fields["stm"] = stm
    return fields


def post_body(records: Sequence[Record], stm: str) -> bytes:
    """The ``payload_data`` body of a POST of *records* (at least one), sent at *stm*."""
    close = b',"stm":"' + stm.encode("ascii") + b'"}'
    return b"".join((_BODY_HEAD, (close + b",").join(records), close, b"]}"))


#: the bytes of a POST body beyond its records' (:func:`post_body`): the head and ``]}``,
#: and per record ``,"stm":"<13 digits>"}`` and a comma
BODY_HEAD_SIZE = len(_BODY_HEAD) + 2
STM_SIZE = 24


def body_size(records: Iterable[Record]) -> int:
    """The size of :func:`post_body` of *records* (``stm`` of 13 digits: until 2286)."""
    return BODY_HEAD_SIZE - 1 + sum(len(record) + STM_SIZE for record in records)


class CommonFields:
    """The fields one tracker adds to every event (subject and tracker fields), encoded
    once, and the record of an event made from them (:meth:`record`).

    Immutable once built, apart from its template cache (see the module docstring); a
    tracker replaces it as a whole when its subject or fields change."""

    __slots__ = ("_plain", "_shapes", "_text", "fields", "keys", "source")

    def __init__(self, source: object, fields: Mapping[str, str]) -> None:
        #: what these fields were made from (the subject's cached fields): while it is
        #: the same object, this is current
        self.source = source
        self.fields = {k: v for k, v in fields.items() if k not in OWN_KEYS}
        self.keys = frozenset(self.fields) | OWN_KEYS
        text = encode_object(self.fields)[1:-1] if self.fields else ""
        self._plain = (text + ",") if text else ""
        self._text = self._plain.replace("%", "%%")
        #: the keys of an event's fields (then None and the keys of its parts) -> (its
        #: template, whether a part holds JSON text); the template is None when the event
        #: sets a field of ours or of its parts (they win: _encoded) or a key needs escaping
        self._shapes: dict[tuple[str | None, ...], tuple[str | None, bool]] = {}

    def record(self, fields: Mapping[str, str], eid: str, dtm: str,
               parts: Mapping[str, str] | None = None) -> Record:
        """The record of an event whose own fields (exact ``str`` values) are *fields*,
        with this tracker's fields, *eid* and *dtm*. *parts*: the fields this library
        encoded for the event (``e`` of a self-describing event, its data and contexts in
        base64 or as JSON text, ``ttm``), which need no check (their JSON text is escaped
        here) and win over the event's own. The tracker's fields win over the event's,
        as in the reference's payload."""
        if parts is None:
            key: tuple[str | None, ...] = tuple(fields)
            values = (*fields.values(), eid, dtm)
            text = "".join(values)  # eid and dtm are clean: scanned with them, in one go
        else:  # (a part that is also an event field, or a key to escape: no template)
            key = (*fields, None, *parts)
            text = "".join(fields.values())
        shape = self._shapes.get(key) or self._shape(key)
        template = shape[0]
        if (template is not None and text.isprintable() and '"' not in text
                and "\\" not in text):
            if parts is not None:
                values = (*fields.values(), *(parts.values() if not shape[1] else [
                    _escape(v) if k in JSON_KEYS else v for k, v in parts.items()]), eid, dtm)
            try:
                return (template % values).encode("utf-8")
            except UnicodeEncodeError:  # in a part or the tracker's fields: _encoded
                pass
        return self._encoded(fields, eid, dtm, parts)

    def _shape(self, key: tuple[str | None, ...]) -> tuple[str | None, bool]:
        """(template, whether a part holds JSON text to escape) for *key*."""
        template: str | None = None
        split = key.index(None) if None in key else len(key)
        own, parts = key[:split], key[split + 1:]
        if (self.keys.isdisjoint(key) and set(own).isdisjoint(parts)
                and all(type(k) is str and k.isprintable() and '"' not in k
                        and "\\" not in k for k in own + parts)):
            slots = ["\"" + str(k).replace("%", "%%") + '":"%s",' for k in own]
            slots += ["\"" + str(k).replace("%", "%%")
                      + ('":%s,' if k in JSON_KEYS else '":"%s",') for k in parts]
            template = "{" + "".join(slots) + self._text + '"eid":"%s","dtm":"%s"'
        shape = (template, not JSON_KEYS.isdisjoint(parts))
        if len(self._shapes) < _SHAPES_MAX:
            self._shapes[key] = shape
        return shape

    def _encoded(self, fields: Mapping[str, str], eid: str, dtm: str,
                 parts: Mapping[str, str] | None = None) -> Record:
        """The record through the C encoder (the event's own fields; ours are encoded
        already): when a value needs escaping, or the event sets a field of ours."""
        if parts:  # the event's own fields, then the parts (which win)
            fields = {**{k: v for k, v in fields.items() if k not in parts}, **parts}
        if not self.keys.isdisjoint(fields):
            fields = {k: v for k, v in fields.items() if k not in self.keys}
        own = encode_object(fields)[1:-1] if fields else ""
        return _utf8("{" + (own + "," if own else "") + self._plain + '"eid":"' + eid
                     + '","dtm":"' + dtm + '"')


_escape = json.encoder.encode_basestring

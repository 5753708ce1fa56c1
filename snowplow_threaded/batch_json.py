"""The JSON of a batch of records: the ``data`` array of a ``payload_data`` POST body.

A record is a flat dict of strings, so its JSON is a fixed text per *shape* (its keys, in
order) with the values spliced in. :func:`records_json` fills a template per shape with
``%`` and then checks the whole result at once: the text is exactly what the C JSON
encoder makes whenever no key or value holds a ``"``, a ``\\`` or a control character
(U+0000-U+001F), the only characters JSON escapes when non-ASCII text is kept as it is.
Each template holds exactly four ``"`` per field, so with the other characters to escape
mapped to ``"`` too, one count over the UTF-8 bytes finds any of them in the data (UTF-8
never puts those bytes inside a multi-byte character). A batch that fails the check is
encoded by the C encoder.

Why: the C encoder makes a new string object for every key and every value of every
record. Filling templates costs the sender's thread, which shares the GIL with the
application's threads, less per record for the bench's events, and the process less CPU
per delivered event than ``json.dumps`` (``python -m stress.encode_cost``,
``python -m stress.ab``; ``stress/results/encode_cost.md``, ``stress/results/hand_written.md``).

Thread-safe: the template cache is a dict read and written under the GIL, bounded, and a
race only builds the same template twice. Never blocks.
"""

from __future__ import annotations

import json
import json.encoder
from collections.abc import Callable, Sequence

from .payload import as_text, not_json, wire_text
from .typing import PayloadDict

__all__ = ["encode_records", "records_json", "wire_record"]

#: maps every byte a JSON string must escape (control characters, ``\\``) to ``"``
_AS_QUOTE = bytes.maketrans(bytes(range(0x20)) + b"\\", b'"' * 0x21)
#: shape (the keys, in order) -> ``%`` template of a record's JSON object
_TEMPLATES: dict[tuple[str, ...], str] = {}
_TEMPLATES_MAX = 256
#: records per C encoder call in the fallback: between calls the interpreter can hand the
#: GIL to the application's threads (one call over hundreds of records could hold it for a
#: millisecond or more)
_SLICE = 32


def _c_records_encoder() -> Callable[[Sequence[PayloadDict]], str]:
    """Compact JSON of a list of records, non-ASCII kept as text: the C encoder without a
    circular-reference table (records are flat)."""
    c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
    if c_make_encoder is None:  # pragma: no cover - interpreters without _json
        return json.JSONEncoder(separators=(",", ":"), ensure_ascii=False,
                                check_circular=False).encode
    c_encode = c_make_encoder(None, not_json, json.encoder.encode_basestring, None, ":",
                              ",", False, False, False)
    return lambda records: "".join(c_encode(records, 0))


encode_records = _c_records_encoder()


def _template(keys: tuple[str, ...]) -> str:
    template = "{" + ",".join('"' + key.replace("%", "%%") + '":"%s"' for key in keys) + "}"
    if len(_TEMPLATES) < _TEMPLATES_MAX:
        _TEMPLATES[keys] = template
    return template


def _filled(records: Sequence[PayloadDict]) -> tuple[bytes, int]:
    """The records' JSON array from templates, as UTF-8, and how many fields it holds."""
    templates = _TEMPLATES
    parts = [(templates.get(keys := tuple(record)) or _template(keys))
             % tuple(record.values()) for record in records]
    return ("[" + ",".join(parts) + "]").encode("utf-8"), sum(map(len, records))


def _clean(data: bytes, fields: int) -> bool:
    """Whether no key or value in *data* (from :func:`_filled`) needed escaping."""
    return data.translate(_AS_QUOTE).count(b'"') == 4 * fields


def records_json(records: Sequence[PayloadDict]) -> bytes:
    """The compact JSON array of *records* (dicts of strings) as UTF-8 bytes, the same
    bytes as ``json.dumps(records, separators=(",", ":"), ensure_ascii=False)``. Never
    raises for text: a lone surrogate (a ``str`` that is not valid Unicode, which UTF-8
    cannot encode) is sent as U+FFFD, and logged (see :func:`.payload.wire_text`).

    The first record is tried alone first: when it needs escaping (say every event of
    the batch carries JSON that is not base64-encoded), the batch goes straight to the C
    encoder instead of being filled and checked for nothing."""
    try:
        if _clean(*_filled(records[:1])):
            data, fields = _filled(records)
            if _clean(data, fields):
                return data
    except Exception:  # what templates cannot take (a key that is not a string, text that
        pass  # is not valid Unicode): the C encoder decides, as for text to escape
    text = _c_json(records)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return wire_text(text).encode("utf-8")


def _c_json(records: Sequence[PayloadDict]) -> str:
    if len(records) <= _SLICE:
        return encode_records(records)
    return "[" + ",".join([encode_records(records[i:i + _SLICE])[1:-1]
                           for i in range(0, len(records), _SLICE)]) + "]"


def wire_record(record: PayloadDict) -> PayloadDict:
    """*record* as the text of a GET query string: itself if its keys and values are all
    ``str`` that UTF-8 can encode, else a copy made text (:func:`.payload.as_text`, whose
    ``str()`` may raise: the record is then unsendable) and fixed by
    :func:`.payload.wire_text`."""
    for key, value in record.items():
        if type(key) is not str or type(value) is not str or not _utf8(key + value):
            return {wire_text(as_text(key)): wire_text(as_text(value))
                    for key, value in record.items()}
    return record


def _utf8(text: str) -> bool:
    """Whether UTF-8 can encode *text* (no lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True

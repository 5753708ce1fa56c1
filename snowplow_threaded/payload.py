"""Payload: the name/value pairs of one event, and the JSON encoding of its parts.

This module is on the hot path (every ``track()`` call): ``nv_pairs`` holds text from the
start (:class:`PayloadPairs`), and each JSON part is one call of a C encoder built once.
"""

from __future__ import annotations

import binascii
import json
import json.encoder
import logging
from collections.abc import Callable
from typing import Any

from .typing import JsonEncoderFunction, PayloadDict

logger = logging.getLogger("snowplow_threaded.payload")


def not_json(value: Any) -> Any:
    """The ``default`` of an encoder with no ``json_encoder``: what the C encoder meets
    that is not JSON raises ``TypeError`` naming its type, as ``json.dumps`` does."""
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


#: One C-accelerated encoder per ``json_encoder`` (``None`` included): building a
#: ``JSONEncoder`` per call, as ``json.dumps`` does for non-default options, costs more
#: than encoding a small event. Bounded: encoders are keyed by the callables users pass.
_ENCODERS: dict[JsonEncoderFunction | None, Callable[[Any, str], str]] = {}
_ENCODERS_MAX = 64


def _make_encoder(json_encoder: JsonEncoderFunction | None) -> Callable[[Any, str], str]:
    default = json_encoder if json_encoder is not None else not_json
    c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
    if c_make_encoder is None:  # pragma: no cover - interpreters without _json
        encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, default=default)
        return lambda value, what: encoder.encode(value)
    # no circular-reference table: a cycle ends in RecursionError, reported as ValueError
    # (a shared table would be unsafe when a json_encoder lets another thread run)
    c_encode = c_make_encoder(
        None, default, json.encoder.encode_basestring, None, ": ", ", ", False, False, False
    )

    def encode(value: Any, what: str = "") -> str:
        return "".join(c_encode(value, 0))

    return encode


def encoder_for(json_encoder: JsonEncoderFunction | None) -> Callable[[Any, str], str]:
    """A function ``(value, what) -> text`` serialising as :func:`encode_json` does but
    raising the encoder's own errors (thread-safe; cached per *json_encoder*)."""
    encode = _ENCODERS.get(json_encoder)
    if encode is None:
        encode = _make_encoder(json_encoder)
        if len(_ENCODERS) < _ENCODERS_MAX:
            _ENCODERS[json_encoder] = encode
    return encode


def encode_json(
    value: Any, what: str, json_encoder: JsonEncoderFunction | None = None
) -> str:
    """Serialise *value* to JSON text (non-ASCII kept as is, the reference's separators).

    Raises ``TypeError`` naming *what* when a value cannot be serialised (and no
    *json_encoder* handles it), and ``ValueError`` for NaN/Infinity, which are not JSON,
    and for circular references.
    """
    try:
        return encoder_for(json_encoder)(value, what)
    except TypeError as exc:
        raise TypeError(
            f"{what} is not JSON-serialisable ({exc}); pass json_encoder= to the Tracker "
            "or TrackerConfiguration to convert such values"
        ) from exc
    except ValueError as exc:
        raise ValueError(f"{what} cannot be encoded as JSON: {exc}") from exc
    except RecursionError as exc:
        raise ValueError(
            f"{what} cannot be encoded as JSON: circular reference or nesting too deep"
        ) from exc


def b64encode_text(text: str) -> str:
    """URL-safe base64 of the UTF-8 bytes of *text* (padding kept, as the reference does).
    Two ``replace`` calls, not ``translate``: they skip ahead with ``memchr`` between the
    few characters to change, where ``translate`` looks at every one. A lone surrogate is
    encoded as U+FFFD (:func:`wire_text`)."""
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        data = wire_text(text).encode("utf-8")
    return (binascii.b2a_base64(data, newline=False)
            .replace(b"+", b"-").replace(b"/", b"_").decode("ascii"))


def wire_text(text: str) -> str:
    """*text* with every lone surrogate replaced by U+FFFD, so that it can be sent as
    UTF-8. Such a ``str`` is not valid Unicode; it comes from bytes decoded with
    ``surrogateescape``, or from a ``"\\ud800"`` escape in JSON. Logs a warning when it
    replaces anything."""
    fixed = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    if fixed != text:
        logger.warning("an event held text that is not valid Unicode (a lone surrogate); "
                       "it is sent with U+FFFD in its place")
    return fixed


def as_text(value: Any) -> str:
    """*value* as the protocol sends it: itself if a ``str``; the text it holds if an
    instance of a ``str`` subclass (an enum with a ``str`` mixin: ``"red"``, not
    ``"Color.RED"``, as ``json.dumps`` and the reference send it); else its ``str()``.
    Always an exact ``str``, so every encoder of a record writes the same text."""
    if type(value) is str:
        return value
    return str.__str__(value) if isinstance(value, str) else str(value)


class PayloadPairs(dict[str, Any]):
    """``Payload.nv_pairs``: a dict that holds every value as the tracker protocol sends
    it, as text. A value that is not an exact ``str`` is stored as :func:`as_text` makes it
    by item assignment, ``update``, ``setdefault`` and ``|=`` (so ``track()`` needs no
    check of its own; it checks a plain dict assigned to ``nv_pairs`` instead). Reading gives the
    text back: ``pairs["tr_tt"] = 9.5`` reads back ``"9.5"``."""

    __slots__ = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if args or kwargs:
            self.update(*args, **kwargs)

    def __setitem__(self, key: str, value: Any) -> None:
        put_text(self, key, as_text(value))

    def update(self, *args: Any, **kwargs: Any) -> None:
        dict.update(self, {key: as_text(value) for key, value in dict(*args, **kwargs).items()})

    def setdefault(self, key: str, default: Any = None) -> Any:
        return dict.setdefault(self, key, as_text(default))

    def __ior__(self, other: Any) -> PayloadPairs:  # type: ignore[override,misc]
        self.update(other)
        return self


#: Item assignment without :class:`PayloadPairs`' conversion, for values that are text
#: already (``put_text(pairs, "e", "se")``: no Python-level ``__setitem__`` call).
put_text: Callable[[dict[str, Any], str, str], None] = dict.__setitem__
#: ``fill_text(pairs, fields)``: ``update`` without the conversion, for text values (one
#: call for all of an event's fields: cheaper than a ``put_text`` per field).
fill_text: Callable[[dict[str, Any], dict[str, str]], None] = dict.update
_new_pairs = PayloadPairs.__new__  # an empty PayloadPairs, without the __init__ call


class Payload:
    """The name/value pairs of an event (``nv_pairs``, a :class:`PayloadPairs`), as in the
    reference API.

    ``add`` skips ``None`` and ``""``, so optional fields can be added unconditionally.
    """

    __slots__ = ("nv_pairs",)

    def __init__(self, dict_: PayloadDict | None = None) -> None:
        self.nv_pairs: PayloadDict = _new_pairs(PayloadPairs)
        if dict_ is not None:
            self.nv_pairs.update(dict_)

    def add(self, name: str, value: Any) -> None:
        if not (value is None or value == ""):
            put_text(self.nv_pairs, name, value if type(value) is str else as_text(value))

    def add_dict(self, dict_: PayloadDict, base64: bool = False) -> None:
        for name, value in dict_.items():
            self.add(name, value)

    def add_json(
        self,
        dict_: PayloadDict | None,
        encode_base64: bool,
        type_when_encoded: str,
        type_when_not_encoded: str,
        json_encoder: JsonEncoderFunction | None = None,
    ) -> None:
        """Add *dict_* as JSON text, base64-encoded under *type_when_encoded* if asked."""
        if not dict_:
            return
        text = encode_json(dict_, type_when_not_encoded, json_encoder)
        if encode_base64:
            self.nv_pairs[type_when_encoded] = b64encode_text(text)
        else:
            self.nv_pairs[type_when_not_encoded] = text

    def get(self) -> PayloadDict:
        return self.nv_pairs

"""Payload: the name/value pairs of one event, and the JSON encoding of its parts.

This module is on the hot path (every ``track()`` call), so it is plain dict work with one
``json.dumps`` per JSON part.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from .typing import JsonEncoderFunction, PayloadDict


def encode_json(
    value: Any, what: str, json_encoder: JsonEncoderFunction | None = None
) -> str:
    """Serialise *value* to JSON text (non-ASCII kept as is, separators as the reference).

    Raises ``TypeError`` naming *what* when a value cannot be serialised (and no
    *json_encoder* handles it), and ``ValueError`` for NaN/Infinity, which are not JSON.
    """
    try:
        return json.dumps(value, ensure_ascii=False, default=json_encoder, allow_nan=False)
    except TypeError as exc:
        raise TypeError(
            f"{what} is not JSON-serialisable ({exc}); pass json_encoder= to the Tracker "
            "or TrackerConfiguration to convert such values"
        ) from exc
    except ValueError as exc:
        raise ValueError(f"{what} cannot be encoded as JSON: {exc}") from exc


def b64encode_text(text: str) -> str:
    """URL-safe base64 of the UTF-8 bytes of *text* (padding kept, as the reference does)."""
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii")


class Payload:
    """The name/value pairs of an event (``nv_pairs``), as in the reference API.

    ``add`` skips ``None`` and ``""``, so optional fields can be added unconditionally.
    """

    __slots__ = ("nv_pairs",)

    def __init__(self, dict_: PayloadDict | None = None) -> None:
        self.nv_pairs: PayloadDict = {}
        if dict_ is not None:
            self.nv_pairs.update(dict_)

    def add(self, name: str, value: Any) -> None:
        if not (value is None or value == ""):
            self.nv_pairs[name] = value

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

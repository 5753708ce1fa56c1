"""TrackerConfiguration: how a tracker encodes its events."""

from __future__ import annotations

from typing import Any

from .typing import JsonEncoderFunction


class TrackerConfiguration:
    """:param encode_base64: send JSON parts base64-encoded (``ue_px``/``cx``, default) or
        plain (``ue_pr``/``co``)
    :param json_encoder: ``default=`` function for ``json.dumps``, to serialise values
        such as ``datetime`` or ``Decimal``

    Bad values raise ``TypeError`` (the reference silently ignores a non-bool
    ``encode_base64``).
    """

    def __init__(
        self, encode_base64: bool = True, json_encoder: JsonEncoderFunction | None = None
    ) -> None:
        self.encode_base64 = encode_base64
        self.json_encoder = json_encoder

    @property
    def encode_base64(self) -> bool:
        return self._encode_base64

    @encode_base64.setter
    def encode_base64(self, value: Any) -> None:
        if not isinstance(value, bool):
            raise TypeError(f"encode_base64 must be a bool, got {value!r}")
        self._encode_base64 = value

    @property
    def json_encoder(self) -> JsonEncoderFunction | None:
        encoder: JsonEncoderFunction | None = self._json_encoder
        return encoder

    @json_encoder.setter
    def json_encoder(self, value: Any) -> None:
        if value is not None and not callable(value):
            raise TypeError(f"json_encoder must be callable or None, got {value!r}")
        self._json_encoder = value

    def __repr__(self) -> str:
        return (f"TrackerConfiguration(encode_base64={self._encode_base64!r}, "
                f"json_encoder={self._json_encoder!r})")

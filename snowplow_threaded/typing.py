"""Type aliases shared by the public API (names follow ``snowplow_tracker.typing``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Protocol

PayloadDict = dict[str, Any]
PayloadDictList = list[PayloadDict]
JsonEncoderFunction = Callable[[Any], Any]

FORM_NODE_NAMES = frozenset({"INPUT", "TEXTAREA", "SELECT"})
FORM_TYPES = frozenset(
    {
        "button", "checkbox", "color", "date", "datetime", "datetime-local", "email", "file",
        "hidden", "image", "month", "number", "password", "radio", "range", "reset", "search",
        "submit", "tel", "text", "time", "url", "week",
    }
)
FormNodeName = Literal["INPUT", "TEXTAREA", "SELECT"]
ElementClasses = list[str] | tuple[str, ...]
FormClasses = list[str] | tuple[str, ...]
HttpProtocol = Literal["http", "https"]
Method = Literal["get", "post"]
SuccessCallback = Callable[[PayloadDictList], None]
FailureCallback = Callable[[int, PayloadDictList], None]
#: ``on_drop(reason, count)``: *count* events were dropped for *reason* (see EmitterStats)
DropCallback = Callable[[str, int], None]
#: an emitter's (on_success, on_failure, on_drop), as the engine reads them
Callbacks = tuple[SuccessCallback | None, FailureCallback | None, DropCallback | None]
SUPPORTED_PLATFORMS = frozenset({"pc", "tv", "mob", "cnsl", "iot", "web", "srv", "app"})
SupportedPlatform = Literal["pc", "tv", "mob", "cnsl", "iot", "web", "srv", "app"]
RequestTimeout = float | tuple[float, float]


class EmitterProtocol(Protocol):
    """What a :class:`~snowplow_threaded.Tracker` needs from an emitter: ``input()``.
    ``Tracker.flush()`` also calls its ``sync_flush()`` or ``flush()`` if it has them."""

    def input(self, payload: PayloadDict) -> None: ...

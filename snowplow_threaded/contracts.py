"""Argument checks that raise a clear exception at the call site.

Every check names the offending parameter explicitly (no stack inspection), so the message
reads ``ValueError: page_url must be a non-empty string, got ''``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sized
from typing import Any

from .typing import FORM_NODE_NAMES, FORM_TYPES


def non_empty_string(value: Any, name: str) -> str:
    """Return *value* if it is a non-empty ``str`` (one of a subclass, such as a ``str``
    enum, as the text it holds); raise ``ValueError`` otherwise."""
    if type(value) is str and value:
        return value
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return str.__str__(value)


def optional_string(value: Any, name: str) -> None:
    """Accept ``None`` or a ``str``; raise ``TypeError`` otherwise."""
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a string or None, got {type(value).__name__}")


def non_empty(value: Sized, name: str) -> None:
    """Raise ``ValueError`` if *value* is empty."""
    if len(value) == 0:
        raise ValueError(f"{name} must not be empty")


def one_of(value: Any, supported: Iterable[Any], name: str) -> None:
    """Raise ``ValueError`` unless *value* is one of *supported*."""
    allowed = list(supported)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {sorted(map(str, allowed))}, got {value!r}")


def positive_int(value: Any, name: str) -> None:
    """Raise ``TypeError``/``ValueError`` unless *value* is an ``int`` greater than 0."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be greater than 0, got {value}")


def positive_number(value: Any, name: str, *, allow_zero: bool = False) -> None:
    """Raise unless *value* is a real number greater than 0 (or >= 0 with *allow_zero*)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if value < 0 or (value == 0 and not allow_zero) or value != value:
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def finite(value: Any, name: str) -> None:
    """Raise ``ValueError`` if *value* is a float NaN or infinity (not sendable as a number)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")


def optional_timestamp(value: Any, name: str) -> None:
    """Accept ``None`` or a number of milliseconds since the epoch."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of milliseconds or None, got {value!r}")
    finite(value, name)


def form_element(element: Any, name: str = "elements") -> None:
    """Check one element of ``track_form_submit(elements=...)``."""
    if not isinstance(element, Mapping):
        raise ValueError(f"{name}: every element must be a dict, got {element!r}")
    missing = [k for k in ("name", "value", "nodeName") if k not in element]
    if missing:
        raise ValueError(f"{name}: element {element!r} lacks {', '.join(missing)}")
    if element["nodeName"] not in FORM_NODE_NAMES:
        raise ValueError(f"{name}: nodeName must be one of {sorted(FORM_NODE_NAMES)}")
    if "type" in element and element["type"] not in FORM_TYPES:
        raise ValueError(f"{name}: type {element['type']!r} is not an HTML input type")

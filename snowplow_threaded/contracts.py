"""Argument checks that raise a clear exception at the call site.

Every check names the offending parameter explicitly (no stack inspection), so the message
reads ``ValueError: page_url must be a non-empty string, got ''``.

Two kinds:

* **Contracts**: the checks the reference tracker makes with its own contracts (required
  event text, the platform, form node names and types, form elements, search terms,
  screen sizes). :func:`disable_contracts` skips them, as the reference's does: a value
  they would reject is then tracked as given (a missing required field is left out of the
  payload). They cost nothing more while enabled: the switch is read only when a value
  fails.
* **Always**: what guards this library's own correctness and is never skipped: settings
  (endpoint, method, emitter configuration, namespace), types and values that cannot be
  encoded (NaN, non-JSON data), schema URIs.

The switch is process-wide (a module global, read without a lock: a thread sees the old or
the new setting).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sized
from typing import Any

from .payload import as_text
from .typing import FORM_NODE_NAMES, FORM_TYPES

_enabled = True


def disable_contracts() -> None:
    """Skip the contracts (the reference's argument checks; see the module docstring)
    from now on, in every thread of this process."""
    global _enabled
    _enabled = False


def enable_contracts() -> None:
    """Check the contracts again (the default)."""
    global _enabled
    _enabled = True


def contracts_enabled() -> bool:
    return _enabled


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


# -- contracts: skipped while disabled -------------------------------------------------------


def required_text(value: Any, name: str) -> str:
    """A required text field (contract): *value* if a non-empty ``str`` (as
    :func:`non_empty_string`). With contracts disabled any other value is taken as text,
    ``None`` as ``""`` (which the caller leaves out of the payload)."""
    if type(value) is str and value:
        return value
    if _enabled:
        return non_empty_string(value, name)
    return "" if value is None else as_text(value)


def choice(value: Any, supported: Iterable[Any], name: str) -> None:
    """:func:`one_of` as a contract."""
    if _enabled:
        one_of(value, supported, name)


def dimension(value: Any, name: str) -> None:
    """A screen or viewport size (contract): an ``int`` greater than 0."""
    if _enabled:
        positive_int(value, name)


def required_items(value: Sized, name: str) -> None:
    """:func:`non_empty` as a contract."""
    if _enabled:
        non_empty(value, name)


def form_element(element: Any, name: str = "elements") -> None:
    """Check one element of ``track_form_submit(elements=...)`` (contract)."""
    if not _enabled:
        return
    if not isinstance(element, Mapping):
        raise ValueError(f"{name}: every element must be a dict, got {element!r}")
    missing = [k for k in ("name", "value", "nodeName") if k not in element]
    if missing:
        raise ValueError(f"{name}: element {element!r} lacks {', '.join(missing)}")
    if element["nodeName"] not in FORM_NODE_NAMES:
        raise ValueError(f"{name}: nodeName must be one of {sorted(FORM_NODE_NAMES)}")
    if "type" in element and element["type"] not in FORM_TYPES:
        raise ValueError(f"{name}: type {element['type']!r} is not an HTML input type")

"""String formats of JSON Schema draft-04 used by Iglu schemas.

Each checker takes a ``str`` and returns whether it has the format. Pure functions, safe from
any thread. Formats not listed in :data:`FORMATS` are not checked (as the specification
allows).

Where these are stricter than the ``jsonschema`` package's checks (pinned by tests):
``uuid`` must be exactly the 8-4-4-4-12 hex form (``jsonschema`` uses Python's ``UUID()``,
which takes a few other spellings), ``email`` needs text on both sides of a single ``@`` and
no white space (``jsonschema`` only asks for an ``@``), and ``uri`` is checked at all
(``jsonschema`` skips it unless an optional package is installed).
"""

from __future__ import annotations

import calendar
import ipaddress
import re
from collections.abc import Callable

__all__ = ["FORMATS", "is_date_time", "is_email", "is_ipv4", "is_ipv6", "is_uri", "is_uuid"]

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_DATE_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?"
    r"(?:[Zz]|[+-](\d{2}):(\d{2}))"
)
_EMAIL = re.compile(r"[^\s@]+@[^\s@]+")
# RFC 3986 absolute URI: scheme ":" then only characters a URI may hold (or %-escapes).
_URI = re.compile(
    r"[A-Za-z][A-Za-z0-9+.\-]*:(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})*"
)


def is_uuid(text: str) -> bool:
    """``xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`` with hex digits (any case)."""
    return _UUID.fullmatch(text) is not None


def is_date_time(text: str) -> bool:
    """An RFC 3339 ``date-time``: a real calendar date, ``T``, a time (seconds 00-59,
    optional fraction) and ``Z`` or a ``+hh:mm``/``-hh:mm`` offset."""
    match = _DATE_TIME.fullmatch(text)
    if match is None:
        return False
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    if year == 0 or not 1 <= month <= 12 or hour > 23 or minute > 59 or second > 59:
        return False
    if not 1 <= day <= calendar.monthrange(year, month)[1]:
        return False
    off_hour, off_minute = match.group(7), match.group(8)
    return off_hour is None or (int(off_hour) <= 23 and int(off_minute) <= 59)


def is_ipv4(text: str) -> bool:
    """Dotted-quad IPv4 (no leading zeros)."""
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def is_ipv6(text: str) -> bool:
    """An IPv6 address without a zone (``%eth0``) suffix."""
    try:
        address = ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return not address.scope_id


def is_email(text: str) -> bool:
    """``local@domain``: one ``@`` with text on both sides, no white space."""
    return _EMAIL.fullmatch(text) is not None


def is_uri(text: str) -> bool:
    """An absolute URI (a scheme, then only characters RFC 3986 allows)."""
    return _URI.fullmatch(text) is not None


#: Format name -> checker.
FORMATS: dict[str, Callable[[str], bool]] = {
    "date-time": is_date_time,
    "email": is_email,
    "ipv4": is_ipv4,
    "ipv6": is_ipv6,
    "uri": is_uri,
    "uuid": is_uuid,
}

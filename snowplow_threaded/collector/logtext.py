"""Client text made safe for a log line: ``loggable(text)`` escapes what could forge or
break lines (control characters such as newlines and ESC, Unicode line separators, lone
surrogates, and the backslash itself) and cuts it to a bounded length. Pure; thread-safe."""

from __future__ import annotations

import re

__all__ = ["loggable"]

_UNSAFE = re.compile("[\\\\\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\\":
        return "\\\\"
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def loggable(text: object, limit: int = 200) -> str:
    """``str(text)`` escaped and, beyond *limit* characters, cut (saying how long it was)."""
    value = str(text)
    shown = _UNSAFE.sub(_escape, value[:limit])
    return shown if len(value) <= limit else f"{shown}... ({len(value)} characters)"

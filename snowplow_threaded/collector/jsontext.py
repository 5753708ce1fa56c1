"""JSON text from clients: parsed strictly, and in slices the interpreter can switch between.

:func:`load_json` is ``json.loads`` with three differences that matter for a server:

* **strict numbers**: ``NaN``, ``Infinity`` and numbers beyond a double (``1e400``) are
  refused (``json.loads`` takes them, and then nothing can write them back as JSON);
* **lone surrogates** (``"\\ud800"``, valid JSON escapes that no UTF-8 text can hold) become
  U+FFFD, so whatever is parsed can be encoded again;
* **a bounded hold on the interpreter**: ``json.loads`` runs in C without releasing the GIL,
  for about 0.5 s on a 10 MiB body of small objects, stalling every other thread (the
  collector's event loop among them). A text with more than ``_C_BUDGET`` structural
  characters is parsed here instead: containers are opened in Python and each element small
  enough is handed to the C scanner on its own, so no single C call sees more than about
  ``_C_BUDGET`` values. Strings, however long, are scanned by the C string scanner (which is
  linear and fast). Nesting deeper than ``MAX_DEPTH`` is refused on this path.

Pure functions; safe from any thread.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

__all__ = ["MAX_DEPTH", "load_json"]

#: Deepest nesting the sliced parser accepts (the C parser stops near the recursion limit).
MAX_DEPTH = 500
#: Most structural characters (``,``, ``[``, ``{``) one C parse may cover: a few ms.
_C_BUDGET = 20_000
_FIRST_GUESS = 64
_RUN_OPENERS = ("{", "[", '"')
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abAB]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is beyond the range of a double")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


_DECODER = json.JSONDecoder(parse_float=_finite_float, parse_constant=_no_constant)
#: The C scanners behind ``json`` (not in its typed interface): a value at an index, and
#: the rest of a string after its opening quote.
_scan_once: Callable[[str, int], tuple[Any, int]] = _DECODER.scan_once  # type: ignore[attr-defined]
scanstring: Callable[[str, int, bool], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]


def load_json(text: str | bytes) -> Any:
    """Parse *text* (bytes must be UTF-8). Raises ``ValueError`` with the reason for
    anything that is not strict JSON, or is nested too deeply."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("not valid JSON (not UTF-8)") from None
    try:
        if _structure(text, 0, len(text)) <= _C_BUDGET:
            value = _DECODER.decode(text)
        else:
            value = _parse_sliced(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    except ValueError as exc:  # the number hooks, and int() beyond its digit limit
        raise ValueError(f"not valid JSON ({exc})") from None
    if _SURROGATE_ESCAPE.search(text) is not None:
        try:
            value = _repair(value)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None
    return value


def _structure(text: str, start: int, end: int) -> int:
    """An upper bound on the values between *start* and *end*, counted in C (fast)."""
    return (text.count(",", start, end) + text.count("[", start, end)
            + text.count("{", start, end))


def _repair(value: Any) -> Any:
    """*value* with every lone surrogate in its strings (keys too) replaced by U+FFFD."""
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_repair(item) for item in value]
    if isinstance(value, dict):
        return {_LONE_SURROGATE.sub("\ufffd", key): _repair(item)
                for key, item in value.items()}
    return value


def _ws(text: str, pos: int) -> int:
    match = _WHITESPACE.match(text, pos)
    return match.end() if match is not None else pos


def _error(message: str, text: str, pos: int) -> json.JSONDecodeError:
    return json.JSONDecodeError(message, text, pos)


def _parse_sliced(text: str) -> Any:
    """Parse *text* opening large containers in Python (see the module's docstring)."""
    end = len(text)
    containers: list[dict[str, Any] | list[Any]] = []
    keys: list[str] = []  # the pending key of each open object, innermost last
    guess = _FIRST_GUESS
    skip = backoff = 0  # elements to parse one by one before trying a run again
    pos = _ws(text, 0)
    while True:
        char = text[pos:pos + 1]
        value: Any
        parent = containers[-1] if containers else None
        if isinstance(parent, list) and char in _RUN_OPENERS:
            if skip:
                skip -= 1
            else:
                run = _run(text, pos, char)
                if run is not None:  # a run of elements, up to before a comma
                    parent.extend(run[0])
                    pos, backoff = run[1], 0
                    pos = _ws(text, pos + 1)
                    continue
                backoff = min(2 * backoff + 1, 1024)
                skip = backoff
        if char == '"':
            value, pos = scanstring(text, pos + 1, True)
        elif char in ("{", "["):
            parsed = _bounded(text, pos, guess)
            if parsed is None:  # too many values for one C call: open it here
                if len(containers) >= MAX_DEPTH:
                    raise RecursionError
                closing = "}" if char == "{" else "]"
                pos = _ws(text, pos + 1)
                if text[pos:pos + 1] == closing:
                    value, pos = ({} if char == "{" else []), pos + 1
                else:
                    containers.append({} if char == "{" else [])
                    if char == "{":
                        pos = _key(text, pos, keys)
                    continue
            else:
                value, size, pos = parsed
                guess = max(_FIRST_GUESS, 2 * size)
        else:
            try:
                value, pos = _scan_once(text, pos)
            except StopIteration:
                raise _error("Expecting value", text, pos) from None
        while True:  # attach the value; close the containers it ends
            if not containers:
                pos = _ws(text, pos)
                if pos != end:
                    raise _error("Extra data", text, pos)
                return value
            parent = containers[-1]
            if isinstance(parent, dict):
                parent[keys.pop()] = value
            else:
                parent.append(value)
            pos = _ws(text, pos)
            char = text[pos:pos + 1]
            if char == ",":
                pos = _ws(text, pos + 1)
                if isinstance(parent, dict):
                    pos = _key(text, pos, keys)
                break
            if char == ("}" if isinstance(parent, dict) else "]"):
                value, pos = containers.pop(), pos + 1
                continue
            raise _error("Expecting ',' delimiter", text, pos)


def _key(text: str, pos: int, keys: list[str]) -> int:
    """Read ``"key" :`` at *pos* onto *keys*; the position of the value after it."""
    if text[pos:pos + 1] != '"':
        raise _error("Expecting property name enclosed in double quotes", text, pos)
    key, pos = scanstring(text, pos + 1, True)
    pos = _ws(text, pos)
    if text[pos:pos + 1] != ":":
        raise _error("Expecting ':' delimiter", text, pos)
    keys.append(key)
    return _ws(text, pos + 1)


def _run(text: str, pos: int, opener: str) -> tuple[list[Any], int] | None:
    """Several elements of an open array parsed by one C call: the text from *pos* up to
    the last ``,<opener>`` within ``_C_BUDGET`` characters, closed with ``]``. That parses
    to its end only when the comma separates elements of this array (inside a string or a
    nested container the text stays unterminated; after this array's own end the added
    ``]`` is not reached), so a success is exact. Returns the elements and
    the position of that comma, or None."""
    window = text[pos:pos + _C_BUDGET - 1]  # with the "[" added: at most the budget
    cut = max(window.rfind("," + opener), window.rfind(", " + opener))
    if cut <= 0:
        return None
    candidate = "[" + window[:cut] + "]"
    try:
        values, end = _scan_once(candidate, 0)
    except (StopIteration, ValueError, RecursionError):
        return None
    if end != len(candidate):  # the text closed this array earlier: not a run of it
        return None
    assert isinstance(values, list)
    return values, pos + cut


def _bounded(text: str, pos: int, guess: int) -> tuple[Any, int, int] | None:
    """The container at *pos* parsed by one C call, with its length and end, if it holds
    at most ``_C_BUDGET`` values; None if it holds more (or nests too deeply for C)."""
    end = len(text)
    size = guess
    while True:
        stop = min(end, pos + size)
        if stop - pos > _C_BUDGET and _structure(text, pos, stop) > _C_BUDGET:
            return None
        try:
            if stop < end:  # a slice: fails if the container goes on past it
                value, length = _scan_once(text[pos:stop], 0)
            else:
                value, after = _scan_once(text, pos)
                length = after - pos
        except RecursionError:
            return None
        except (StopIteration, ValueError) as exc:  # a value cut off, or an error
            if stop < end:
                size *= 2
                continue
            if isinstance(exc, StopIteration):  # no value where one must be
                raise _error("Expecting value", text, exc.value) from None
            raise
        return value, length, pos + length

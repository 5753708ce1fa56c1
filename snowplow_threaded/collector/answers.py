"""JSON answers of the Micro API: small ones whole, lists of events streamed.

A list answer is a :class:`.Response` whose ``stream`` yields the JSON array in pieces of
about ``PIECE_BYTES``, each item converted (``to_micro()``...) and encoded only when the
server asks for the next piece, on its worker thread, once the client has taken the
previous ones. However many events the store holds, an answer holds one piece in memory,
never runs on the event loop, and a client that stops reading stops the work.

``?offset=N&limit=M`` on a list route (and ``offset`` beside ``limit`` in a POST's
filters) pages through it: the list is filtered, then ``offset`` items skipped, then at
most ``limit`` sent.

Every answer is strict JSON (``allow_nan=False``; the parsers keep non-finite numbers out,
and an item that still cannot be encoded is sent as ``null`` and logged). Pure functions
and generators: safe from any thread, one generator used by one thread at a time.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any, TypeVar

from .http_types import Response

__all__ = ["PIECE_BYTES", "json_response", "page", "stream_response"]

logger = logging.getLogger("snowplow_threaded.collector.api")

#: About how many bytes of an answer are encoded per step.
PIECE_BYTES = 64 * 1024
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
T = TypeVar("T")


def json_response(value: Any, status: int = 200) -> Response:
    """A whole (small) JSON answer."""
    return Response(status, _encode(value).encode("utf-8", "replace"), "application/json")


def page(items: Iterable[T], offset: int | None = None,
         limit: int | None = None) -> Iterator[T]:
    """*items* after the first *offset*, at most *limit* of them (lazily)."""
    start = offset or 0
    return islice(items, start, None if limit is None else start + limit)


def stream_response(items: Iterable[T], convert: Callable[[T], Any]) -> Response:
    """A JSON array of ``convert(item)`` for each item, streamed (see the module)."""
    return Response(200, content_type="application/json", stream=_pieces(items, convert))


def _pieces(items: Iterable[T], convert: Callable[[T], Any]) -> Iterator[bytes]:
    parts = [b"["]
    size = 1
    separator = b""
    for item in items:
        try:
            encoded = _encode(convert(item)).encode("utf-8", "replace")
        except (ValueError, TypeError) as exc:  # defensive: nothing should get here
            logger.error("an event cannot be written as JSON (%s); sent as null", exc)
            encoded = b"null"
        parts.append(separator + encoded)
        separator = b","
        size += len(encoded) + 1
        if size >= PIECE_BYTES:
            yield b"".join(parts)
            parts, size = [], 0
    parts.append(b"]")
    yield b"".join(parts)

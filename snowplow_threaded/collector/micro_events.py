"""``POST /micro/events``: Snowplow Micro 4.x's filtered, sorted and paged list of events.

The request (all keys as Micro names them)::

    {"filters": [{"column": "app_id", "values": ["shop", "admin"]}, ...],
     "validEvents": true,                    # optional: true valid only, false failed only
     "timeRange": {"start": "2024-05-01T00:00:00Z", "end": "..."},   # optional, each too
     "sorting": {"column": "collector_tstamp", "desc": true},        # optional
     "page": 1, "pageSize": 50}

and the answer ``{"events": [...], "totalPages": N, "totalItems": N}``. The events are the
canonical events of the good events and of the events that failed (Micro's "incomplete"
events, with ``failure`` entities in ``derived_contexts``), most recent first, in the flat
form of :func:`.canonical.shredded`. As in Micro: a filter keeps events whose column equals
one of its non-empty values ignoring case (all filters must hold); the time range is on
``collector_tstamp``, start included, end excluded; sorting compares the columns' text,
absent columns last (first when descending); filters and sorting on ``contexts_*`` and
``unstruct_event*`` columns are ignored; ``totalPages`` is at least 1.
"""

from __future__ import annotations

import datetime
import heapq
import json
from collections.abc import Sequence
from typing import Any

from .canonical import shredded
from .protocol import load_json
from .store import BadEvent, GoodEvent

__all__ = ["BadRequest", "events_page"]


class BadRequest(ValueError):
    """A request body the API cannot use (answered ``400`` with this message)."""


def _complex(column: str) -> bool:
    return column.startswith(("contexts_", "unstruct_event"))


def _text_of(event: dict[str, Any], column: str) -> str | None:
    """A column's value as Micro compares it: strings as they are, other JSON as JSON text,
    ``None`` only when the column is absent."""
    if column not in event:
        return None
    value = event[column]
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _instant(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{where} must be an ISO-8601 instant")
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"{where} must be an ISO-8601 instant, got {value[:60]!r}") from None
    if moment.tzinfo is None:
        raise BadRequest(f"{where} must be an instant with a time zone (e.g. Z)")
    return moment.timestamp()


def _int(request: dict[str, Any], name: str) -> int:
    value = request.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadRequest(f"{name} must be an integer")
    return value


def _parse(body: bytes) -> dict[str, Any]:
    try:
        request = load_json(body)
    except ValueError as exc:
        raise BadRequest(f"the request is {exc}") from None
    if not isinstance(request, dict):
        raise BadRequest("the request must be a JSON object with filters, page and pageSize")
    filters = request.get("filters")
    if not isinstance(filters, list) or not all(
            isinstance(f, dict) and isinstance(f.get("column"), str)
            and isinstance(f.get("values"), list)
            and all(isinstance(v, str) for v in f["values"]) for f in filters):
        raise BadRequest("filters must be a list of {\"column\": string, \"values\": [string]}")
    valid = request.get("validEvents")
    if valid is not None and not isinstance(valid, bool):
        raise BadRequest("validEvents must be true, false or null")
    time_range = request.get("timeRange")
    if time_range is not None and not isinstance(time_range, dict):
        raise BadRequest("timeRange must be an object with start and end")
    sorting = request.get("sorting")
    if sorting is not None and not (isinstance(sorting, dict)
                                    and isinstance(sorting.get("column"), str)
                                    and isinstance(sorting.get("desc"), bool)):
        raise BadRequest("sorting must be {\"column\": string, \"desc\": boolean}")
    return {"filters": filters, "validEvents": valid,
            "start": _instant((time_range or {}).get("start"), "timeRange.start"),
            "end": _instant((time_range or {}).get("end"), "timeRange.end"),
            "sorting": sorting, "page": _int(request, "page"),
            "pageSize": _int(request, "pageSize")}


def _quot(a: int, b: int) -> int:
    """Integer division truncating toward zero (Java's), as Micro computes pages."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _column_text(event: dict[str, Any], column: str) -> str | None:
    """:func:`_text_of` the event's flat form (:func:`.canonical.shredded`) for a column
    that is not ``contexts_*``/``unstruct_event*``, read from the canonical event without
    making that form: the flat form has every atomic column as it is, and not the three
    nested ones."""
    if column in _NESTED:
        return None
    return _text_of(event, column)


_NESTED = frozenset({"contexts", "derived_contexts", "unstruct_event"})


def events_page(good: Sequence[GoodEvent], bad: Sequence[BadEvent], body: bytes
                ) -> dict[str, Any]:
    """Micro's answer to ``POST /micro/events`` with *body*, over *good* and *bad* (each
    oldest first, as the store gives them). Raises :class:`BadRequest`.

    Memory is bounded by the page, not the store: each event's canonical form is made,
    judged by the filters and let go; only a sort key and the event's place are kept for
    the matches, and the flat form is made for the page's events alone."""
    request = _parse(body)
    valid, start, end = request["validEvents"], request["start"], request["end"]
    sources: list[Sequence[GoodEvent | BadEvent]] = []
    if valid is not False:
        sources.append(good)
    if valid is not True:
        sources.append([b for b in bad if b.parameters is not None])
    merged = heapq.merge(*(reversed(s) for s in sources), key=lambda e: -e.received_at)
    filters = [({v.lower() for v in spec["values"] if v}, spec["column"])
               for spec in request["filters"]]
    filters = [(wanted, column) for wanted, column in filters
               if wanted and not _complex(column)]
    sorting = request["sorting"]
    sort_by = (sorting["column"] if sorting is not None and not _complex(sorting["column"])
               else None)
    matches: list[tuple[str | None, GoodEvent | BadEvent]] = []
    for item in merged:
        if (start is not None and item.received_at < start) or (
                end is not None and item.received_at >= end):
            continue
        event = item.event
        if event is None or not all(
                (value := _column_text(event, column)) is not None
                and value.lower() in wanted for wanted, column in filters):
            continue
        matches.append((None if sort_by is None else _column_text(event, sort_by), item))
    if sort_by is not None:
        desc = bool(sorting and sorting["desc"])
        present = [m for m in matches if m[0] is not None]
        absent = [m for m in matches if m[0] is None]
        present.sort(key=lambda m: m[0] or "", reverse=desc)  # stable: newest first on ties
        matches = absent + present if desc else present + absent
    total, size, page = len(matches), request["pageSize"], request["page"]
    pages = max(1, _quot(total + size - 1, max(size, 1)))
    first = (page - 1) * size
    chosen = matches[max(first, 0):max(min(first + size, total), 0)] if first < total else []
    events = [shredded(event) for _, item in chosen if (event := item.event) is not None]
    return {"events": events, "totalPages": pages, "totalItems": total}

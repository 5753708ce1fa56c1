"""The REST API of Snowplow Micro, over the collector's store.

* ``GET|POST /micro/all``: ``{"total", "good", "bad"}``, the events held now.
* ``GET /micro/good``: every good event, most recent first; ``POST`` with a JSON object of
  filters, all optional: ``event_type`` (``struct``, ``page_view``, ``unstruct``...),
  ``schema``, ``contexts`` (schemas the event must all carry), ``limit`` (most recent N; a
  negative one gives none, as in Micro). An empty or non-object body is ``400``.
* ``GET /micro/bad``: every bad event, most recent first; ``POST`` with ``vendor``,
  ``version`` (of the request's API: ``com.snowplowanalytics.snowplow`` / ``tp2`` or
  ``tp1``) and ``limit``.
* ``GET|POST /micro/reset``: forget everything; answers ``Reset completed``.
* ``POST /micro/events`` (Micro 4.x, see :mod:`.micro_events`): the canonical events of good
  and failed (incomplete) events, filtered, sorted and paged. ``GET /micro/events`` (ours):
  the canonical events of the good events, most recent first.
* ``GET /micro/iglu/VENDOR/NAME/jsonschema/VERSION``: a schema the collector knows.

Runs on the server's loop thread; reads the (thread-safe) store.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .http_types import Request, Response
from .iglu import Resolver, SchemaUnavailable
from .micro_events import BadRequest, events_page
from .protocol import load_json
from .store import BadEvent, EventStore, GoodEvent

__all__ = ["MicroApi"]

_ENDPOINTS = ("/micro/all, /micro/good, /micro/bad, /micro/events, /micro/reset, "
              "/micro/iglu/VENDOR/NAME/jsonschema/VERSION")
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def json_response(value: Any, status: int = 200) -> Response:
    return Response(status, _encode(value).encode("utf-8"), "application/json")


def _text(status: int, message: str, newline: bool = True) -> Response:
    body = message + "\n" if newline else message
    return Response(status, body.encode("utf-8"), "text/plain; charset=UTF-8")


_BadFilter = BadRequest


def _filters(request: Request, allowed: dict[str, type]) -> dict[str, Any]:
    """The filter object of a POST body. As in Micro, the body must be a JSON object
    (``{}`` for no filters); unknown keys and nulls are ignored."""
    if not request.body.strip():
        raise _BadFilter("the filters must be a JSON object, got an empty body (send {} "
                         "for none)")
    try:
        value = load_json(request.body)
    except ValueError as exc:
        raise _BadFilter(f"the filters are {exc}") from None
    if not isinstance(value, dict):
        raise _BadFilter("the filters must be a JSON object")
    found: dict[str, Any] = {}
    for name, kind in allowed.items():
        item = value.get(name)
        if item is None:
            continue
        if kind is int:
            if not isinstance(item, int) or isinstance(item, bool):
                raise _BadFilter(f"{name} must be an integer")
        elif kind is list:
            if not isinstance(item, list) or not all(isinstance(s, str) for s in item):
                raise _BadFilter(f"{name} must be a list of strings")
        elif not isinstance(item, str):
            raise _BadFilter(f"{name} must be a string")
        found[name] = item
    return found


def _limit(events: Sequence[Any], filters: dict[str, Any]) -> list[Any]:
    limit = filters.get("limit")
    return list(events if limit is None else events[:max(limit, 0)])


def filter_good(events: Sequence[GoodEvent], filters: dict[str, Any]) -> list[GoodEvent]:
    """Micro's good-event filters over *events* (most recent first)."""
    event_type, schema = filters.get("event_type"), filters.get("schema")
    contexts = filters.get("contexts") or []
    kept = [e for e in events
            if (event_type is None or e.event_type == event_type)
            and (schema is None or e.schema == schema)
            and all(c in e.contexts for c in contexts)]
    return _limit(kept, filters)


def filter_bad(events: Sequence[BadEvent], filters: dict[str, Any]) -> list[BadEvent]:
    """Micro's bad-event filters over *events* (most recent first)."""
    vendor, version = filters.get("vendor"), filters.get("version")
    kept = [e for e in events
            if (vendor is None or vendor == "com.snowplowanalytics.snowplow")
            and (version is None or e.request.api_version == version)]
    return _limit(kept, filters)


class MicroApi:
    """Answers ``/micro/...`` requests from *store* (schemas from *resolver*)."""

    def __init__(self, store: EventStore, resolver: Resolver) -> None:
        self.store = store
        self.resolver = resolver

    def handle(self, request: Request) -> Response:
        parts = request.path.rstrip("/").split("/")[2:]  # after "/micro"
        method = request.method if request.method != "HEAD" else "GET"
        name = parts[0] if parts else ""
        try:
            if name == "all" and len(parts) == 1 and method in ("GET", "POST"):
                return json_response(self.store.summary().as_micro())
            if name == "reset" and len(parts) == 1 and method in ("GET", "POST"):
                self.store.reset()
                return _text(200, "Reset completed", newline=False)
            if name == "good" and len(parts) == 1 and method in ("GET", "POST"):
                filters = {} if method == "GET" else _filters(
                    request, {"event_type": str, "schema": str, "contexts": list,
                              "limit": int})
                good = self.store.good()[::-1]
                return json_response([e.to_micro() for e in filter_good(good, filters)])
            if name == "bad" and len(parts) == 1 and method in ("GET", "POST"):
                filters = {} if method == "GET" else _filters(
                    request, {"vendor": str, "version": str, "limit": int})
                bad = self.store.bad()[::-1]
                return json_response([e.to_micro() for e in filter_bad(bad, filters)])
            if name == "events" and len(parts) == 1 and method == "GET":
                return json_response([e.event for e in self.store.good()[::-1]])
            if name == "events" and len(parts) == 1 and method == "POST":
                return json_response(events_page(self.store.good(), self.store.bad(),
                                                 request.body))
            if name == "iglu" and len(parts) == 5 and method == "GET":
                return self._schema(parts[1:])
        except _BadFilter as exc:
            return _text(400, str(exc))
        return _text(404, f"unknown endpoint {request.method} {request.path}; "
                          f"supported: {_ENDPOINTS}")

    def _schema(self, parts: list[str]) -> Response:
        uri = "iglu:" + "/".join(parts)
        try:
            return json_response(self.resolver.document(uri))
        except SchemaUnavailable as exc:
            return _text(404, str(exc))

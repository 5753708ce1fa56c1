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
* ``GET /micro/iglu/VENDOR/NAME/jsonschema/VERSION``: a schema the collector knows (``400``
  for a name that is not a valid Iglu URI, see :func:`.iglu.parse_schema_uri`).

The lists (``/micro/good``, ``/micro/bad``, ``GET /micro/events``) are streamed and page
with ``?offset=N&limit=M`` on a GET (``offset`` beside ``limit`` in a POST's filters): see
:mod:`.answers`. ``HEAD /micro/reset`` is refused (a HEAD changes nothing). Runs on the
server's worker thread; reads the (thread-safe) store.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import parse_qsl

from .answers import json_response, page, stream_response
from .event_log import EventLog
from .http_types import Request, Response
from .iglu import InvalidSchemaURI, Resolver, SchemaUnavailable, parse_schema_uri
from .logtext import loggable
from .micro_events import BadRequest, events_page
from .protocol import load_json
from .store import BadEvent, GoodEvent

__all__ = ["MicroApi"]

_ENDPOINTS = ("/micro/all, /micro/good, /micro/bad, /micro/events, /micro/reset, "
              "/micro/iglu/VENDOR/NAME/jsonschema/VERSION")
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


def filter_good(events: Iterable[GoodEvent], filters: dict[str, Any]) -> Iterator[GoodEvent]:
    """Micro's good-event filters over *events* (most recent first), lazily; ``offset``
    and ``limit`` page the result. The ``contexts`` filter is a set: a list of 100 000
    copies of a schema costs what one does."""
    event_type, schema = filters.get("event_type"), filters.get("schema")
    contexts = frozenset(filters.get("contexts") or ())
    kept = (e for e in events
            if (event_type is None or e.event_type == event_type)
            and (schema is None or e.schema == schema)
            and (not contexts or contexts.issubset(e.contexts)))
    return _page(kept, filters)


def filter_bad(events: Iterable[BadEvent], filters: dict[str, Any]) -> Iterator[BadEvent]:
    """Micro's bad-event filters over *events* (most recent first), lazily."""
    vendor, version = filters.get("vendor"), filters.get("version")
    kept = (e for e in events
            if (vendor is None or vendor == "com.snowplowanalytics.snowplow")
            and (version is None or e.request.api_version == version))
    return _page(kept, filters)


def _page(events: Iterable[Any], filters: dict[str, Any]) -> Iterator[Any]:
    """``offset`` then ``limit`` (a negative limit gives none, as in Micro)."""
    offset, limit = filters.get("offset"), filters.get("limit")
    return page(events, max(offset or 0, 0), None if limit is None else max(limit, 0))


def _paging(request: Request) -> dict[str, Any]:
    """``offset`` and ``limit`` from a GET's query string."""
    found: dict[str, Any] = {}
    for name, value in parse_qsl(request.query, max_num_fields=20):
        if name in ("offset", "limit"):
            if not value.isdigit() or len(value) > 12:
                raise _BadFilter(f"{name} must be a non-negative integer")
            found[name] = int(value)
    return found


class MicroApi:
    """Answers ``/micro/...`` requests from *store* (schemas from *resolver*)."""

    def __init__(self, store: EventLog, resolver: Resolver) -> None:
        self.store = store
        self.resolver = resolver

    def handle(self, request: Request) -> Response:
        parts = request.path.rstrip("/").split("/")[2:]  # after "/micro"
        method = request.method if request.method != "HEAD" else "GET"
        name = parts[0] if parts else ""
        try:
            if name == "all" and len(parts) == 1 and method in ("GET", "POST"):
                return json_response(self.store.summary().as_micro())
            if name == "reset" and request.method == "HEAD":  # HEAD must change nothing
                return Response(405, b"use GET or POST\n", "text/plain",
                                (("Allow", "GET, POST"),))
            if name == "reset" and len(parts) == 1 and method in ("GET", "POST"):
                self.store.reset()
                return _text(200, "Reset completed", newline=False)
            if name == "good" and len(parts) == 1 and method in ("GET", "POST"):
                filters = _paging(request) if method == "GET" else _filters(
                    request, {"event_type": str, "schema": str, "contexts": list,
                              "limit": int, "offset": int})
                good = self.store.iter_good(newest_first=True)
                return stream_response(filter_good(good, filters), GoodEvent.to_micro)
            if name == "bad" and len(parts) == 1 and method in ("GET", "POST"):
                filters = _paging(request) if method == "GET" else _filters(
                    request, {"vendor": str, "version": str, "limit": int, "offset": int})
                bad = self.store.iter_bad(newest_first=True)
                return stream_response(filter_bad(bad, filters), BadEvent.to_micro)
            if name == "events" and len(parts) == 1 and method == "GET":
                events = _page(self.store.iter_good(newest_first=True), _paging(request))
                return stream_response(events, _canonical)
            if name == "events" and len(parts) == 1 and method == "POST":
                return json_response(events_page(self.store.good(), self.store.bad(),
                                                 request.body))
            if name == "iglu" and len(parts) == 5 and method == "GET":
                return self._schema(parts[1:])
        except _BadFilter as exc:
            return _text(400, str(exc))
        return _text(404, f"unknown endpoint {request.method} {loggable(request.path, 100)}; "
                          f"supported: {_ENDPOINTS}")

    def _schema(self, parts: list[str]) -> Response:
        try:
            uri = parse_schema_uri("iglu:" + "/".join(parts)).uri
        except InvalidSchemaURI as exc:
            return _text(400, str(exc))
        try:
            return json_response(self.resolver.document(uri))
        except SchemaUnavailable as exc:
            return _text(404, str(exc))


def _canonical(event: GoodEvent) -> dict[str, Any]:
    return event.event

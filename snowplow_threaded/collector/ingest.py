"""The tracker-protocol routes: requests in, good and bad events into the store, answered as
the Snowplow collector answers them.

* ``POST [prefix]/com.snowplowanalytics.snowplow/tp2``: a JSON body
  ``{"schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-x",
  "data": [event, ...]}``; fields of the query string are added to every event (they win, as
  in the pipeline). Every event is judged on its own. A body that is not that (wrong
  ``Content-Type``, not UTF-8, not JSON, another schema, no events) is kept as one bad event
  whose bad row is a ``tracker_protocol_violations``. Always answered ``200 ok``: the
  collector does not read bodies (it is the pipeline that sorts good from bad).
* ``GET [prefix]/i?<event fields>`` (``tp1``), and ``GET .../tp2?<event fields>`` (``tp2``):
  one event; always answered with a 1x1 GIF (``200``), a bad event if the query string is
  empty or cannot be decoded.

Every answer carries the ``sp`` cookie with the network user id, as the collector sets it
(the request's own ``sp`` cookie, else a new UUID); it is also the events'
``network_userid`` unless they carry ``tnuid``/``nuid``. A request with an ``SP-Anonymous``
header is anonymous, as in the collector: its IP address becomes ``unknown``, its
``X-Forwarded-For``, ``X-Real-Ip`` and ``Cookie`` headers are not kept, its network user id is
the all-zero UUID and no cookie is set (one the browser sent is expired).

Runs on the server's worker thread (an :class:`Ingestor` is used by one thread at a time;
the store is thread-safe). Client text is escaped and cut before it is logged.
"""

from __future__ import annotations

import email.utils
import logging
import time
import uuid
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qsl

from . import badrows
from .canonical import event_schema
from .event_log import EventLog
from .http_types import Request, Response
from .iglu import SchemaKey
from .logtext import loggable
from .protocol import EVENT_TYPES, EventChecker, load_json
from .store import BadEvent, GoodEvent, RequestInfo

__all__ = ["ANONYMOUS_NUID", "COOKIE_NAME", "PIXEL", "Ingestor"]

logger = logging.getLogger("snowplow_threaded.collector.ingest")

#: The transparent 1x1 GIF a collector answers ``GET /i`` with.
PIXEL = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00"
         b"\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")
#: The collector's cookie (its default name) and the network user id of anonymous requests.
COOKIE_NAME = "sp"
ANONYMOUS_NUID = "00000000-0000-0000-0000-000000000000"
_COOKIE_DAYS = 365
_ANONYMOUS_DROPS = ("x-forwarded-for:", "x-real-ip:", "cookie:")
_MAX_FIELDS = 1000
_SLICE = 1000
_PAYLOAD_VERSIONS = ("1-0-0", "1-0-1", "1-0-2", "1-0-3", "1-0-4")
_PIXEL_HEADERS = (("Cache-Control", "no-cache, no-store, must-revalidate"),)


class Ingestor:
    """Judges tracker requests with *checker* and keeps the verdicts in *store*.

    :param body_keep: characters of a request's body kept with its bad events
    """

    def __init__(self, checker: EventChecker, store: EventLog, body_keep: int = 16384) -> None:
        self.checker = checker
        self.store = store
        self.body_keep = body_keep

    def post(self, request: Request) -> Response:
        """``POST .../tp2``."""
        user = _NetworkUser(request)
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/json":
            got = request.headers.get("content-type")
            self._reject(request, user, "tp2", f"Content-Type must be application/json, got "
                         f"{got or 'none'!r}", "contentType", got)
            return user.answer(_ok())
        try:
            text = request.body.decode("utf-8")
            payload = load_json(text)
        except UnicodeDecodeError:
            self._reject(request, user, "tp2", "the body is not UTF-8")
            return user.answer(_ok())
        except ValueError as exc:
            self._reject(request, user, "tp2", f"the body is {exc}", not_json=str(exc))
            return user.answer(_ok())
        problem = _payload_problem(payload)
        if problem:
            self._reject(request, user, "tp2", problem)
            return user.answer(_ok())
        events: list[Any] = payload["data"]
        if request.query:
            extra = dict(_query_pairs(request.query) or ())
            events = [{**e, **extra} if isinstance(e, dict) else e for e in events]
        self._judge(events, request, user, "tp2", "tp2")
        return user.answer(_ok())

    def get(self, request: Request, api_version: str = "tp1") -> Response:
        """``GET .../i`` (*api_version* ``tp1``) or ``GET .../tp2`` (``tp2``)."""
        user = _NetworkUser(request)
        pairs = _query_pairs(request.query)
        if pairs is None:
            self._reject(request, user, api_version, "the query string cannot be decoded",
                         "querystring", request.query)
        elif not pairs:
            self._reject(request, user, api_version, "no event fields in the query string",
                         "querystring", None)
        else:
            self._judge([dict(pairs)], request, user, api_version, "tp1")
        return user.answer(Response(200, PIXEL, "image/gif", _PIXEL_HEADERS))

    def _info(self, request: Request, user: _NetworkUser, api_version: str,
              body: str | None = None) -> RequestInfo:
        headers = request.headers
        lines = request.header_lines
        if user.anonymous:
            ip: str | None = "unknown"
            lines = tuple(h for h in lines if not h.lower().startswith(_ANONYMOUS_DROPS))
        else:
            ip = headers.get("x-forwarded-for", "").split(",")[0].strip() or request.peer
        return RequestInfo(
            api_version=api_version, method=request.method, path=request.path,
            query=request.query, content_type=headers.get("content-type"), ip=ip,
            useragent=headers.get("user-agent"), referer=headers.get("referer"),
            hostname=headers.get("host"), headers=lines, timestamp=time.time(), body=body,
            network_user_id=user.nuid)

    def _body(self, request: Request) -> str | None:
        if not request.body:
            return None
        return request.body[: self.body_keep * 4].decode("utf-8", "replace")[: self.body_keep]

    def _reject(self, request: Request, user: _NetworkUser, api_version: str, reason: str,
                field: str = "body", value: str | None = None,
                not_json: str | None = None) -> None:
        """Keep a request whose events cannot be read as one bad event."""
        body = self._body(request)
        if not_json is not None:
            message = badrows.not_json_message("body", body or "", not_json)
        else:
            message = badrows.protocol_message(field, value if field != "body" else body,
                                               reason)
        info = self._info(request, user, api_version, body)
        self.store.add(bad=[BadEvent((reason,), None, info, (message,))])
        logger.info("bad request %s %s: %s", request.method, loggable(request.path),
                    loggable(reason))

    def _judge(self, events: list[Any], request: Request, user: _NetworkUser,
               api_version: str, check_as: str) -> None:
        """Judge *events* and keep them, ``_SLICE`` at a time: a batch of 300 000 events
        never exists as 300 000 records at once (every full garbage collection would walk
        them while it is judged). The bad events' request keeps the body; the good ones'
        has no use for it."""
        info = self._info(request, user, api_version)
        info_with_body: RequestInfo | None = None
        bad_count, first_error = 0, ""
        for start in range(0, len(events), _SLICE):
            good: list[GoodEvent] = []
            bad: list[BadEvent] = []
            for raw in events[start:start + _SLICE]:
                verdict = self.checker.check(raw, check_as)
                if verdict.errors:
                    if info_with_body is None:
                        info_with_body = self._info(request, user, api_version,
                                                    self._body(request))
                    bad.append(BadEvent(tuple(verdict.errors), verdict.parameters,
                                        info_with_body, tuple(verdict.messages),
                                        verdict.failed))
                else:
                    assert verdict.parameters is not None
                    e = verdict.event_type
                    good.append(GoodEvent(verdict.parameters, EVENT_TYPES.get(e or ""),
                                          event_schema(e, verdict.schema), verdict.contexts,
                                          info))
            if bad and not bad_count:
                first_error = bad[0].errors[0]
            bad_count += len(bad)
            self.store.add(good, bad, last_of_request=start + _SLICE >= len(events))
        if bad_count:
            logger.info("%d bad event(s) from %s: %s", bad_count, loggable(info.ip),
                        loggable(first_error))


class _NetworkUser:
    """The collector's network user id of one request, and the cookie that keeps it."""

    def __init__(self, request: Request) -> None:
        self.anonymous = "sp-anonymous" in request.headers
        sent = _cookie(request.headers.get("cookie"))
        self.had_cookie = sent is not None
        if self.anonymous:
            self.nuid = ANONYMOUS_NUID
        else:
            self.nuid = sent or str(uuid.uuid4())

    def answer(self, response: Response) -> Response:
        """*response* with the ``Set-Cookie`` the collector sends."""
        if self.anonymous and not self.had_cookie:
            return response
        if self.anonymous:  # forget the identifier the browser holds
            value, expires = "", time.time() - _COOKIE_DAYS * 86400
        else:
            value, expires = self.nuid, time.time() + _COOKIE_DAYS * 86400
        cookie = (f"{COOKIE_NAME}={value}; Expires={email.utils.formatdate(expires, usegmt=True)}"
                  f"; Path=/; SameSite=None; Secure; HttpOnly")
        response.headers = (*response.headers, ("Set-Cookie", cookie))
        return response


def _cookie(header: str | None) -> str | None:
    """The ``sp`` cookie's value in a ``Cookie`` header, if it holds a UUID."""
    if not header or COOKIE_NAME not in header:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        return None
    morsel = jar.get(COOKIE_NAME)
    if morsel is None:
        return None
    try:
        return str(uuid.UUID(morsel.value))
    except ValueError:
        return None


def _ok() -> Response:
    return Response(200, b"ok", "text/plain; charset=UTF-8")


def _query_pairs(query: str) -> list[tuple[str, str]] | None:
    """The fields of a query string, or None if it cannot be decoded."""
    try:
        return parse_qsl(query, keep_blank_values=True, errors="strict",
                         max_num_fields=_MAX_FIELDS)
    except (UnicodeDecodeError, ValueError):
        return None


def _payload_problem(payload: object) -> str | None:
    """Why a POST body is not a ``payload_data`` wrapper with events, or None."""
    if not isinstance(payload, dict) or set(payload) != {"schema", "data"}:
        return "the body is not a self-describing JSON (an object with 'schema' and 'data')"
    key = SchemaKey.parse(payload["schema"])
    if (key is None or key.vendor != "com.snowplowanalytics.snowplow"
            or key.name != "payload_data" or key.version not in _PAYLOAD_VERSIONS):
        return (f"the body's schema is {str(payload['schema'])[:200]!r}, expected "
                f"iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-0 to 1-0-4")
    data = payload["data"]
    if not isinstance(data, list) or not data:
        return "the body's data must be a non-empty list of events"
    return None

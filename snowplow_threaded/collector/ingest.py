"""The tracker-protocol routes: requests in, good and bad events into the store.

* ``POST [prefix]/com.snowplowanalytics.snowplow/tp2``: a JSON body
  ``{"schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-x",
  "data": [event, ...]}``. A body that is not that (wrong ``Content-Type``, not UTF-8, not
  JSON, another schema, no events) is answered ``400`` and kept as one bad event. Otherwise
  every event is judged on its own and the answer is ``200``, as a real collector gives
  (it is the pipeline that sorts good from bad).
* ``GET [prefix]/i?<event fields>``: one event; answered with a 1x1 GIF (``200``), or ``400``
  when the query string cannot be decoded or is empty.

Runs on the server's loop thread (an :class:`Ingestor` is not thread-safe; the store is).
"""

from __future__ import annotations

import logging
import time
from urllib.parse import parse_qsl

from .http_types import Request, Response
from .iglu import SchemaKey
from .logtext import loggable
from .protocol import EventChecker, load_json
from .store import BadEvent, EventLog, GoodEvent, RequestInfo

__all__ = ["PIXEL", "Ingestor"]

logger = logging.getLogger("snowplow_threaded.collector.ingest")

#: The transparent 1x1 GIF a collector answers ``GET /i`` with.
PIXEL = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00"
         b"\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")
_MAX_FIELDS = 1000
_SLICE = 1000
_PAYLOAD_VERSIONS = ("1-0-0", "1-0-1", "1-0-2", "1-0-3", "1-0-4")


class Ingestor:
    """Judges tracker requests with *checker* and keeps the verdicts in *store*.

    :param body_keep: characters of a bad request's body kept with it
    """

    def __init__(self, checker: EventChecker, store: EventLog, body_keep: int = 16384) -> None:
        self.checker = checker
        self.store = store
        self.body_keep = body_keep

    def _info(self, request: Request, api_version: str, body: str | None = None) -> RequestInfo:
        headers = request.headers
        forwarded = headers.get("x-forwarded-for", "").split(",")[0].strip()
        return RequestInfo(
            api_version=api_version, method=request.method, path=request.path,
            query=request.query, content_type=headers.get("content-type"),
            ip=forwarded or request.peer, useragent=headers.get("user-agent"),
            referer=headers.get("referer"), hostname=headers.get("host"),
            headers=request.header_lines, timestamp=time.time(), body=body)

    def _reject(self, request: Request, api_version: str, reason: str) -> Response:
        text = request.body[: self.body_keep * 4].decode("utf-8", "replace")[: self.body_keep]
        info = self._info(request, api_version, text if request.body else None)
        self.store.add(bad=[BadEvent((reason,), None, info)])
        logger.info("bad request %s %s: %s", request.method, loggable(request.path),
                    loggable(reason))
        return Response(400, (reason + "\n").encode("utf-8"), "text/plain; charset=utf-8")

    def post(self, request: Request) -> Response:
        """``POST .../tp2``."""
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/json":
            return self._reject(request, "tp2", f"Content-Type must be application/json, "
                                f"got {request.headers.get('content-type', 'none')!r}")
        try:
            text = request.body.decode("utf-8")
            payload = load_json(text)
        except UnicodeDecodeError:
            return self._reject(request, "tp2", "the body is not UTF-8")
        except ValueError as exc:
            return self._reject(request, "tp2", f"the body is {exc}")
        problem = _payload_problem(payload)
        if problem:
            return self._reject(request, "tp2", problem)
        info = self._info(request, "tp2")
        self._judge(payload["data"], info)
        return Response(200)

    def get(self, request: Request) -> Response:
        """``GET .../i``."""
        try:
            pairs = parse_qsl(request.query, keep_blank_values=True, errors="strict",
                              max_num_fields=_MAX_FIELDS)
        except (UnicodeDecodeError, ValueError) as exc:
            return self._reject(request, "tp1", f"the query string cannot be decoded ({exc})")
        if not pairs:
            return self._reject(request, "tp1", "no event fields in the query string")
        self._judge([dict(pairs)], self._info(request, "tp1"))
        return Response(200, PIXEL, "image/gif", (("Cache-Control", "no-cache, no-store"),))

    def _judge(self, events: list[object], info: RequestInfo) -> None:
        """Judge *events* and keep them, ``_SLICE`` at a time: a batch of 300 000 events
        never exists as 300 000 records at once (they would be walked by every full
        garbage collection while it is judged)."""
        bad_count, first_error = 0, ""
        for start in range(0, len(events), _SLICE):
            good: list[GoodEvent] = []
            bad: list[BadEvent] = []
            for raw in events[start:start + _SLICE]:
                checked = self.checker.check(raw)
                if checked.errors:
                    bad.append(BadEvent(tuple(checked.errors), checked.parameters, info))
                else:
                    assert checked.parameters is not None
                    good.append(GoodEvent(checked.parameters, checked.event_type,
                                          checked.schema, checked.contexts, info))
            if bad and not bad_count:
                first_error = bad[0].errors[0]
            bad_count += len(bad)
            self.store.add(good, bad, last_of_request=start + _SLICE >= len(events))
        if bad_count:
            logger.info("%d bad event(s) from %s: %s", bad_count, loggable(info.ip),
                        loggable(first_error))


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

"""What the collector keeps: good and bad events in bounded memory, and their Snowplow
Micro JSON form.

:class:`EventStore` holds at most ``max_events`` good and ``max_events`` bad events, and
about ``max_bytes`` of each; beyond that, the oldest are evicted and counted. Every method
is thread-safe (one lock); the server thread adds, any thread reads. Events are immutable
records, shared with readers: treat what you get as read-only.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl

from . import badrows
from .canonical import canonical_event, incomplete_event, iso_timestamp
from .protocol import decode_field

__all__ = ["BadEvent", "EventStore", "GoodEvent", "RequestInfo", "Summary"]

SOURCE_NAME = "snowplow-threaded-collector"
_VENDOR = "com.snowplowanalytics.snowplow"


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """The HTTP request events came in (shared by all events of one request).

    ``api_version`` is ``tp2`` (POST, or GET on ``.../tp2``) or ``tp1`` (GET ``/i``);
    ``timestamp`` the POSIX time of receipt; ``ip`` ``"unknown"`` for an anonymous request
    (``SP-Anonymous``); ``network_user_id`` the collector's (from its cookie, new, or the
    all-zero UUID when anonymous); ``body`` is kept only for requests with bad events, cut to
    a bounded length.
    """

    api_version: str
    method: str
    path: str
    query: str
    content_type: str | None
    ip: str | None
    useragent: str | None
    referer: str | None
    hostname: str | None
    headers: tuple[str, ...]
    timestamp: float
    body: str | None = None
    network_user_id: str | None = None

    def _context(self) -> dict[str, Any]:
        return {"timestamp": iso_timestamp(self.timestamp), "ipAddress": self.ip,
                "useragent": self.useragent, "refererUri": self.referer,
                "headers": list(self.headers), "userId": self.network_user_id}

    def _source(self) -> dict[str, Any]:
        return {"name": SOURCE_NAME, "encoding": "UTF-8", "hostname": self.hostname}

    def _api(self) -> dict[str, str]:
        return {"vendor": _VENDOR, "version": self.api_version}

    def query_pairs(self) -> list[tuple[str, str]]:
        """The query string, decoded (undecodable bytes replaced)."""
        return parse_qsl(self.query, keep_blank_values=True, errors="replace",
                         max_num_fields=None) if self.query else []

    def raw_event(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """Micro's ``rawEvent``: the event's fields with the request's metadata."""
        return {"api": self._api(), "parameters": parameters,
                "contentType": self.content_type, "source": self._source(),
                "context": self._context()}

    def collector_payload(self) -> dict[str, Any]:
        """Micro's ``collectorPayload``: the request as the collector received it (the
        query string as decoded ``name=value`` items)."""
        return {"api": self._api(),
                "querystring": [f"{k}={v}" for k, v in self.query_pairs()],
                "contentType": self.content_type, "body": self.body,
                "source": self._source(), "context": self._context()}

    def badrow_raw(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """``payload.raw`` of an event's bad row."""
        return {"vendor": _VENDOR, "version": self.api_version,
                "parameters": [{"name": k, "value": v if isinstance(v, str) or v is None
                                else json.dumps(v)} for k, v in parameters.items()],
                "contentType": self.content_type, "loaderName": SOURCE_NAME,
                "encoding": "UTF-8", "hostname": self.hostname,
                "timestamp": iso_timestamp(self.timestamp), "ipAddress": self.ip,
                "useragent": self.useragent, "refererUri": self.referer,
                "headers": list(self.headers), "userId": self.network_user_id}

    def badrow_payload(self) -> dict[str, Any]:
        """``payload`` of a request's tracker_protocol_violations bad row."""
        return {"vendor": _VENDOR, "version": self.api_version,
                "querystring": [{"name": k, "value": v} for k, v in self.query_pairs()],
                "contentType": self.content_type, "body": self.body,
                "collector": SOURCE_NAME, "encoding": "UTF-8", "hostname": self.hostname,
                "timestamp": iso_timestamp(self.timestamp), "ipAddress": self.ip,
                "useragent": self.useragent, "refererUri": self.referer,
                "headers": list(self.headers), "networkUserId": self.network_user_id}


@dataclass(frozen=True, slots=True, eq=False)
class GoodEvent:
    """A valid event: its tracker-protocol ``parameters`` (field -> string), its type as Micro
    names it (``event_type``: ``struct``, ``page_view``, ``unstruct``...; the ``e`` code is
    ``parameters["e"]``), its ``schema`` (the self-describing event's, or e.g.
    ``iglu:com.snowplowanalytics.snowplow/page_view/jsonschema/1-0-0``) and the schemas of its
    context entities."""

    parameters: dict[str, str]
    event_type: str | None
    schema: str | None
    contexts: tuple[str, ...]
    request: RequestInfo

    @property
    def received_at(self) -> float:
        return self.request.timestamp

    @property
    def event(self) -> dict[str, Any]:
        """The canonical (enriched) event, computed on each access."""
        return canonical_event(self.parameters, self.request.timestamp, self.request.ip,
                               self.request.useragent, self.request.network_user_id)

    @property
    def data(self) -> dict[str, Any] | None:
        """The self-describing event ``{"schema": ..., "data": ...}`` (``ue`` events)."""
        envelope = decode_field(self.parameters, "ue_pr", "ue_px")
        inner = envelope.get("data") if isinstance(envelope, dict) else None
        return inner if isinstance(inner, dict) else None

    @property
    def context_entities(self) -> list[dict[str, Any]]:
        """The context entities, each ``{"schema": ..., "data": ...}``."""
        envelope = decode_field(self.parameters, "co", "cx")
        entities = envelope.get("data") if isinstance(envelope, dict) else None
        return entities if isinstance(entities, list) else []

    def to_micro(self) -> dict[str, Any]:
        """This event as Snowplow Micro's ``/micro/good`` shows it."""
        return {"rawEvent": self.request.raw_event(self.parameters),
                "eventType": self.event_type, "schema": self.schema,
                "contexts": list(self.contexts), "event": self.event, "incomplete": False}


@dataclass(frozen=True, slots=True, eq=False)
class BadEvent:
    """An event (or a whole request) that failed: the readable reasons (``errors``), the
    event's fields when it could be read (``None`` for a request that could not be parsed),
    and the same reasons as Snowplow bad-row ``messages`` (see :meth:`bad_row`)."""

    errors: tuple[str, ...]
    parameters: dict[str, Any] | None
    request: RequestInfo
    messages: tuple[dict[str, Any], ...] = ()
    failed: frozenset[str] = field(default_factory=frozenset)

    @property
    def received_at(self) -> float:
        return self.request.timestamp

    def bad_row(self) -> dict[str, Any]:
        """The Snowplow bad row: ``schema_violations`` for an event that failed,
        ``tracker_protocol_violations`` for a request whose events could not be read."""
        at = iso_timestamp(self.request.timestamp)
        messages = self.messages or tuple(badrows.protocol_message("body", None, e)
                                          for e in self.errors)
        if self.parameters is None:
            return badrows.tracker_protocol_violations(
                messages, at, self.request.api_version, self.request.badrow_payload())
        return badrows.schema_violations(messages, at,
                                         self.request.badrow_raw(self.parameters))

    @property
    def event(self) -> dict[str, Any] | None:
        """The incomplete canonical event Micro keeps for an event that failed (``None`` for
        a request that could not be parsed)."""
        if self.parameters is None:
            return None
        return incomplete_event(self.parameters, self.failed, self.messages,
                                self.request.timestamp, self.request.ip,
                                self.request.useragent, self.request.network_user_id)

    def to_micro(self) -> dict[str, Any]:
        """This event as Snowplow Micro's ``/micro/bad`` shows it: ``errors`` is Micro's
        heading and the bad row as compact JSON."""
        raw = self.request.raw_event(self.parameters) if self.parameters is not None else None
        heading = badrows.EVENT_FAILED if raw is not None else badrows.PAYLOAD_FAILED
        row = json.dumps(self.bad_row(), separators=(",", ":"), ensure_ascii=False)
        return {"collectorPayload": self.request.collector_payload(), "rawEvent": raw,
                "errors": [heading, row]}


@dataclass(frozen=True, slots=True)
class Summary:
    """Counters of the store. ``good``/``bad``: held now; ``received_*``: since the last
    reset, evicted ones included; ``evicted_*``: dropped to stay within the limits."""

    good: int
    bad: int
    received_good: int
    received_bad: int
    evicted_good: int
    evicted_bad: int

    def as_micro(self) -> dict[str, int]:
        """Micro's ``/micro/all`` shape."""
        return {"total": self.good + self.bad, "good": self.good, "bad": self.bad}


def _size(event: GoodEvent | BadEvent) -> int:
    """About how many bytes of memory *event* holds (its own share, not the request's)."""
    params = event.parameters
    if params is None:
        size = 0
    elif isinstance(event, GoodEvent):  # all values are strings
        size = sum(map(len, params.values())) + 80 * len(params)
    else:
        size = sum(len(v) if isinstance(v, str) else len(repr(v)) for v in params.values())
        size += 80 * len(params)
    if isinstance(event, BadEvent):  # its bad-row messages repeat about its errors
        size += len(event.request.body or "") + 2 * sum(map(len, event.errors))
    return size + 400


class EventStore:
    """Bounded, thread-safe store of good and bad events (in arrival order).

    :param max_events: most good events kept, and most bad events kept (each >= 1)
    :param max_bytes: about the most memory the good events take, and the bad events
        (estimated from their sizes); the oldest are evicted beyond it
    """

    def __init__(self, max_events: int = 100_000, max_bytes: int = 512 * 1024 * 1024) -> None:
        for name, value in (("max_events", max_events), ("max_bytes", max_bytes)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._cond = threading.Condition()
        self._good: deque[GoodEvent] = deque()
        self._bad: deque[BadEvent] = deque()
        self._sizes: dict[str, deque[int]] = {"good": deque(), "bad": deque()}
        self._bytes = {"good": 0, "bad": 0}
        self._received = {"good": 0, "bad": 0}
        self._evicted = {"good": 0, "bad": 0}

    def add(self, good: Iterable[GoodEvent] = (), bad: Iterable[BadEvent] = ()) -> None:
        """Keep *good* and *bad*, evicting the oldest beyond ``max_events`` or
        ``max_bytes``; wakes :meth:`wait_for`."""
        good, bad = list(good), list(bad)
        if not good and not bad:
            return
        good_sizes, bad_sizes = [_size(e) for e in good], [_size(e) for e in bad]
        with self._cond:
            self._keep("good", self._good, good, good_sizes)
            self._keep("bad", self._bad, bad, bad_sizes)
            self._cond.notify_all()

    def _keep(self, kind: str, held: deque[Any], events: list[Any], sizes: list[int]) -> None:
        if not events:
            return
        held.extend(events)
        self._sizes[kind].extend(sizes)
        self._bytes[kind] += sum(sizes)
        self._received[kind] += len(events)
        held_sizes = self._sizes[kind]
        while len(held) > self.max_events or (self._bytes[kind] > self.max_bytes
                                              and len(held) > 1):
            held.popleft()
            self._bytes[kind] -= held_sizes.popleft()
            self._evicted[kind] += 1

    def good(self) -> list[GoodEvent]:
        """The good events held, oldest first."""
        with self._cond:
            return list(self._good)

    def bad(self) -> list[BadEvent]:
        """The bad events held, oldest first."""
        with self._cond:
            return list(self._bad)

    def summary(self) -> Summary:
        with self._cond:
            return Summary(len(self._good), len(self._bad), self._received["good"],
                           self._received["bad"], self._evicted["good"], self._evicted["bad"])

    def reset(self) -> None:
        """Forget every event and zero the counters."""
        with self._cond:
            self._good.clear()
            self._bad.clear()
            for sizes in self._sizes.values():
                sizes.clear()
            self._bytes = {"good": 0, "bad": 0}
            self._received = {"good": 0, "bad": 0}
            self._evicted = {"good": 0, "bad": 0}
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float,
                 kind: Literal["all", "good", "bad"] = "all") -> bool:
        """Block until at least *count* events of *kind* were received since the last reset
        (evicted ones count), or *timeout* seconds pass. True if they were."""
        if kind not in ("all", "good", "bad"):
            raise ValueError(f"kind must be 'all', 'good' or 'bad', got {kind!r}")
        deadline = time.monotonic() + timeout

        def reached() -> bool:
            if kind == "all":
                return self._received["good"] + self._received["bad"] >= count
            return self._received[kind] >= count

        with self._cond:
            while not reached():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

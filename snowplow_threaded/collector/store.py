"""What the collector keeps: good and bad events in bounded memory, and their Snowplow
Micro JSON form.

:class:`EventLog` holds at most ``max_events`` good and ``max_events`` bad events, and
about ``max_bytes`` of each; beyond that, the oldest are evicted and counted. Every method
is thread-safe (one lock); the server thread adds, any thread reads. Events are immutable
records, shared with readers: treat what you get as read-only.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from .canonical import canonical_event, iso_timestamp
from .protocol import decode_field

__all__ = ["BadEvent", "EventLog", "GoodEvent", "RequestInfo", "Summary"]

SOURCE_NAME = "snowplow-threaded-collector"
_VENDOR = "com.snowplowanalytics.snowplow"


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """The HTTP request events came in (shared by all events of one request).

    ``api_version`` is ``tp2`` (POST) or ``tp1`` (GET); ``timestamp`` the POSIX time of
    receipt; ``body`` is kept only for bad requests, cut to a bounded length.
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

    def _context(self) -> dict[str, Any]:
        return {"timestamp": iso_timestamp(self.timestamp), "ipAddress": self.ip,
                "useragent": self.useragent, "refererUri": self.referer,
                "headers": list(self.headers), "userId": None}

    def _source(self) -> dict[str, Any]:
        return {"name": SOURCE_NAME, "encoding": "UTF-8", "hostname": self.hostname}

    def raw_event(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """Micro's ``rawEvent``: the event's fields with the request's metadata."""
        return {"api": {"vendor": _VENDOR, "version": self.api_version},
                "parameters": parameters, "contentType": self.content_type,
                "source": self._source(), "context": self._context()}

    def collector_payload(self) -> dict[str, Any]:
        """Micro's ``collectorPayload``: the request as the collector received it."""
        pairs = [p for p in self.query.split("&") if p] if self.query else []
        return {"api": {"vendor": _VENDOR, "version": self.api_version},
                "querystring": pairs, "contentType": self.content_type, "body": self.body,
                "source": self._source(), "context": self._context()}


@dataclass(frozen=True, slots=True, eq=False)
class GoodEvent:
    """A valid event: its tracker-protocol ``parameters`` (field -> string), type (``e``),
    the schema of its self-describing event (``ue`` events) and of its context entities."""

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
                               self.request.useragent)

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
                "contexts": list(self.contexts), "event": self.event}


@dataclass(frozen=True, slots=True, eq=False)
class BadEvent:
    """An event (or a whole request) that failed: the reasons, and the event's fields when
    it could be read (``None`` for a request that could not be parsed)."""

    errors: tuple[str, ...]
    parameters: dict[str, Any] | None
    request: RequestInfo

    @property
    def received_at(self) -> float:
        return self.request.timestamp

    def to_micro(self) -> dict[str, Any]:
        """This event as Snowplow Micro's ``/micro/bad`` shows it."""
        raw = self.request.raw_event(self.parameters) if self.parameters is not None else None
        return {"collectorPayload": self.request.collector_payload(), "rawEvent": raw,
                "errors": list(self.errors)}


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
    if isinstance(event, BadEvent):
        size += len(event.request.body or "") + sum(map(len, event.errors))
    return size + 400


class EventLog:
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

"""The tracker requests the collector received and what it answered, for tests.

:class:`Traffic` keeps one :class:`TrackerRequest` per request to a tracker route
(``POST .../tp2``, ``GET .../i``), in arrival order, bounded in count and bytes (bodies,
headers and query strings; the oldest are forgotten first). Every method is thread-safe
(one re-entrant lock, whose condition also wakes :meth:`Traffic.wait_until`); the server
writes (from its loop or its worker thread), any thread reads. A record is filled in
once, when its answer is sent (or the request is cut or abandoned), and not changed
afterwards.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from .fault import Fault
from .http_types import Request

__all__ = ["TrackerRequest", "Traffic"]


@dataclass(slots=True, eq=False)
class TrackerRequest:
    """One request to a tracker route.

    ``index`` counts tracker requests from 0 (since the collector started, or its last
    :meth:`~snowplow_threaded.collector.Collector.reset`); ``connection`` numbers the TCP
    connection it came on; ``received_at`` / ``answered_at`` are ``time.monotonic()``
    values. ``outcome`` is ``"pending"`` until it is settled, then ``"answered"``, or how
    the answer was broken: ``"reset"`` (before any byte of it), ``"reset-mid-response"``,
    ``"close-after-head"``, or ``"aborted"`` (the collector stopped or went down while the
    answer was delayed). ``status`` is the status answered, or announced by a broken
    answer (``None`` when none was). ``fault`` is the fault rule's :class:`Fault` applied
    to it, if any.
    """

    index: int
    method: str
    path: str
    query_string: str
    headers: dict[str, str]
    body: bytes
    connection: int
    received_at: float
    status: int | None = None
    outcome: str = "pending"
    fault: Fault | None = None
    answered_at: float | None = None
    _generation: int = field(default=0, repr=False)

    @property
    def done(self) -> bool:
        """The request is settled (answered, cut or abandoned)."""
        return self.outcome != "pending"

    @property
    def accepted(self) -> bool:
        """The collector took its events: a 2xx answer, or announced (the events are kept
        even if that answer was then cut on purpose). Good and bad events alike."""
        return (self.status is not None and 200 <= self.status < 300
                and self.outcome not in ("reset", "aborted", "pending"))

    @property
    def query(self) -> dict[str, str]:
        """The query string's fields (the last of a repeated name wins)."""
        return dict(parse_qsl(self.query_string, keep_blank_values=True))

    @property
    def events(self) -> list[dict[str, Any]]:
        """The events as the tracker sent them: a POST body's ``data`` list, or a GET's
        query fields; ``[]`` when the body is not a ``payload_data`` JSON."""
        if self.method != "POST":
            return [self.query] if self.query_string else []
        try:
            data = json.loads(self.body)["data"]
        except (ValueError, TypeError, KeyError, RecursionError):
            return []
        if not isinstance(data, list):
            return []
        return [event for event in data if isinstance(event, dict)]


class Traffic:
    """The log of tracker requests (see the module doc).

    :param max_requests: most requests kept (the oldest settled ones are forgotten)
    :param max_bytes: about the most memory the records take (bodies, headers and query
        strings)
    """

    def __init__(self, max_requests: int = 10_000, max_bytes: int = 64 * 1024 * 1024) -> None:
        for name, value in (("max_requests", max_requests), ("max_bytes", max_bytes)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._records: deque[TrackerRequest] = deque()
        self._bytes = 0
        self._generation = 0
        self._next_index = 0
        self._pending = 0
        self._forgotten = 0

    @property
    def lock(self) -> threading.RLock:
        """The log's lock: the server holds it while it takes a request's events and
        settles its record, so that whoever holds it sees both or neither."""
        return self._lock

    # -- written by the server's loop --------------------------------------------------------
    def arrive(self, request: Request) -> TrackerRequest:
        """Record *request* as received, not yet answered."""
        with self._cond:
            record = TrackerRequest(self._next_index, request.method, request.path,
                                    request.query, dict(request.headers), request.body,
                                    request.connection, time.monotonic(),
                                    _generation=self._generation)
            self._next_index += 1
            self._pending += 1
            self._records.append(record)
            self._bytes += _size(record)
            self._bound()
            self._cond.notify_all()
            return record

    def settle(self, record: TrackerRequest, status: int | None, outcome: str,
               fault: Fault | None) -> None:
        """Fill in how *record* ended (once; later calls are ignored)."""
        with self._cond:
            if record.done:
                return
            record.status, record.outcome, record.fault = status, outcome, fault
            record.answered_at = time.monotonic()
            if record._generation == self._generation:
                self._pending -= 1
            self._cond.notify_all()

    def _bound(self) -> None:
        records = self._records
        while len(records) > 1 and (len(records) > self.max_requests
                                    or self._bytes > self.max_bytes):
            oldest = records.popleft()
            self._bytes -= _size(oldest)
            self._forgotten += 1

    # -- read by anyone ----------------------------------------------------------------------
    def requests(self) -> list[TrackerRequest]:
        """The settled requests kept, in arrival order."""
        with self._cond:
            return [r for r in self._records if r.done]

    @property
    def in_flight(self) -> int:
        """Requests received and not settled yet (an answer delayed by a fault rule)."""
        with self._cond:
            return self._pending

    @property
    def received(self) -> int:
        """Tracker requests received since the last reset (forgotten ones included)."""
        with self._cond:
            return self._next_index

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Block until ``predicate()`` holds, re-checking it whenever a request arrives or
        is settled, or until *timeout* seconds pass; returns its last value. It runs with
        the log's (re-entrant) lock held: it may read the collector, but must be quick."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def reset(self) -> None:
        """Forget every request and restart the index; requests still in flight are not
        recorded when they settle."""
        with self._cond:
            self._records.clear()
            self._bytes = 0
            self._generation += 1
            self._next_index = 0
            self._pending = 0
            self._forgotten = 0
            self._cond.notify_all()


def _size(record: TrackerRequest) -> int:
    """About the memory *record* takes: its headers and query string count too (a request
    with 60 KB of headers and no body is not free)."""
    return (400 + len(record.body) + len(record.query_string) + len(record.path)
            + sum(100 + len(k) + len(v) for k, v in record.headers.items()))

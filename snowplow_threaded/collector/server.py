"""The embedded collector: a Snowplow-Micro-like HTTP server you can start from Python.

Example::

    from snowplow_threaded.collector import Collector

    with Collector() as collector:              # listens on 127.0.0.1, a free port
        tracker = Snowplow.create_tracker("ns", collector.endpoint)
        tracker.track(StructuredEvent("shop", "buy"))
        assert collector.wait_for(1, timeout=5)
        assert collector.good()[0].parameters["se_ac"] == "buy"

The server runs an asyncio loop on one background thread (started by :meth:`start`, not at
import), and heavy requests on one worker thread (started on first use; see
:meth:`Collector._heavy`). Every public method is thread-safe.
Routes: the tracker protocol (see :mod:`.ingest`), Snowplow Micro's REST API (see
:mod:`.micro_api`; who may use it: :mod:`.access`), ``GET /health`` (``200 ok``; ``503``
while paused) and CORS pre-flight (``OPTIONS``; it allows the
``Content-Type`` and ``SP-Anonymous`` request headers, as the Snowplow collector does).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import threading
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from ..threads import start_background
from .access import AccessPolicy
from .event_log import EventLog
from .faults import Faults, serve_tracker
from .http11 import HTTPServer
from .http_types import Deferred, Limits, Request, Response
from .iglu import Resolver
from .ingest import PIXEL, Ingestor
from .micro_api import MicroApi
from .protocol import EventChecker
from .store import BadEvent, GoodEvent, Summary
from .traffic import TrackerRequest, Traffic

__all__ = ["Collector"]

logger = logging.getLogger("snowplow_threaded.collector")

TP2_SUFFIX = "/com.snowplowanalytics.snowplow/tp2"
_PIXEL_SUFFIXES = ("/i", "/ice.png")
_TRACKER_SUFFIXES = (TP2_SUFFIX, *_PIXEL_SUFFIXES)
#: Tracker requests up to this size may be judged on the event loop (a few ms at most).
_INLINE_BYTES = 64 * 1024


class Collector:
    """A collector with Snowplow Micro's API, validating events against Iglu schemas.

    :param host: address to listen on (default ``127.0.0.1``)
    :param port: port to listen on; 0 (default) picks a free one (see :attr:`port`)
    :param schemas: directories of user schemas (``VENDOR/NAME/jsonschema/VERSION``),
        searched before the bundled ones
    :param iglu: static Iglu registries (``http(s)://`` roots above ``/schemas``), asked in
        order for schemas neither bundled nor in *schemas*
    :param iglu_timeout: seconds one schema lookup may spend asking the registries
    :param max_events: most good events, and most bad events, kept in memory (the oldest
        are evicted and counted in :meth:`summary`)
    :param max_bytes: about the most memory the good events, and the bad events, may take
        (estimated; the oldest are evicted beyond it)
    :param limits: HTTP limits and timeouts (:class:`Limits`)
    :param max_requests: most tracker requests kept for :meth:`requests` (the oldest are
        forgotten; their bodies count towards *max_bytes* too)
    :param allowed_hosts: more host names the Micro API answers under (``"*"``: any), for
        remote use; IP addresses, ``localhost`` and *host* always work (see :mod:`.access`)

    Simulated faults: :attr:`faults` (rules for status codes, ``Retry-After``, delays,
    connection resets and closes; see :mod:`.faults`), :meth:`down` / :meth:`up` (connections
    refused) and :meth:`pause`.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *,
                 schemas: Iterable[str | Path] = (), iglu: Iterable[str] = (),
                 iglu_timeout: float = 2.0, max_events: int = 100_000,
                 max_bytes: int = 512 * 1024 * 1024, limits: Limits | None = None,
                 max_requests: int = 10_000, allowed_hosts: Iterable[str] = ()) -> None:
        #: the fault rules: ``collector.faults(503, times=3)``, ... (see :mod:`.faults`)
        self.faults = Faults()
        self.traffic = Traffic(max_requests, max_bytes)
        self.host = host
        self._access = AccessPolicy(host, allowed_hosts)
        self._requested_port = port
        self.limits = limits or Limits()
        self.resolver = Resolver(schemas, registries=iglu, timeout=iglu_timeout)
        self.store = EventLog(max_events, max_bytes)
        self._ingest = Ingestor(EventChecker(self.resolver), self.store)
        self._api = MicroApi(self.store, self.resolver)
        self._http = HTTPServer(self._route, self.limits, offload=self._heavy)
        self._pause: tuple[int, float | None] | None = None
        self._refused = 0
        self._port = 0
        self._pid = os.getpid()
        self._lock = threading.Lock()  # start(), and the two below
        self._tracker_in_worker = 0  # tracker requests given to the worker, not answered
        self._in_worker: set[int] = set()  # their ids
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> Collector:
        """Bind and serve on a background thread; returns once listening. A collector is
        started once. Raises ``OSError`` if the address cannot be bound, ``RuntimeError`` if
        already started."""
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("this collector was started already")
            ready = threading.Event()
            failure: list[BaseException] = []
            self._thread = threading.Thread(target=self._run, args=(ready, failure),
                                            name="snowplow-collector", daemon=True)
            start_background(self._thread)  # signals go to the application's threads
        if not ready.wait(timeout):
            raise RuntimeError("the collector did not start in time")
        if failure:
            self._thread.join()
            raise failure[0]
        logger.debug("collector listening on %s", self.endpoint)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and close every connection; waits up to *timeout* for the server
        thread. Idempotent; a no-op in a forked child (the parent owns the server)."""
        loop, stopping, thread = self._loop, self._stopping, self._thread
        if os.getpid() != self._pid or loop is None or stopping is None or thread is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed already
            loop.call_soon_threadsafe(stopping.set)
        thread.join(timeout)

    def _run(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve(loop, ready))
        except BaseException as exc:  # bind errors: reported to start()
            if ready.is_set():
                logger.exception("the collector stopped on an error")
            failure.append(exc)
            ready.set()
        finally:
            loop.close()

    async def _serve(self, loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        self._stopping = asyncio.Event()
        self._port = await self._http.start(self.host, self._requested_port)
        self._loop = loop
        ready.set()
        try:
            await self._stopping.wait()
        finally:
            await self._http.close()
            logger.debug("collector on port %d stopped", self._port)

    def __enter__(self) -> Collector:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- where -----------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The port listened on (0 before :meth:`start`)."""
        return self._port

    @property
    def endpoint(self) -> str:
        """``http://host:port``: pass it to ``Snowplow.create_tracker`` / ``Emitter``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def listening(self) -> bool:
        """Running and not :meth:`down`."""
        return self.running and self._http.listening

    # -- events ----------------------------------------------------------------------------
    def good(self) -> list[GoodEvent]:
        """Good events held, oldest first (the REST API lists most recent first)."""
        return self.store.good()

    def bad(self) -> list[BadEvent]:
        """Bad events held (with their ``errors``), oldest first."""
        return self.store.bad()

    def events(self) -> list[dict[str, Any]]:
        """The canonical events of the good events held, oldest first."""
        return [event.event for event in self.store.good()]

    def summary(self) -> Summary:
        """Counters: held, received since the last reset, evicted."""
        return self.store.summary()

    def reset(self) -> None:
        """Forget every event and tracker request, and zero the counters (the REST API's
        ``/micro/reset`` forgets the events). Fault rules stay."""
        self.store.reset()
        self.traffic.reset()

    def wait_for(self, count: int, timeout: float = 10.0,
                 kind: Literal["all", "good", "bad"] = "all") -> bool:
        """Block until *count* events of *kind* (default: good and bad) were received since
        the last reset, or *timeout* seconds pass; True if they were."""
        return self.store.wait_for(count, timeout, kind)

    # -- tracker requests ------------------------------------------------------------------
    def requests(self) -> list[TrackerRequest]:
        """The tracker requests answered (or cut), oldest first, with what was answered."""
        return self.traffic.requests()

    @property
    def in_flight(self) -> int:
        """Tracker requests received but not answered yet (delayed by a fault rule)."""
        return self.traffic.in_flight

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Block until ``predicate()`` is true, re-checked whenever a tracker request
        arrives or is answered, or *timeout* seconds pass; True if it became true."""
        return self.traffic.wait_until(predicate, timeout)

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> bool:
        """Block until *count* tracker requests were answered (or cut) since the last reset."""
        traffic = self.traffic
        return traffic.wait_until(lambda: traffic.received - traffic.in_flight >= count,
                                  timeout)

    # -- simulated outage ------------------------------------------------------------------
    def down(self, timeout: float = 5.0) -> None:
        """Go down: stop listening (connections are refused) and drop every connection,
        cancelling answers still delayed. Events, requests and the port are kept (an
        ephemeral port may be taken by another program meanwhile); see :meth:`up`."""
        self._on_loop(self._http.stop_listening(), timeout)

    def up(self, timeout: float = 5.0) -> None:
        """Listen again on the same port after :meth:`down` (no-op if listening)."""
        if not self._http.listening:
            self._on_loop(self._http.listen(self.host, self._port), timeout)

    def _on_loop(self, work: Coroutine[object, object, object], timeout: float) -> None:
        loop = self._loop
        if loop is None or not self.running:
            work.close()
            raise RuntimeError("the collector is not running")
        future = asyncio.run_coroutine_threadsafe(work, loop)
        try:
            future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise RuntimeError("the collector did not answer in time") from None

    def pause(self, status: int = 503, retry_after: float | None = None) -> None:
        """Answer every tracker request with *status* (and ``Retry-After``), keeping none of
        its events, until :meth:`resume`. The REST API keeps working."""
        if not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error status, got {status!r}")
        self._pause = (status, retry_after)

    def resume(self) -> None:
        """Accept events again."""
        self._pause = None

    @property
    def paused(self) -> bool:
        return self._pause is not None

    def stats(self) -> dict[str, Any]:
        """Server counters: connections (total, open, the cap in force), requests, error
        replies by status, request bytes held now, the longest the event loop was late (s),
        tracker requests refused while paused."""
        http = self._http.stats
        return {"connections": http.connections, "open_connections": http.open_connections,
                "max_connections": http.max_connections, "requests": http.requests,
                "errors": dict(http.errors), "buffered_bytes": http.buffered_bytes,
                "loop_lag_max": http.loop_lag_max, "refused_while_paused": self._refused}

    # -- routing ---------------------------------------------------------------------------
    def _heavy(self, request: Request) -> bool:
        """Whether *request* is handled on the worker thread rather than the event loop:
        the Micro API (it may walk every event held); tracker requests over
        ``_INLINE_BYTES``, or any when registries are configured (asking one may take
        seconds), or while the worker has tracker requests (they keep their order, and
        the loop never waits for the record's lock while the worker judges a batch under
        it). Small tracker requests are judged on the loop: a few ms at most, without
        a thread hand-off (which doubled the CPU a single-event request costs)."""
        if request.path == "/health" or request.method == "OPTIONS":
            return False
        if not request.path.endswith(_TRACKER_SUFFIXES):
            return True
        with self._lock:
            if (self._tracker_in_worker or self.resolver.registries
                    or len(request.body) + len(request.query) > _INLINE_BYTES):
                self._tracker_in_worker += 1
                self._in_worker.add(id(request))
                return True
        return False

    def _route(self, request: Request) -> Response | Deferred:
        if id(request) not in self._in_worker:
            return self._answer(request)
        try:
            result = self._answer(request)
        except BaseException:
            self._worker_done(request)
            raise
        if not isinstance(result, Deferred):
            self._worker_done(request)
            return result
        later = result

        def answer() -> Response:
            try:
                return later.answer()
            finally:
                self._worker_done(request)

        def cancel() -> None:
            try:
                later.cancel()
            finally:
                self._worker_done(request)

        return Deferred(later.delay, answer, cancel)

    def _worker_done(self, request: Request) -> None:
        with self._lock:
            if id(request) in self._in_worker:
                self._in_worker.discard(id(request))
                self._tracker_in_worker -= 1

    def _answer(self, request: Request) -> Response | Deferred:
        path, method = request.path, request.method
        if path == "/micro" or path.startswith("/micro/"):
            return self._access.refusal(request) or self._api.handle(request)
        if method == "OPTIONS":
            return Response(200, headers=_cors(request, preflight=True))
        if path == "/health":
            if self._pause is not None:
                return Response(503, b"paused\n", "text/plain")
            return Response(200, b"ok", "text/plain; charset=UTF-8")
        tp2 = path.endswith(TP2_SUFFIX)
        if tp2 and method == "POST":
            return self._tracker(request, self._ingest.post)
        if tp2 or path.endswith(_PIXEL_SUFFIXES):  # a GET on .../tp2 is one event too
            if method == "HEAD":  # answered like a GET, but records nothing
                return Response(200, PIXEL, "image/gif")
            if method != "GET":
                return Response(405, b"use GET\n", "text/plain", (("Allow", "GET, OPTIONS"),))
            api_version = "tp2" if tp2 else "tp1"
            return self._tracker(request, lambda r: self._ingest.get(r, api_version))
        return Response(404, b"not found\n", "text/plain")

    def _tracker(self, request: Request, ingest: Callable[[Request], Response]
                 ) -> Response | Deferred:
        def answer() -> Response:
            pause = self._pause
            if pause is not None:
                self._refused += 1
                status, retry_after = pause
                headers = (("Retry-After", f"{retry_after:g}"),) if retry_after is not None \
                    else ()
                return Response(status, b"paused\n", "text/plain", headers + _cors(request))
            response = ingest(request)
            response.headers = response.headers + _cors(request)
            return response

        return serve_tracker(request, answer, self.faults, self.traffic, _cors(request))


def _cors(request: Request, preflight: bool = False) -> tuple[tuple[str, str], ...]:
    origin = request.headers.get("origin")
    if origin is None and not preflight:
        return ()
    headers = [("Access-Control-Allow-Origin", origin or "*"),
               ("Access-Control-Allow-Credentials", "true")]
    if preflight:
        headers += [("Access-Control-Allow-Methods", "GET, POST, OPTIONS"),
                    ("Access-Control-Allow-Headers", "Content-Type, SP-Anonymous"),
                    ("Access-Control-Max-Age", "3600")]
    return tuple(headers)

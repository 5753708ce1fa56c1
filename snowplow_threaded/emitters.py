"""Emitter: the public face of the sending engine (same arguments as the reference).

``input()`` never blocks: it buffers the event and returns. Worker threads (started on the
first event, ``thread_count`` of them) send batched requests over kept-alive connections,
retry with capped jittered backoff, and run the callbacks. ``flush(timeout)`` and
``close(timeout)`` always return by their deadline. Every public method is thread-safe.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable
from typing import Any

import requests

from . import lifecycle
from .emitter_configuration import DEFAULTS, check_setting
from .endpoint import collector_uri, warn_if_https_by_default
from .engine import Dispatcher
from .event_store import (
    DEFAULT_BUFFER_CAPACITY,
    BatchStore,
    EventStore,
    InMemoryEventStore,
    stringify,
)
from .legacy_store import LegacyStoreAdapter
from .retry import Backoff, is_success
from .stats import EmitterStats
from .transport import Transport
from .typing import (
    FailureCallback,
    HttpProtocol,
    Method,
    PayloadDict,
    RequestTimeout,
    SuccessCallback,
)

logger = logging.getLogger("snowplow_threaded.emitters")

DEFAULT_MAX_LENGTH = 10


class Emitter:
    """Buffers events and sends them to one collector from background threads.

    :param endpoint: ``host``, ``host:port`` or ``http(s)://host[:port][/path]``
    :param protocol: ``"https"`` (default) or ``"http"``, for the bare forms
    :param port: overrides the endpoint's port
    :param method: ``"post"`` (batched, default) or ``"get"`` (one event per request)
    :param batch_size: send when this many events wait (default 10 for POST, 1 for GET)
    :param on_success: ``f(sent_payloads)`` after each delivered request (worker thread)
    :param on_failure: ``f(success_count, failed_payloads)`` after each failed attempt
    :param byte_limit: send when this many bytes wait; also caps a POST body
    :param request_timeout: seconds, or ``(connect, read)``; default ``(5, 10)``
    :param max_retry_delay_seconds: cap of the backoff and of ``Retry-After`` (60)
    :param buffer_capacity: most events held in memory (10 000)
    :param custom_retry_codes: ``{status: retry?}`` overriding the defaults (400, 401,
        403, 410 and 422 are not retried; every other failure is)
    :param event_store: a store implementing the reference's ``EventStore`` protocol, or
        :class:`InMemoryEventStore` (the default) with its own capacity and drop policy
    :param session: a ``requests.Session`` shared by the workers (default: one per worker,
        with a cookie jar that keeps nothing)
    :param thread_count: sender threads (1)
    :param flush_interval: most seconds an event waits for a full batch (1.0)
    :param flush_timeout: default timeout of ``flush()`` (10 s)
    :param shutdown_timeout: the deadline of ``close()`` and of the exit flush (5 s)
    :param drop_policy: ``"drop_newest"`` (default) or ``"drop_oldest"`` when full
    :param max_events_per_request: a backlog is coalesced into POSTs of up to this many
        events (500) ...
    :param max_request_bytes: ... and this many bytes (1 000 000)
    :param max_retries: give a batch up after this many retries (default: never)
    """

    _default_protocol: HttpProtocol = "https"

    def __init__(
        self,
        endpoint: str,
        protocol: HttpProtocol | None = None,
        port: int | None = None,
        method: Method = "post",
        batch_size: int | None = None,
        on_success: SuccessCallback | None = None,
        on_failure: FailureCallback | None = None,
        byte_limit: int | None = None,
        request_timeout: RequestTimeout | None = None,
        max_retry_delay_seconds: float = DEFAULTS["max_retry_delay_seconds"],
        buffer_capacity: int | None = None,
        custom_retry_codes: dict[int, bool] | None = None,
        event_store: EventStore | BatchStore | None = None,
        session: requests.Session | None = None,
        thread_count: int = DEFAULTS["thread_count"],
        *,
        flush_interval: float = DEFAULTS["flush_interval"],
        flush_timeout: float = DEFAULTS["flush_timeout"],
        shutdown_timeout: float = DEFAULTS["shutdown_timeout"],
        drop_policy: str = DEFAULTS["drop_policy"],
        max_events_per_request: int = DEFAULTS["max_events_per_request"],
        max_request_bytes: int = DEFAULTS["max_request_bytes"],
        max_retries: int | None = DEFAULTS["max_retries"],
    ) -> None:
        settings = {k: v for k, v in locals().items() if k in DEFAULTS}
        for name, value in settings.items():
            check_setting(name, value)
        self.endpoint = collector_uri(endpoint, protocol or self._default_protocol, port, method)
        if protocol is None and self._default_protocol == "https":
            warn_if_https_by_default(endpoint)
        self.method = method
        if batch_size is None:
            batch_size = DEFAULT_MAX_LENGTH if method == "post" else 1
        capacity = DEFAULT_BUFFER_CAPACITY if buffer_capacity is None else buffer_capacity
        self.batch_size = min(batch_size, capacity)
        self.byte_limit = byte_limit
        self.request_timeout = request_timeout
        self.on_success = on_success
        self.on_failure = on_failure
        self.max_retry_delay_seconds = max_retry_delay_seconds
        self.custom_retry_codes: dict[int, bool] = dict(custom_retry_codes or {})
        self.session = session
        self.thread_count = thread_count
        self.flush_timeout = flush_timeout
        self.shutdown_timeout = shutdown_timeout
        if event_store is None:
            event_store = InMemoryEventStore(buffer_capacity=capacity, drop_policy=drop_policy)
        self.event_store = event_store
        store: Any = event_store
        if not hasattr(store, "take"):
            store = LegacyStoreAdapter(store)
        request_bytes = max_request_bytes if byte_limit is None else min(max_request_bytes,
                                                                         byte_limit)
        uri, timeout = self.endpoint, request_timeout
        self._dispatcher = Dispatcher(
            store,
            lambda: Transport(uri, method, timeout, session, request_bytes),
            thread_count=thread_count,
            batch_size=self.batch_size,
            byte_limit=byte_limit,
            flush_interval=flush_interval,
            max_events_per_request=max_events_per_request,
            backoff=Backoff(cap=max_retry_delay_seconds),
            custom_retry_codes=self.custom_retry_codes,
            max_retries=max_retries,
            callbacks=_weak_callbacks(self),
            name=self.endpoint,
            shutdown_timeout=shutdown_timeout,
        )
        if session is not None:
            user_session = session
            self._dispatcher.after_fork = lambda: lifecycle.reset_session_pools(user_session)
        lifecycle.register(self._dispatcher)
        # an emitter dropped without close(): drain in the background, then let go
        dispatcher = self._dispatcher
        finalizer = weakref.finalize(
            self, lambda: dispatcher.begin_close(time.monotonic() + shutdown_timeout)
        )
        finalizer.atexit = False

    # -- tracking -------------------------------------------------------------------------------
    def input(self, payload: PayloadDict) -> None:
        """Buffer one event payload (values are sent as strings). Never blocks."""
        self._dispatcher.admit(stringify(payload))

    def admit_record(self, record: PayloadDict, pid: int = 0) -> bool:
        """Buffer one event whose values are all strings, taking ownership of the dict
        (the caller must not change it afterwards); False if it was dropped (buffer full
        or emitter closed). *pid*: the caller's :func:`~.process_id.current_pid`, if it has it."""
        return self._dispatcher.admit(record, pid)

    # -- flushing -------------------------------------------------------------------------------
    def flush(self, timeout: float | None = None) -> bool:
        """Send what is buffered and wait until every event tracked before this call is
        delivered or failed for good (True), or *timeout* seconds pass (False; default
        ``flush_timeout``). During a backoff it waits for the retry (and makes one early
        attempt if the backoff would outlast *timeout*). Never raises on emitter faults."""
        return self._dispatcher.flush(self.flush_timeout if timeout is None else timeout)

    def sync_flush(self) -> bool:
        """The reference's blocking flush: :meth:`flush` with the default timeout."""
        return self.flush()

    def async_flush(self) -> None:
        """Ask the workers to send what is buffered now, without waiting."""
        self._dispatcher.flush(0.0, wait=False)

    def close(self, timeout: float | None = None) -> bool:
        """Stop admission, deliver what is buffered within *timeout* (default
        ``shutdown_timeout``), drop and count the rest, stop the workers. Idempotent.
        Events tracked after close are dropped (``stats().dropped["closed"]``)."""
        return self._dispatcher.close(self.shutdown_timeout if timeout is None else timeout)

    @property
    def closed(self) -> bool:
        return self._dispatcher.closed

    def stats(self) -> EmitterStats:
        """A snapshot of this emitter's counters."""
        return self._dispatcher.stats()

    def __enter__(self) -> Emitter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.endpoint!r}, method={self.method!r})"

    # -- the reference's static helpers ----------------------------------------------------------
    @staticmethod
    def as_collector_uri(
        endpoint: str,
        protocol: HttpProtocol = "https",
        port: int | None = None,
        method: Method = "post",
    ) -> str:
        return collector_uri(endpoint, protocol, port, method)

    @staticmethod
    def is_good_status_code(status_code: int) -> bool:
        return is_success(status_code)


def _weak_callbacks(emitter: Emitter) -> Callable[[], tuple[object, object]]:
    """The emitter's current callbacks, without keeping the emitter alive."""
    ref = weakref.ref(emitter)

    def current() -> tuple[object, object]:
        obj = ref()
        return (None, None) if obj is None else (obj.on_success, obj.on_failure)

    return current


class AsyncEmitter(Emitter):
    """The reference's ``AsyncEmitter``: the same engine (every :class:`Emitter` sends from
    background threads), with the reference's argument order and ``http`` default."""

    _default_protocol: HttpProtocol = "http"

    def __init__(
        self,
        endpoint: str,
        protocol: HttpProtocol | None = None,
        port: int | None = None,
        method: Method = "post",
        batch_size: int | None = None,
        on_success: SuccessCallback | None = None,
        on_failure: FailureCallback | None = None,
        thread_count: int = DEFAULTS["thread_count"],
        byte_limit: int | None = None,
        request_timeout: RequestTimeout | None = None,
        max_retry_delay_seconds: float = DEFAULTS["max_retry_delay_seconds"],
        buffer_capacity: int | None = None,
        custom_retry_codes: dict[int, bool] | None = None,
        event_store: EventStore | BatchStore | None = None,
        session: requests.Session | None = None,
        **engine: Any,
    ) -> None:
        super().__init__(
            endpoint, protocol, port, method, batch_size, on_success, on_failure,
            byte_limit, request_timeout, max_retry_delay_seconds, buffer_capacity,
            custom_retry_codes, event_store, session, thread_count, **engine,
        )

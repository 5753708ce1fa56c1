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
from typing import Any

import requests

from .dispatcher import Dispatcher
from .endpoint import collector_uri, warn_if_https_by_default
from .event_store import BLOCK, BatchStore, EventStore, InMemoryEventStore
from .legacy_store import LegacyStoreAdapter
from .process import REGISTRY
from .record import Record, record_of
from .retry import is_success
from .settings import DEFAULT_BATCH_SIZE, DEFAULTS, EmitterSettings, keyword_signature
from .stats import EmitterStats
from .transport import TransportFactory
from .typing import (
    Callbacks as CallbackTuple,
)
from .typing import (
    FailureCallback,
    HttpProtocol,
    Method,
    PayloadDict,
    RequestTimeout,
    SuccessCallback,
)
from .worker import Callbacks

logger = logging.getLogger("snowplow_threaded.emitters")

DEFAULT_MAX_LENGTH = DEFAULT_BATCH_SIZE  # the reference's name


class Emitter:
    """Buffers events and sends them to one collector from background threads.

    :param endpoint: ``host``, ``host:port`` or ``http(s)://host[:port][/path]``
    :param protocol: ``"https"`` (default) or ``"http"``, for the bare forms
    :param port: overrides the endpoint's port
    :param method: ``"post"`` (batched, default) or ``"get"`` (one event per request)

    Every other argument is a setting of :class:`~.settings.EmitterSettings` (the table in
    ``docs/settings.md`` says what each does): the reference's by position, in its order,
    then ``thread_count``; the rest by keyword. :attr:`settings` holds them all, checked.
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
        **settings: Any,
    ) -> None:
        given = {k: v for k, v in locals().items() if k in DEFAULTS}
        self.settings = settings_ = EmitterSettings.of({**given, **settings})
        self.endpoint = collector_uri(endpoint, protocol or self._default_protocol, port, method)
        if protocol is None and self._default_protocol == "https":
            warn_if_https_by_default(endpoint)
        self.method = method
        # the reference's attributes (on_success/on_failure may be replaced at any time)
        self.batch_size = settings_.batch_size_for(method)
        self.byte_limit = byte_limit
        self.request_timeout = request_timeout
        self.on_success = on_success
        self.on_failure = on_failure
        self.on_drop = settings_.on_drop
        self.max_retry_delay_seconds = max_retry_delay_seconds
        self.custom_retry_codes = settings_.custom_retry_codes
        self.session = session
        self.thread_count = thread_count
        self.flush_timeout = settings_.flush_timeout
        self.shutdown_timeout = settings_.shutdown_timeout
        if event_store is None:
            event_store = InMemoryEventStore(buffer_capacity=settings_.capacity,
                                             when_full=settings_.when_full,
                                             max_bytes=settings_.buffer_max_bytes)
        self.event_store = event_store
        store: Any = event_store
        if not hasattr(store, "take"):
            store = LegacyStoreAdapter(store)
        self._dispatcher = dispatcher = Dispatcher(
            store, settings_, self.batch_size, TransportFactory(self.endpoint, method, settings_),
            _weak_callbacks(self), self.endpoint)
        REGISTRY.register(dispatcher)
        self._spool = _attach_spool(store, dispatcher, settings_)
        # an emitter dropped without close(): drain in the background, then let go
        timeout = settings_.shutdown_timeout
        finalizer = weakref.finalize(
            self, lambda: dispatcher.begin_close(time.monotonic() + timeout))
        finalizer.atexit = False

    # -- tracking -------------------------------------------------------------------------------
    def input(self, payload: PayloadDict) -> None:
        """Buffer one event payload (values are sent as strings). Never blocks, unless
        ``when_full="block"``. Raises ``ValueError`` for an empty payload."""
        self._dispatcher.admit(record_of(payload))

    def admit_record(self, record: Record, pid: int = 0) -> bool:
        """Buffer one event as a record (:mod:`.record`); False if it was dropped (buffer
        full or emitter closed). *pid*: the caller's :func:`~.process_id.current_pid`, if
        it has it."""
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
        timeout = self.shutdown_timeout if timeout is None else timeout
        if self._spool is None:
            return self._dispatcher.close(timeout)
        deadline = time.monotonic() + max(timeout, 0.0)  # the store keeps what is left
        self._spool.begin_close(deadline)
        closed = self._dispatcher.finish_close(deadline)
        return self._spool.finish_close(deadline) and closed

    @property
    def closed(self) -> bool:
        return self._dispatcher.closed

    def stats(self) -> EmitterStats:
        """A snapshot of this emitter's counters."""
        stats = self._dispatcher.stats()
        if self._spool is not None:
            stats.disk = self._spool.disk_stats()
        return stats

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


def _attach_spool(store: Any, dispatcher: Dispatcher, settings: EmitterSettings) -> Any:
    """A store that writes in the background and keeps what close() leaves for the next
    process (``DiskEventStore``): it wakes the dispatcher when a take found nothing written
    yet (and a track() waiting for room, when it made some), has it say the drops it made
    on its own thread, and the process registry closes it at exit, after the deadline its
    dispatcher drains to (see :meth:`DiskEventStore.finish_close`). None for any other
    store."""
    if not hasattr(store, "set_wakeup"):
        return None
    store.set_wakeup(lambda: dispatcher.flush(0.0, wait=False), settings.shutdown_timeout,
                     dispatcher.say_drops, settings.when_full == BLOCK)
    REGISTRY.register(store)
    return store


def _weak_callbacks(emitter: Emitter) -> Callbacks:
    """The emitter's current callbacks (on_success, on_failure, on_drop), without keeping
    the emitter alive."""
    ref = weakref.ref(emitter)

    def current() -> CallbackTuple:
        obj = ref()
        return ((None, None, None) if obj is None
                else (obj.on_success, obj.on_failure, obj.on_drop))

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
        **settings: Any,
    ) -> None:
        super().__init__(
            endpoint, protocol, port, method, batch_size, on_success, on_failure,
            byte_limit, request_timeout, max_retry_delay_seconds, buffer_capacity,
            custom_retry_codes, event_store, session, thread_count, **settings,
        )


Emitter.__init__.__signature__ = keyword_signature(Emitter.__init__)  # type: ignore[attr-defined]
AsyncEmitter.__init__.__signature__ = keyword_signature(  # type: ignore[attr-defined]
    AsyncEmitter.__init__)

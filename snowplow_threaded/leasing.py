"""The worker side of a dispatcher: its state, and leasing, sending and settling batches.

:class:`LeaseDesk` holds everything a dispatcher's workers share (state, counters, backoff,
the batch trigger) under one lock, ``_cond`` (a ``Condition`` over a plain ``Lock``): never
held during network I/O or user callbacks; the store's own lock is taken only inside it,
never the reverse. Worker threads run :func:`worker.send_until`, which calls
:meth:`~LeaseDesk.next_lease` (waits until a batch is due), :meth:`~LeaseDesk.lease_now`
(leases ahead, never waits), :meth:`~LeaseDesk.attempt` (sends and settles) and
:meth:`~LeaseDesk.return_unsent`. :class:`engine.Dispatcher` adds admission, flush, close,
fork re-initialisation and stats.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from .batching import BatchTrigger
from .event_store import BatchStore, Lease
from .retry import Backoff
from .transport import Bodies, Transport
from .worker import Outcome, deliver, report_given_up, send_until

logger = logging.getLogger("snowplow_threaded.engine")

OPEN, CLOSING, CLOSED = "open", "closing", "closed"
#: Least time between two attempts that a flush()/close() may force during a backoff.
PROBE_INTERVAL = 1.0


class LeaseDesk:
    def __init__(
        self,
        store: BatchStore,
        transport_factory: Callable[[], Transport],
        *,
        thread_count: int,
        batch_size: int,
        byte_limit: int | None,
        flush_interval: float,
        max_events_per_request: int,
        backoff: Backoff,
        custom_retry_codes: dict[int, bool],
        max_retries: int | None,
        callbacks: Callable[[], tuple[object, object]],
        name: str,
        shutdown_timeout: float,
    ) -> None:
        self.store = store
        self._transport_factory = transport_factory
        self.thread_count = thread_count
        self.trigger = BatchTrigger(batch_size, byte_limit, flush_interval,
                                    max_events_per_request)
        self.custom_retry_codes = custom_retry_codes
        self.max_retries = max_retries
        self._callbacks = callbacks
        self._name = name
        self.shutdown_timeout = shutdown_timeout
        #: called in a forked child after re-initialisation (e.g. fresh user-session pools)
        self.after_fork: Callable[[], None] | None = None
        self._backoff = backoff
        self._init_runtime()

    def _init_runtime(self) -> None:
        """(Re)create every lock, thread handle and counter: at init and in a fork child."""
        self._pid = os.getpid()
        self._handover_armed = False  # buffered without a sender; a child may take it
        self._cond = threading.Condition(threading.Lock())
        self._state = OPEN
        self._workers: list[threading.Thread] = []
        self._started = False
        self._resume_at = 0.0  # monotonic time before which nothing is sent (backoff)
        self._last_attempt = 0.0
        self._urgent_until = 0  # events with seq below this are due now (flush requested)
        self._close_deadline = 0.0
        self._lost_on_close = False
        # close() gave up and the store keeps what is left (on disk) for the next process
        self._store_keeps = False
        self._flush_deadline = 0.0  # the latest deadline of a waiting flush()
        self._in_flight = 0
        self._deciding = 0  # workers inside next_lease (may sleep): the caller must notify
        self._counts = {"sent": 0, "failed": 0, "retried": 0, "requests": 0, "bytes": 0}
        self._dropped: dict[str, int] = {}
        self._last_error: str | None = None
        self.trigger.reset()
        self._backoff.reset()

    # -- worker side ----------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._send_until(None)
        except BaseException:  # pragma: no cover - a bug; keep the process alive, say so
            logger.exception("snowplow worker died")
            raise

    def _send_until(self, until: float | None) -> None:
        """Lease and send batches on this thread until told to stop (or *until*)."""
        send_until(self, self._transport_factory(), until)

    def attempt(self, lease: Lease, transport: Transport, bodies: Bodies | None = None,
                meanwhile: Callable[[], object] | None = None) -> None:
        """Send *lease* once (see :func:`worker.deliver`) and settle it."""
        on_success, on_failure = self._callbacks()
        outcome = deliver(lease, transport, self.custom_retry_codes, self.max_retries,
                          on_success, on_failure, bodies, meanwhile)  # type: ignore[arg-type]
        self._finish(lease, outcome)

    def lease_now(self) -> Lease | None:
        """The next batch if one is due now (not in a backoff; a full batch right after a
        request only with ``max_events_per_request`` waiting, see ``BatchTrigger``), else
        None; never waits. For leasing ahead (:func:`worker.send_until`)."""
        with self._cond:
            now = time.monotonic()
            if (self._state is CLOSED or self._pid != os.getpid() or now < self._resume_at
                    or not self._is_due(now)):
                return None
            lease = self.store.take(self.trigger.max_events_per_request)
            if lease is not None:
                self.trigger.due_at = None
                self._in_flight += len(lease)
                self._last_attempt = now
            return lease

    def may_send(self, lease: Lease) -> bool:
        """Whether a batch leased ahead may go now; if not, it goes back to the store."""
        with self._cond:
            now = time.monotonic()
            if (self._state is OPEN or (self._state is CLOSING and now < self._close_deadline)
                    ) and self._pid == os.getpid() and now >= self._resume_at:
                return True
        self.return_unsent(lease)
        return False

    def return_unsent(self, lease: Lease) -> None:
        """Put back a batch leased ahead and never sent (no attempt counted). After close()
        gave up, it is dropped and reported like the rest (``on_failure(0, payloads)``)."""
        with self._cond:
            self._in_flight -= len(lease)
            given_up = self._state is CLOSED and not self._store_keeps
            if given_up:
                self._dropped["shutdown_timeout"] = (self._dropped.get("shutdown_timeout", 0)
                                                     + len(lease))
            self.store.settle(lease, retry=not given_up)
            self._cond.notify_all()
        if given_up:
            report_given_up(self._callbacks()[1], lease.records)  # type: ignore[arg-type]

    def _is_due(self, now: float) -> bool:
        store = self.store
        pending = store.pending()
        forced = (self._state is not OPEN
                  or self._urgent_until > store.next_seq() - pending)
        return self.trigger.is_due(now, pending, forced, self._last_attempt)

    def next_lease(self, until: float | None) -> Lease | None:
        """Block until a batch is due and lease it; None when the worker should stop (or,
        with *until*, when that monotonic deadline passes)."""
        with self._cond:
            self._deciding += 1
            try:
                return self._next_lease_locked(until)
            finally:
                self._deciding -= 1

    def _next_lease_locked(self, until: float | None) -> Lease | None:
        """The body of ``next_lease``; ``_cond`` is held."""
        while True:
            if self._pid != os.getpid() or self._state is CLOSED:
                return None
            now = time.monotonic()
            deadline = until if self._state is OPEN else self._close_deadline
            if deadline is not None and now >= deadline:
                return None
            if until is not None and self.store.pending() == 0:
                return None  # inline drain: nothing left to send
            if now < self._resume_at:
                wait: float | None = self._resume_at - now
            elif self._is_due(now):
                lease = self.store.take(self.trigger.max_events_per_request)
                if lease is not None:
                    self.trigger.due_at = None
                    self._in_flight += len(lease)
                    self._last_attempt = now
                    if self.store.pending() >= self.trigger.batch_size:
                        self._cond.notify()  # a backlog: wake another worker
                    return lease
                wait = self.trigger.flush_interval  # the store said pending, gave nothing
            elif self._state is CLOSING and self.store.pending() == 0:
                return None
            else:
                wait = self.trigger.wait(now, self.store.pending(), self._last_attempt)
            if deadline is not None:
                wait = deadline - now if wait is None else min(wait, deadline - now)
            self._cond.wait(wait)

    def _finish(self, lease: Lease, outcome: Outcome) -> None:
        result = outcome.result
        with self._cond:
            counts = self._counts
            counts["requests"] += result.requests
            counts["bytes"] += result.nbytes
            if result.requests:
                self.trigger.refine(result.nbytes, len(lease))
            counts["sent"] += outcome.delivered
            self._in_flight -= len(lease)
            rest = len(lease) - outcome.delivered
            if result.error is not None:
                self._last_error = result.error
            retry = outcome.retry and self._state is not CLOSED and self._pid == os.getpid()
            if rest and retry:
                counts["retried"] += rest
                delay = self._backoff.next_delay(result.retry_after)
                now = time.monotonic()
                self._resume_at = max(self._resume_at, now + delay)
                # a flush()/close() that began while this attempt was in flight waits too
                waiting = max(self._flush_deadline,
                              self._close_deadline if self._state is CLOSING else 0.0)
                if waiting > now:
                    self._probe_if_blocked(waiting)
            elif rest and outcome.retry:
                if not self._store_keeps:
                    self._dropped["shutdown_timeout"] = (self._dropped.get("shutdown_timeout", 0)
                                                         + rest)
            else:
                counts["failed"] += rest
                self._backoff.reset()
            self.store.settle(lease, retry, outcome.delivered)
            self._cond.notify_all()

    def _probe_if_blocked(self, deadline: float) -> None:
        """During a backoff longer than the caller will wait, allow one early attempt (at
        most one per PROBE_INTERVAL, so a flush() loop cannot hammer a dead collector)."""
        probe_at = max(time.monotonic(), self._last_attempt + PROBE_INTERVAL)
        if self._resume_at > deadline and probe_at < deadline:
            self._resume_at = probe_at

"""The dispatcher: one object owns an emitter's admission -> drain -> pause -> stop.

Data path: ``admit()`` (caller thread) puts an encoded event in the store; worker threads
lease batches (``_next_lease``), send them (:func:`worker.deliver`, no lock held) and
settle them (``_finish``). ``flush()`` and ``close()`` wait on the same condition.

Locking (one lock per dispatcher, plus the store's own):

* ``_cond`` (a ``Condition`` over a plain ``Lock``) guards the state, counters, backoff
  and worker list. It is never held during network I/O or user callbacks. The hot path
  takes it only to wake a worker that may be asleep (``_deciding``) at the 1st pending
  event, the batch-size-th or the byte limit, or on a rare path (closed, first event).
* The store's lock guards the buffer (``put`` appends without it, see there). Order:
  ``_cond`` then store lock, never the reverse.

Nothing here waits without a deadline: an idle worker sleeps until an event wakes it, or
at most ``flush_interval`` (a safety net for a wake-up lost to racing lock-free appends;
one wake-up a second, not a busy loop).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from . import lifecycle
from .batching import BatchTrigger
from .event_store import BatchStore, Lease
from .retry import Backoff
from .stats import EmitterStats
from .transport import Transport
from .typing import PayloadDict
from .worker import Outcome, deliver, report_given_up

logger = logging.getLogger("snowplow_threaded.engine")

OPEN, CLOSING, CLOSED = "open", "closing", "closed"
#: Least time between two attempts that a flush()/close() may force during a backoff.
PROBE_INTERVAL = 1.0
#: Most time close() spends past its deadline waiting for idle workers to exit.
JOIN_GRACE = 0.1


class Dispatcher:
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
        self._flush_deadline = 0.0  # the latest deadline of a waiting flush()
        self._in_flight = 0
        self._deciding = 0  # workers inside _next_lease (may sleep): the caller must notify
        self._counts = {"sent": 0, "failed": 0, "retried": 0, "requests": 0, "bytes": 0}
        self._dropped: dict[str, int] = {}
        self._last_error: str | None = None
        self.trigger.reset()
        self._backoff.reset()

    # -- caller side (hot path) -----------------------------------------------------------------
    def admit(self, record: PayloadDict, pid: int = 0) -> bool:
        """Buffer one event (a dict of strings, not copied: the caller must not change it).
        O(1), never blocks on I/O. False if it was dropped (full or closed). *pid*: the
        caller's ``os.getpid()``, if it has it (saves a system call)."""
        if self._pid != (pid or os.getpid()):
            self.reinit_after_fork()
        if self._state is not OPEN:
            with self._cond:
                self._dropped["closed"] = self._dropped.get("closed", 0) + 1
            return False
        pending = self.store.put(record)
        if pending < 0:
            return False
        if self._state is CLOSED:  # close() ran between the check above and the put
            return self._drop_late()
        if not self._started:
            self.trigger.estimate(record)
            self._start_workers()
        # wake a worker only if one may be asleep: one that is sending re-checks the store
        # (under _cond, after counting itself in _deciding) before it sleeps again
        if self._deciding and self.trigger.is_wake_point(pending):
            with self._cond:
                self._cond.notify()
        return True

    def _drop_late(self) -> bool:
        """Discard (and count) what was put after close()'s own discard, under ``_cond``."""
        with self._cond:
            late = self.store.discard_pending()
            if late:
                self._dropped["closed"] = self._dropped.get("closed", 0) + late
        return False

    def _start_workers(self) -> None:
        if not lifecycle.may_start_threads():
            self._handover_armed = True
            lifecycle.arm_handover()
            return
        with self._cond:
            if self._started or self._state is not OPEN:
                return
            self._started = True
            for index in range(self.thread_count):
                thread = threading.Thread(
                    target=self._run, name=f"snowplow-{self._name}-{index}", daemon=True
                )
                try:
                    thread.start()
                except RuntimeError:  # interpreter shutting down: close() drains inline
                    logger.debug("cannot start a worker thread now", exc_info=True)
                    break
                self._workers.append(thread)

    # -- worker side ----------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._send_until(None)
        except BaseException:  # pragma: no cover - a bug; keep the process alive, say so
            logger.exception("snowplow worker died")
            raise

    def _send_until(self, until: float | None) -> None:
        """Lease and send batches on this thread until told to stop (or *until*)."""
        transport = self._transport_factory()
        try:
            while (lease := self._next_lease(until)) is not None:
                self._attempt(lease, transport)
        finally:
            transport.close()

    def _attempt(self, lease: Lease, transport: Transport) -> None:
        on_success, on_failure = self._callbacks()
        outcome = deliver(lease, transport, self.custom_retry_codes, self.max_retries,
                          on_success, on_failure)  # type: ignore[arg-type]
        self._finish(lease, outcome)

    def _is_due(self, now: float) -> bool:
        store = self.store
        pending = store.pending()
        forced = (self._state is not OPEN
                  or self._urgent_until > store.next_seq() - pending)
        return self.trigger.is_due(now, pending, forced, self._last_attempt)

    def _next_lease(self, until: float | None) -> Lease | None:
        """Block until a batch is due and lease it; None when the worker should stop (or,
        with *until*, when that monotonic deadline passes)."""
        with self._cond:
            self._deciding += 1
            try:
                return self._next_lease_locked(until)
            finally:
                self._deciding -= 1

    def _next_lease_locked(self, until: float | None) -> Lease | None:
        """The body of ``_next_lease``; ``_cond`` is held."""
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
                self._dropped["shutdown_timeout"] = self._dropped.get("shutdown_timeout", 0) + rest
            else:
                counts["failed"] += rest
                self._backoff.reset()
            self.store.settle(lease, retry, outcome.delivered)
            self._cond.notify_all()

    # -- flush / close ------------------------------------------------------------------------
    def _probe_if_blocked(self, deadline: float) -> None:
        """During a backoff longer than the caller will wait, allow one early attempt (at
        most one per PROBE_INTERVAL, so a flush() loop cannot hammer a dead collector)."""
        probe_at = max(time.monotonic(), self._last_attempt + PROBE_INTERVAL)
        if self._resume_at > deadline and probe_at < deadline:
            self._resume_at = probe_at

    def flush(self, timeout: float, wait: bool = True) -> bool:
        """Send everything buffered now; with *wait*, block until all events tracked before
        the call are delivered or failed for good (True) or *timeout* passes (False)."""
        if self._pid != os.getpid():
            self.reinit_after_fork()
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._cond:
            target = self.store.next_seq()
            self._urgent_until = max(self._urgent_until, target)
            if wait:
                self._flush_deadline = max(self._flush_deadline, deadline)
            self._probe_if_blocked(deadline)
            self._cond.notify_all()
            if not wait or threading.current_thread() in self._workers:
                return self._settled_before(target)
        if not any(t.is_alive() for t in self._workers):
            self._drain_inline(deadline)
        return self._wait_settled(target, deadline)

    def _settled_before(self, target: int) -> bool:
        oldest = self.store.oldest_seq()
        return oldest is None or oldest >= target

    def _wait_settled(self, target: int, deadline: float) -> bool:
        with self._cond:
            while not self._settled_before(target):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True


    def _drain_inline(self, deadline: float) -> None:
        """Send on the calling thread: used when no worker runs (e.g. at interpreter
        shutdown, where new threads cannot start). Not if a forked child took the buffer
        over (``lifecycle.take_back_handover``): it is the child's to send."""
        if self._handover_armed:
            self._handover_armed = False
            if not lifecycle.take_back_handover():
                handed = self.store.discard_pending()
                logger.debug("%d buffered event(s) are sent by a child process", handed)
                return
        self._send_until(deadline)

    def begin_close(self, deadline: float) -> None:
        """Stop admission and tell the workers to drain until *deadline* (monotonic)."""
        if self._pid != os.getpid():
            self.reinit_after_fork()
        with self._cond:
            if self._state is not OPEN:
                return
            self._state = CLOSING
            self._close_deadline = deadline
            self._probe_if_blocked(deadline)
            self._cond.notify_all()

    def finish_close(self, deadline: float) -> bool:
        """Wait for the drain until *deadline*, then drop what is left and stop the
        workers. True if nothing was lost. Idempotent."""
        if self._pid != os.getpid():
            self.reinit_after_fork()
        if self._state is OPEN:
            self.begin_close(deadline)
        if threading.current_thread() in self._workers:
            # from a callback: this worker's own batch is still open, so waiting here
            # would only run out the deadline; the workers drain until it (False: not
            # known to be delivered yet)
            return False
        if self._state is CLOSED:
            return not self._lost_on_close and self.store.oldest_seq() is None
        if not any(t.is_alive() for t in self._workers) and self._pid == os.getpid():
            self._drain_inline(deadline)
        delivered = self._wait_settled(self.store.next_seq(), deadline)
        given_up: list[dict[str, str]] = []
        with self._cond:
            self._state = CLOSED
            while (lease := self.store.take(self.trigger.max_events_per_request)) is not None:
                given_up.extend(lease.records)  # never sent: reported to on_failure below
                self.store.settle(lease, retry=False)
            lost = len(given_up) + self.store.discard_pending()
            self._lost_on_close = not delivered or lost > 0
            if lost:
                self._dropped["shutdown_timeout"] = self._dropped.get("shutdown_timeout", 0) + lost
            self._cond.notify_all()
            workers = list(self._workers)
        # idle workers exit as soon as they see CLOSED: give them a moment even when the
        # deadline has passed (one in a request ends with it, up to request_timeout later)
        join_until = max(deadline, time.monotonic() + JOIN_GRACE)
        for thread in workers:
            if thread is not threading.current_thread():
                thread.join(max(0.0, join_until - time.monotonic()))
        if given_up:
            report_given_up(self._callbacks()[1], given_up)  # type: ignore[arg-type]
        if not delivered:
            stats = self.stats()
            logger.warning(
                "emitter %s closed with %d event(s) undelivered (collector unreachable or "
                "too slow within the deadline; last error: %s)",
                self._name, stats.in_flight + lost, stats.last_error,
            )
        return delivered and not lost

    def close(self, timeout: float) -> bool:
        deadline = time.monotonic() + max(timeout, 0.0)
        self.begin_close(deadline)
        return self.finish_close(deadline)

    @property
    def closed(self) -> bool:
        return self._state is not OPEN

    # -- fork ------------------------------------------------------------------------------
    def reinit_after_fork(self) -> None:
        """In a forked child: forget the parent's threads, locks, buffer and counters
        without acquiring anything the parent's threads may have held at fork time. The
        parent still owns (and sends) the inherited events. Workers restart lazily."""
        with lifecycle.reinit_guard():
            if self._pid != os.getpid():
                self._reinit_locked()

    def _reinit_locked(self) -> None:
        was_closed = self._state is CLOSED
        # a parent that could not send offered its buffer to one child (uWSGI master)
        keep = self._handover_armed and not was_closed and lifecycle.claim_handover()
        self.store.reset_after_fork(keep=keep)
        self._init_runtime()
        if was_closed:
            self._state = CLOSED
        if self.after_fork is not None:
            self.after_fork()
        if keep:
            self._start_workers()

    def stats(self) -> EmitterStats:
        if self._pid != os.getpid():
            self.reinit_after_fork()
        store_drops = self.store.drop_counts()
        with self._cond:
            return EmitterStats.snapshot(
                tracked=self.store.next_seq(), pending=self.store.pending(),
                in_flight=self._in_flight, counts=self._counts,
                dropped=[self._dropped, store_drops], last_error=self._last_error,
            )

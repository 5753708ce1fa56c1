"""The dispatcher: the one object that owns an emitter's engine — admission, its workers,
flush, close, fork re-initialisation and stats.

:meth:`~Dispatcher.admit` (the caller's thread) puts a record in the store; each sender
thread runs a :class:`~.worker.Worker` that leases batches (:meth:`~Dispatcher.next_lease`
waits until one is due and out any backoff), sends them with no lock held and settles them
(:meth:`~Dispatcher.settle`). ``flush()``/``close()`` wait for the events before them.

**Lock**: ``_cond`` (a ``Condition`` over a plain ``Lock``) guards the state, counters,
pacing, batch trigger and thread list; never held during network I/O or user callbacks.
``admit()`` takes it only to wake a worker that may be asleep (``_deciding``) at a wake
point. The store's own lock is taken inside ``_cond``, never the reverse.

**Fork**: every entry point calls :meth:`~Dispatcher.ensure_own_process` first: in a
forked child, the first call re-initialises the dispatcher without acquiring anything the
parent's threads may have held (the inherited buffer is dropped: the parent sends it). A
worker from before the fork (a thread that forked from a callback) has an old
:attr:`~Dispatcher.generation`: it gets nothing and settles nothing.

Nothing waits without a deadline: an idle worker sleeps until an event wakes it, or at most
``flush_interval`` (a safety net for a wake-up lost to racing lock-free appends).
"""

from __future__ import annotations

import logging
import os
import threading
import time

from .batching import BatchTrigger
from .event_store import BatchStore, Lease
from .process import HANDOVER, REGISTRY, UWSGI
from .process_id import current_pid
from .retry import Backoff, Pacer
from .settings import EmitterSettings
from .stats import EmitterStats
from .transport import TransportFactory
from .typing import PayloadDict, PayloadDictList
from .worker import Callbacks, Verdict, Worker, report_given_up

logger = logging.getLogger("snowplow_threaded.engine")

OPEN, CLOSING, CLOSED = "open", "closing", "closed"
#: Most time close() spends past its deadline waiting for idle workers to exit.
JOIN_GRACE = 0.1


class Dispatcher:
    """One emitter's engine (see the module); *batch_size*: ``settings.batch_size_for()``."""

    def __init__(self, store: BatchStore, settings: EmitterSettings, batch_size: int,
                 transport: TransportFactory, callbacks: Callbacks, name: str) -> None:
        self.store = store
        self.settings = settings
        self.shutdown_timeout = settings.shutdown_timeout
        self.trigger = BatchTrigger(batch_size, settings.byte_limit, settings.flush_interval,
                                    settings.max_events_per_request)
        self._transport = transport
        self._callbacks = callbacks
        self._name = name
        self._pacer = Pacer(Backoff(cap=settings.max_retry_delay_seconds))
        self.generation = 0
        self._init_runtime()

    def _init_runtime(self) -> None:
        """(Re)create every lock, thread handle and counter: at init and in a fork child."""
        self._pid = os.getpid()
        self.generation += 1
        self._handover_armed = False  # buffered without a sender; a child may take it
        self._cond = threading.Condition(threading.Lock())
        self._state = OPEN
        self._threads: list[threading.Thread] = []
        self._started = False
        self._urgent_until = 0  # events with seq below this are due now (flush requested)
        self._close_deadline = 0.0
        self._lost_on_close = False
        self._flush_deadline = 0.0  # the latest deadline of a waiting flush()
        self._in_flight = 0
        self._deciding = 0  # workers inside next_lease (may sleep): admit() must notify
        self._counts = {"sent": 0, "failed": 0, "retried": 0, "requests": 0, "bytes": 0}
        self._dropped: dict[str, int] = {}
        self._last_error: str | None = None
        self.trigger.reset()
        self._pacer.reset()

    # -- the fork check ---------------------------------------------------------------------
    def ensure_own_process(self, pid: int = 0) -> None:
        """The check every entry point makes first: in a forked child, the first call
        re-initialises this dispatcher (see the module). *pid*: the caller's
        :func:`~.process_id.current_pid` if it has it (``track()`` does)."""
        if self._pid != (pid or current_pid()):
            with REGISTRY.reinit_lock.get():  # two threads of a child: one resets
                if self._pid != os.getpid():
                    self._reinit_in_child()

    def _reinit_in_child(self) -> None:
        was_closed = self._state is CLOSED
        # a parent that could not send offered its buffer to one child (uWSGI master)
        keep = self._handover_armed and not was_closed and HANDOVER.claim()
        self.store.reset_after_fork(keep=keep)
        self._init_runtime()
        if was_closed:
            self._state = CLOSED
        self._transport.after_fork()
        if keep:
            self._start_workers()

    # -- the caller's side (hot path) ---------------------------------------------------------
    def admit(self, record: PayloadDict, pid: int = 0) -> bool:
        """Buffer one event (a dict of strings, not copied: the caller must not change it).
        O(1), never blocks on I/O. False if it was dropped (full or closed). *pid*: see
        :meth:`ensure_own_process`."""
        self.ensure_own_process(pid)
        if self._state is not OPEN:
            with self._cond:
                self._drop("closed", 1)
            return False
        pending = self.store.put(record)
        if pending < 0:
            return False
        if self._state is CLOSED:  # close() ran between the check above and the put:
            with self._cond:  # drop (and count) what came after close()'s own discard
                self._drop("closed", self.store.discard_pending())
            return False
        if not self._started:
            self.trigger.estimate(record)
            self._start_workers()
        # wake a worker only if one may be asleep: one that is sending re-checks the store
        # (under _cond, after counting itself in _deciding) before it sleeps again
        if self._deciding and self.trigger.is_wake_point(pending):
            with self._cond:
                self._cond.notify()
        return True

    def _start_workers(self) -> None:
        if not UWSGI.may_start_threads():
            self._handover_armed = True
            HANDOVER.arm()
            return
        with self._cond:
            if self._started or self._state is not OPEN:
                return
            self._started = True
            for index in range(self.settings.thread_count):
                thread = threading.Thread(target=self._worker().run, daemon=True,
                                          name=f"snowplow-{self._name}-{index}")
                try:
                    thread.start()
                except RuntimeError:  # interpreter shutting down: close() drains inline
                    logger.debug("cannot start a worker thread now", exc_info=True)
                    break
                self._threads.append(thread)

    def _worker(self, until: float | None = None) -> Worker:
        settings = self.settings
        return Worker(self, self._transport.open(), self.generation,
                      settings.custom_retry_codes, settings.max_retries, self._callbacks, until)

    # -- the workers' side (:class:`~.worker.Leases`) ---------------------------------------
    def next_lease(self, worker: Worker) -> Lease | None:
        """Block until a batch is due and lease it; None when *worker* should stop (or,
        for an inline drain, when its deadline passes)."""
        self.ensure_own_process()
        with self._cond:
            self._deciding += 1
            try:
                return self._next_lease_locked(worker)
            finally:
                self._deciding -= 1

    def _next_lease_locked(self, worker: Worker) -> Lease | None:
        until = worker.until
        while True:
            if worker.generation != self.generation or self._state is CLOSED:
                return None
            now = time.monotonic()
            deadline = until if self._state is OPEN else self._close_deadline
            if deadline is not None and now >= deadline:
                return None
            if until is not None and self.store.pending() == 0:
                return None  # inline drain: nothing left to send
            if now < self._pacer.resume_at:
                wait: float | None = self._pacer.resume_at - now
            elif self._is_due(now):
                lease = self._take(now)
                if lease is not None:
                    if self.store.pending() >= self.trigger.batch_size:
                        self._cond.notify()  # a backlog: wake another worker
                    return lease
                wait = self.trigger.flush_interval  # the store said pending, gave nothing
            elif self._state is CLOSING and self.store.pending() == 0:
                return None
            else:
                wait = self.trigger.wait(now, self.store.pending(), self._pacer.last_attempt)
            if deadline is not None:
                wait = deadline - now if wait is None else min(wait, deadline - now)
            self._cond.wait(wait)

    def lease_now(self, worker: Worker) -> Lease | None:
        """The next batch if one is due now (see ``BatchTrigger`` for a full batch right
        after a request) and no backoff runs, else None; never waits."""
        self.ensure_own_process()
        with self._cond:
            now = time.monotonic()
            if (worker.generation != self.generation or self._state is CLOSED
                    or now < self._pacer.resume_at or not self._is_due(now)):
                return None
            return self._take(now)

    def _take(self, now: float) -> Lease | None:
        lease = self.store.take(self.trigger.max_events_per_request)
        if lease is not None:
            self.trigger.due_at = None
            self._in_flight += len(lease)
            self._pacer.attempted(now)
        return lease

    def _is_due(self, now: float) -> bool:
        store = self.store
        pending = store.pending()
        forced = (self._state is not OPEN
                  or self._urgent_until > store.next_seq() - pending)
        return self.trigger.is_due(now, pending, forced, self._pacer.last_attempt)

    def may_send(self, worker: Worker, lease: Lease) -> bool:
        """Whether a batch leased ahead may go now; if not, it goes back to the store."""
        self.ensure_own_process()
        with self._cond:
            now = time.monotonic()
            if (worker.generation == self.generation and now >= self._pacer.resume_at
                    and (self._state is OPEN
                         or (self._state is CLOSING and now < self._close_deadline))):
                return True
        self.return_unsent(worker, lease)
        return False

    def return_unsent(self, worker: Worker, lease: Lease) -> None:
        """Put back a batch leased ahead and never sent (after close() gave up: dropped,
        counted and reported like the rest, ``on_failure(0, payloads)``)."""
        self.ensure_own_process()
        with self._cond:
            if worker.generation != self.generation:
                return  # leased before a fork: the parent's
            self._in_flight -= len(lease)
            given_up = self._state is CLOSED
            if given_up:
                self._drop("shutdown_timeout", len(lease))
            self.store.settle(lease, retry=not given_up)
            self._cond.notify_all()
        if given_up:
            report_given_up(self._callbacks()[1], lease.records)

    def settle(self, worker: Worker, lease: Lease, verdict: Verdict) -> None:
        """Apply *verdict* to *lease*: count it, start or end a backoff, and settle it
        with the store (what is retried goes back ahead of newer events)."""
        self.ensure_own_process()
        result = verdict.result
        with self._cond:
            if worker.generation != self.generation:
                return  # sent before a fork: the parent's
            counts = self._counts
            counts["requests"] += result.requests
            counts["bytes"] += result.nbytes
            if result.requests:
                self.trigger.refine(result.nbytes, len(lease))
            counts["sent"] += verdict.delivered
            self._in_flight -= len(lease)
            rest = len(lease) - verdict.delivered
            if result.error is not None:
                self._last_error = result.error
            retry = verdict.retry and self._state is not CLOSED
            if rest and retry:
                counts["retried"] += rest
                # a flush()/close() that began while this attempt was in flight waits too
                waiting = max(self._flush_deadline,
                              self._close_deadline if self._state is CLOSING else 0.0)
                self._pacer.failed(time.monotonic(), result.retry_after, waiting)
            elif rest and verdict.retry:
                self._drop("shutdown_timeout", rest)
            else:
                counts["failed"] += rest
                self._pacer.succeeded()
            self.store.settle(lease, retry, verdict.delivered)
            self._cond.notify_all()

    def _drop(self, reason: str, count: int) -> None:
        if count:
            self._dropped[reason] = self._dropped.get(reason, 0) + count

    # -- flush / close ----------------------------------------------------------------------
    def flush(self, timeout: float, wait: bool = True) -> bool:
        """Send everything buffered now; with *wait*, block until all events tracked before
        the call are delivered or failed for good (True) or *timeout* passes (False)."""
        self.ensure_own_process()
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._cond:
            target = self.store.next_seq()
            self._urgent_until = max(self._urgent_until, target)  # due now
            if wait:
                self._flush_deadline = max(self._flush_deadline, deadline)
            self._pacer.probe_before(deadline, time.monotonic())
            self._cond.notify_all()
            if not wait or threading.current_thread() in self._threads:
                return self._settled_before(target)
        if not any(thread.is_alive() for thread in self._threads):
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
        over (:mod:`.process.handover`): it is the child's to send."""
        if self._handover_armed:
            self._handover_armed = False
            if not HANDOVER.take_back():
                handed = self.store.discard_pending()
                logger.debug("%d buffered event(s) are sent by a child process", handed)
                return
        self._worker(until=deadline).run()

    def begin_close(self, deadline: float) -> None:
        """Stop admission and tell the workers to drain until *deadline* (monotonic)."""
        self.ensure_own_process()
        with self._cond:
            if self._state is not OPEN:
                return
            self._state = CLOSING
            self._close_deadline = deadline
            self._pacer.probe_before(deadline, time.monotonic())
            self._cond.notify_all()

    def finish_close(self, deadline: float) -> bool:
        """Wait for the drain until *deadline*, then drop what is left and stop the
        workers. True if nothing was lost. Idempotent."""
        self.begin_close(deadline)
        if threading.current_thread() in self._threads:
            # from a callback: this worker's own batch is still open, so waiting here would
            # only run out the deadline; the workers drain until it (not known delivered)
            return False
        if self._state is CLOSED:
            return not self._lost_on_close and self.store.oldest_seq() is None
        if not any(thread.is_alive() for thread in self._threads):
            self._drain_inline(deadline)
        delivered = self._wait_settled(self.store.next_seq(), deadline)
        given_up: PayloadDictList = []
        with self._cond:
            self._state = CLOSED
            while (lease := self.store.take(self.trigger.max_events_per_request)) is not None:
                given_up.extend(lease.records)  # never sent: reported to on_failure below
                self.store.settle(lease, retry=False)
            lost = len(given_up) + self.store.discard_pending()
            self._lost_on_close = not delivered or lost > 0
            self._drop("shutdown_timeout", lost)
            self._cond.notify_all()
            threads = list(self._threads)
        # idle workers exit as soon as they see CLOSED: give them a moment even when the
        # deadline has passed (one in a request ends with it, up to request_timeout later)
        join_until = max(deadline, time.monotonic() + JOIN_GRACE)
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, join_until - time.monotonic()))
        if given_up:
            report_given_up(self._callbacks()[1], given_up)
        if not delivered:
            stats = self.stats()
            logger.warning("emitter %s closed with %d event(s) undelivered (collector "
                           "unreachable or too slow within the deadline; last error: %s)",
                           self._name, stats.in_flight + lost, stats.last_error)
        return delivered and not lost

    def close(self, timeout: float) -> bool:
        return self.finish_close(time.monotonic() + max(timeout, 0.0))

    @property
    def closed(self) -> bool:
        self.ensure_own_process()
        return self._state is not OPEN

    def stats(self) -> EmitterStats:
        self.ensure_own_process()
        store_drops = self.store.drop_counts()
        with self._cond:
            return EmitterStats.snapshot(
                tracked=self.store.next_seq(), pending=self.store.pending(),
                in_flight=self._in_flight, counts=self._counts,
                dropped=[self._dropped, store_drops], last_error=self._last_error)

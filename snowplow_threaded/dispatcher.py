"""The one object that owns an emitter's engine: admission, workers, flush, close, fork.

:meth:`~Dispatcher.admit` (the caller's thread) puts a record in the store; each sender
thread runs a :class:`~.worker.Worker` that leases batches (:meth:`~Dispatcher.next_lease`
waits until one is due and out any backoff), sends them with no lock held and settles them
(:meth:`~Dispatcher.settle`). ``flush()``/``close()`` wait for the events before them.

**Lock**: ``_cond`` (a ``Condition`` over a plain ``Lock``; ``_room`` is another over it)
guards the state, pacing, batch trigger and thread list; never held during network I/O or
user callbacks. ``admit()`` takes it only to wake a worker that may be asleep at a wake
point, or to wait for room (``when_full="block"``, :mod:`.admission`). The store's lock and
the accounts' (:mod:`.accounts`: what became of every event, lost ones said, never
silently) are taken inside ``_cond``, never the reverse.

**Fork**: every entry point calls :meth:`~Dispatcher.ensure_own_process` first: in a
forked child, the first call re-initialises the dispatcher without acquiring anything the
parent's threads may have held (the inherited buffer is dropped: the parent sends it). A
worker from before the fork (forked from a callback) has an old generation: it gets and
settles nothing.

Nothing waits without a deadline (an idle worker ``flush_interval``: lost wake-ups).
"""

from __future__ import annotations

import logging
import os
import threading
import time

from .accounts import Accounts
from .admission import Door
from .batching import BatchTrigger
from .event_store import BatchStore, Lease, take_all
from .process import HANDOVER, REGISTRY, UWSGI, start_background
from .process_id import current_pid
from .record import Record
from .retry import Backoff, Pacer
from .settings import EmitterSettings
from .stats import EmitterStats
from .transport import TransportFactory
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
        self._request_bytes = transport.request_bytes
        self._accounts = Accounts(name, store, settings, lambda: callbacks()[2])
        self._door = Door(store, settings, self._accounts)
        self._keeps = bool(getattr(store, "keeps_unsent", False))  # kept, not given up
        self.generation = 0
        self._init_runtime()

    def _init_runtime(self) -> None:
        """(Re)create every lock, thread handle and counter: at init and in a fork child."""
        self._pid = os.getpid()
        self.generation += 1
        self._handover_armed = False  # buffered without a sender; a child may take it
        self._cond = threading.Condition(lock := threading.Lock())  # workers, flush, close
        self._room = threading.Condition(lock)  # track() waits on it for room (block)
        self._state = OPEN
        self._threads: list[threading.Thread] = []
        self._started = False
        self._urgent_until = 0  # events with seq below this are due now (flush requested)
        self._close_deadline = 0.0
        self._lost_on_close = False
        self._flush_deadline = 0.0  # the latest deadline of a waiting flush()
        self._in_flight = 0
        self._deciding = 0  # workers inside next_lease (may sleep): admit() must notify
        self.trigger.reset()
        self._pacer.reset()
        self._accounts.reset()

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
    def admit(self, record: Record, pid: int = 0) -> bool:
        """Buffer one event (a :mod:`.record`). O(1); never waits unless full and
        ``when_full="block"``. False if dropped. *pid*: see :meth:`ensure_own_process`."""
        self.ensure_own_process(pid)
        if self._state is not OPEN:
            return self._door.closed(1)
        if not self._started:  # (before the put: a buffer full already needs a sender)
            self.trigger.estimate(record)
            self._start_workers()
        pending = self.store.put(record)
        if pending < 0 and (pending := self._door.full(record, self._room, self._cond,
                                                       self._may_wait)) < 0:
            return False
        if self._state is CLOSED:  # close() ran between the check above and the put: drop
            return self._door.closed(self.store.discard_pending())  # what came after it
        # wake a worker only if one may be asleep (one sending re-checks the store, counted in
        # _deciding, under _cond, before it sleeps again)
        if self._deciding and self.trigger.is_wake_point(pending):
            with self._cond:
                self._cond.notify()
        return True

    def _changed(self) -> None:
        """Wake everyone waiting for the state or the store to change (``_cond`` held)."""
        self._cond.notify_all()
        self._room.notify_all()

    def _may_wait(self) -> bool:
        """Whether a track() may wait for room: a sender runs, not backing off, not it."""
        return (self._state is OPEN and time.monotonic() >= self._pacer.resume_at
                and threading.current_thread() not in self._threads
                and any(thread.is_alive() for thread in self._threads))

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
                    start_background(thread)  # signals go to the application's threads
                except RuntimeError:  # interpreter shutting down: close() drains inline
                    logger.debug("cannot start a worker thread now", exc_info=True)
                    break
                self._threads.append(thread)

    def _worker(self, until: float | None = None) -> Worker:
        return Worker(self, self._transport.open(), self.generation,
                      self.settings.max_retries, self._callbacks, until)

    # -- the workers' side (:class:`~.worker.Leases`) ---------------------------------------
    def next_lease(self, worker: Worker) -> Lease | None:
        """Wait until a batch is due and lease it; None when *worker* should stop."""
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
        after a request) and it may go (:meth:`_may_go`), else None; never waits."""
        self.ensure_own_process()
        with self._cond:
            now = time.monotonic()
            return self._take(now) if self._may_go(worker, now) and self._is_due(now) else None

    def _may_go(self, worker: Worker, now: float) -> bool:
        """Whether a batch leased ahead may be sent now (``_cond`` held): not after a
        failure (the failed batch goes first: a retry never lets newer events overtake)."""
        return (worker.generation == self.generation and now >= self._pacer.resume_at
                and not self._pacer.backoff.failures
                and (self._state is OPEN
                     or (self._state is CLOSING and now < self._close_deadline)))

    def _take(self, now: float) -> Lease | None:
        lease = self.store.take(self.trigger.max_events_per_request, self._request_bytes)
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
            if self._may_go(worker, time.monotonic()):
                return True
        self.return_unsent(worker, lease)
        return False

    def return_unsent(self, worker: Worker, lease: Lease) -> None:
        """Put back a batch leased ahead and never sent (after close() gave up: dropped)."""
        self.ensure_own_process()
        with self._cond:
            if worker.generation != self.generation:
                return  # leased before a fork: the parent's
            self._in_flight -= len(lease)
            if given_up := self._state is CLOSED and not self._keeps:
                self._accounts.drop("shutdown_timeout", len(lease))
            self.store.settle(lease, retry=not given_up)
            self._changed()
        if given_up:
            report_given_up(self._callbacks()[1], lease.records)

    def settle(self, worker: Worker, lease: Lease, verdict: Verdict) -> None:
        """Apply *verdict* to *lease*: count it, pace the next attempt, settle it."""
        self.ensure_own_process()
        result = verdict.result
        with self._cond:
            if worker.generation != self.generation:
                return  # sent before a fork: the parent's
            if result.requests:
                self.trigger.refine(result.nbytes, len(lease))
            self._in_flight -= len(lease)
            rest = len(lease) - verdict.done
            retry = verdict.retry and (self._state is not CLOSED or self._keeps)
            self._accounts.attempt(lease, verdict, retry)
            # a flush()/close() that began while this attempt was in flight waits too
            waiting = max(self._flush_deadline,
                          self._close_deadline if self._state is CLOSING else 0.0)
            self._pacer.settled(time.monotonic(), rest > 0 and retry, rest > 0 and not
                                verdict.retry, result.requests > 0, result.retry_after, waiting)
            self.store.settle(lease, retry, verdict.done)
            self._changed()
        self._accounts.say()

    # -- flush / close ----------------------------------------------------------------------
    def flush(self, timeout: float, wait: bool = True) -> bool:
        """Send everything buffered now; with *wait*, block until all events tracked before
        the call are settled, or *timeout* passes. True if every event tracked since the
        previous flush()/close() (or the start) and before this one was delivered."""
        self.ensure_own_process()
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._cond:
            target = self.store.next_seq()
            self._urgent_until = max(self._urgent_until, target)  # due now
            if not wait:
                self._changed()
                return self._settled_before(target)
            window = self._accounts.begin(target)
            self._flush_deadline = max(self._flush_deadline, deadline)
            self._pacer.probe_before(deadline, time.monotonic())
            self._changed()
            on_worker = threading.current_thread() in self._threads
        settled = (self._settled_before(target) if on_worker
                   else self._wait_settled(target, deadline))
        self._accounts.say(final=True)
        return self._accounts.end(window) and settled

    def _settled_before(self, target: int) -> bool:
        oldest = self.store.oldest_seq()
        return oldest is None or oldest >= target

    def _wait_settled(self, target: int, deadline: float) -> bool:
        """Wait until the events before *target* are settled (sent here if no worker runs)."""
        if not any(thread.is_alive() for thread in self._threads):
            self._drain_inline(deadline)
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
            self._changed()

    def finish_close(self, deadline: float) -> bool:
        """Drain until *deadline*, drop what is left, stop the workers. Idempotent."""
        self.begin_close(deadline)
        if threading.current_thread() in self._threads:
            # from a callback: this worker's own batch is still open, so waiting here would
            # only run out the deadline; the workers drain until it (not known delivered)
            return False
        window = self._accounts.begin(self.store.next_seq())
        if self._state is CLOSED:  # idempotent: the verdict stays, and late drops count
            self._lost_on_close = not self._accounts.end(window) or self._lost_on_close
            self._accounts.say(final=True)
            return not self._lost_on_close and self.store.oldest_seq() is None
        delivered = self._wait_settled(self.store.next_seq(), deadline)
        delivered = self._accounts.end(window) and delivered
        with self._cond:
            self._state = CLOSED
            given_up = take_all(self.store, self.trigger.max_events_per_request,
                                self._request_bytes)  # never sent: reported below
            lost = len(given_up) + self.store.discard_pending()
            self._lost_on_close = not delivered or lost > 0
            self._accounts.drop("shutdown_timeout", lost)
            self._changed()
            threads = list(self._threads)
        # idle workers exit as soon as they see CLOSED: give them a moment even when the
        # deadline has passed (one in a request ends with it, up to request_timeout later)
        join_until = max(deadline, time.monotonic() + JOIN_GRACE)
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, join_until - time.monotonic()))
        if given_up:
            report_given_up(self._callbacks()[1], given_up)
        self._accounts.say(final=True)
        if not delivered:
            self._accounts.warn_undelivered(self._in_flight + lost, self._keeps)
        return delivered and not lost

    def close(self, timeout: float) -> bool:
        return self.finish_close(time.monotonic() + max(timeout, 0.0))

    def say_drops(self, final: bool = False) -> None:
        """The store dropped events on a thread of its own: say so now (no lock held)."""
        self._accounts.say(final)

    @property
    def closed(self) -> bool:
        self.ensure_own_process()
        return self._state is not OPEN

    def stats(self) -> EmitterStats:
        self.ensure_own_process()
        with self._cond:
            return self._accounts.snapshot(self.store.next_seq(), self.store.pending(),
                                           self._in_flight)

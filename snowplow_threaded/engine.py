"""The dispatcher: one object owns an emitter's admission -> drain -> pause -> stop.

Data path: ``admit()`` (caller thread) puts an encoded event in the store; worker threads
(:func:`worker.send_until`, using the worker side in :mod:`.leasing`) lease batches, send
them (:func:`worker.deliver`, no lock held) and settle them. ``flush()`` and ``close()``
wait on the same condition.

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
from typing import Any

from . import lifecycle
from .leasing import CLOSED, CLOSING, OPEN, LeaseDesk
from .process_id import current_pid
from .stats import EmitterStats
from .typing import PayloadDict
from .worker import report_given_up

logger = logging.getLogger("snowplow_threaded.engine")

__all__ = ["CLOSED", "CLOSING", "OPEN", "Dispatcher"]

#: Most time close() spends past its deadline waiting for idle workers to exit.
JOIN_GRACE = 0.1


class Dispatcher(LeaseDesk):
    """One emitter's engine: the worker side (:class:`~.leasing.LeaseDesk`), plus admission
    on the caller's thread, flush, close, fork re-initialisation and stats."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        set_wakeup = getattr(self.store, "set_wakeup", None)  # see BatchStore
        if set_wakeup is not None:
            set_wakeup(self._store_ready)

    def _store_ready(self) -> None:
        """A store that fills in the background (``DiskEventStore``) has records to take:
        wake a worker, starting them if none runs yet (events a dead process left)."""
        if not self._started and self._state is OPEN and self._pid == os.getpid():
            self._start_workers()
        with self._cond:
            self._cond.notify()

    # -- caller side (hot path) -----------------------------------------------------------------
    def admit(self, record: PayloadDict, pid: int = 0) -> bool:
        """Buffer one event (a dict of strings, not copied: the caller must not change it).
        O(1), never blocks on I/O. False if it was dropped (full or closed). *pid*: the
        caller's :func:`~.process_id.current_pid`, if it has it."""
        if self._pid != (pid or current_pid()):
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

    # -- flush / close ------------------------------------------------------------------------
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
            hold_unsent = getattr(self.store, "hold_unsent", None)  # see BatchStore
            if hold_unsent is not None:
                hold_unsent()
                self._store_keeps = True
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
        close_store = getattr(self.store, "close_store", None)
        if close_store is not None:
            close_store(join_until)
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
        disk_stats = getattr(self.store, "disk_stats", None)  # see BatchStore
        with self._cond:
            return EmitterStats.snapshot(
                tracked=self.store.next_seq(), pending=self.store.pending(),
                in_flight=self._in_flight, counts=self._counts,
                dropped=[self._dropped, store_drops], last_error=self._last_error,
                disk=disk_stats() if disk_stats is not None else None,
            )

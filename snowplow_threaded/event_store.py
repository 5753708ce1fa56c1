"""Event stores: where tracked events wait until a worker sends them.

Two interfaces live here:

* :class:`EventStore` — the reference tracker's 4-method protocol (``add_event``,
  ``get_events_batch``, ``cleanup``, ``size``). A user store implementing only that still
  works: the emitter wraps it in :class:`.legacy_store.LegacyStoreAdapter`.
* :class:`BatchStore` — what the engine uses. Records are event payload dicts whose values
  are all strings; the worker encodes them at send time. Batches are *leased* (``take``)
  and later *settled* (``settle``: delivered/failed for good, or back for a retry ahead of
  newer events). Every admitted record gets a sequence number, so ``flush()`` can wait for
  exactly the events tracked before it. A durable store (SQLite: rowid as seq, a leased
  flag) implements the same methods.

:class:`InMemoryEventStore` is the default: a bounded ring buffer, thread-safe on its own
(one internal lock, never held while calling out).
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import deque
from typing import Protocol, runtime_checkable

from .payload import as_text
from .typing import PayloadDict, PayloadDictList

DROP_NEWEST = "drop_newest"
DROP_OLDEST = "drop_oldest"
DROP_POLICIES = (DROP_NEWEST, DROP_OLDEST)
DEFAULT_BUFFER_CAPACITY = 10_000


@runtime_checkable
class EventStore(Protocol):
    """The reference tracker's event store protocol (payload dicts of strings)."""

    def add_event(self, payload: PayloadDict) -> bool: ...

    def get_events_batch(self) -> PayloadDictList: ...

    def cleanup(self, batch: PayloadDictList, need_retry: bool) -> None: ...

    def size(self) -> int: ...


class Lease:
    """A batch of records handed to one worker; settle it exactly once."""

    __slots__ = ("attempts", "oldest_seq", "records")

    def __init__(self, records: PayloadDictList, oldest_seq: int) -> None:
        self.records = records
        self.oldest_seq = oldest_seq
        self.attempts = 0

    def __len__(self) -> int:
        return len(self.records)


class BatchStore(Protocol):
    """The engine's store interface. All methods are thread-safe and never block on I/O
    of the engine; ``put`` is on the caller's hot path and must be O(1)."""

    def put(self, record: PayloadDict) -> int:
        """Admit *record*; return the pending count after it, or -1 if it was rejected."""
        ...

    def take(self, max_events: int) -> Lease | None:
        """Lease the oldest unleased records (retries first, each retried batch as it was),
        at most *max_events*; ``None`` when nothing is pending."""
        ...

    def settle(self, lease: Lease, retry: bool, done: int = 0) -> None:
        """End a lease: its first *done* records are finished; the rest are forgotten too,
        or (``retry``) put back ahead of newer records."""
        ...

    def pending(self) -> int:
        """Records admitted and not leased."""
        ...

    def oldest_seq(self) -> int | None:
        """Sequence number of the oldest unsettled record (pending or leased), or None."""
        ...

    def next_seq(self) -> int:
        """The sequence number the next admitted record will get."""
        ...

    def drop_counts(self) -> dict[str, int]:
        """Records dropped by the store, by reason (e.g. ``buffer_full``)."""
        ...

    def discard_pending(self) -> int:
        """Drop every pending (unleased) record, including retries; return how many."""
        ...

    def reset_after_fork(self, keep: bool = False) -> int:
        """In a forked child: new lock, inherited records dropped (the parent sends them);
        must not acquire any lock. Return how many were dropped. With *keep* (the child
        takes over a parent that never sends, see :mod:`.process.handover`) the
        records stay, anything leased at fork time goes back to the front as a retry, and
        0 is returned."""
        ...

    # A store with ``set_wakeup(wake, shutdown_timeout)`` (``DiskEventStore``) is attached
    # by the emitter: see ``emitters._attach_spool``.


#: Buffers inherited from a parent process, never touched again (see reset_after_fork).
_INHERITED: list[object] = []


class InMemoryEventStore:
    """A bounded, thread-safe ring buffer of encoded events.

    :param buffer_capacity: most unsettled events held (pending + leased). When full,
        ``drop_policy`` ``"drop_newest"`` (default) rejects the new event and
        ``"drop_oldest"`` evicts the oldest one not in flight (a record waiting for a
        retry before a pending one); both are counted.

    Lock: ``_lock`` guards every field except ``_pending``'s right end: ``put`` appends
    without it (see there), and ``_rejected``, a count that a full ``drop_newest`` store
    advances without it (see ``_put_full``); everything else, held only for O(1) deque
    work (``take`` is O(batch)). The first positional argument may be a
    ``logging.Logger`` as in the reference (``InMemoryEventStore(logger,
    buffer_capacity)``); it is ignored.
    """

    def __init__(
        self,
        logger: logging.Logger | None = None,
        buffer_capacity: int = DEFAULT_BUFFER_CAPACITY,
        drop_policy: str = DROP_NEWEST,
    ) -> None:
        if isinstance(buffer_capacity, bool) or not isinstance(buffer_capacity, int):
            raise TypeError("buffer_capacity must be an int")
        if buffer_capacity <= 0:
            raise ValueError(f"buffer_capacity must be greater than 0, got {buffer_capacity}")
        if drop_policy not in DROP_POLICIES:
            raise ValueError(f"drop_policy must be one of {DROP_POLICIES}, got {drop_policy!r}")
        self.buffer_capacity = buffer_capacity
        self.drop_policy = drop_policy
        self._lock = threading.Lock()
        self._init_state()

    def _init_state(self) -> None:
        self._pending: deque[PayloadDict] = deque()
        self._retry: deque[Lease] = deque()
        self._leased: set[Lease] = set()
        self._held = 0  # records in _retry and _leased
        self._removed = 0  # records ever taken or evicted from _pending: the oldest's seq
        self._drops = {"buffer_full": 0, "evicted_oldest": 0}
        # drop_newest rejections, counted without the lock: next() on a count is one C call,
        # atomic under the GIL; read by drop_counts() (under _lock), which takes one too
        self._rejected = itertools.count()
        self._rejected_reads = 0

    # -- hot path ------------------------------------------------------------------------
    def put(self, record: PayloadDict) -> int:
        """Lock-free unless the buffer is full: ``deque.append`` is atomic under the GIL,
        and a record's sequence number is its position in append order, so no counter
        needs the lock. (With the lock here, trackers on several threads formed convoys:
        one preempted while holding it made all the others block and hand the GIL on.)
        The capacity check is a racy read: threads racing at the limit may overshoot it
        by at most one record each. The count returned may include a racing thread's
        record (callers treat it as approximate)."""
        pending = self._pending
        if len(pending) + self._held >= self.buffer_capacity:
            return self._put_full(record)
        pending.append(record)
        return len(pending)

    def _put_full(self, record: PayloadDict) -> int:
        """drop_newest: reject without the lock. Producers that outrun the sender all come
        here; taking the lock each time brought the convoys of :meth:`put` back, and made
        the sender wait for the lock (and the GIL) behind them in :meth:`take`."""
        if self.drop_policy != DROP_OLDEST:
            next(self._rejected)
            return -1
        with self._lock:
            pending = self._pending
            if len(pending) + self._held >= self.buffer_capacity:
                if self._retry or pending:
                    self._evict_oldest_locked()
                    self._drops["evicted_oldest"] += 1
                else:
                    self._drops["buffer_full"] += 1
                    return -1
            pending.append(record)
            return len(pending)

    def _evict_oldest_locked(self) -> None:
        """Drop the oldest record not in flight: records waiting for a retry are older
        than every pending one (leased records cannot be evicted)."""
        if self._retry:
            lease = self._retry[0]
            del lease.records[0]
            lease.oldest_seq += 1
            self._held -= 1
            if not lease.records:
                self._retry.popleft()
        else:
            self._pending.popleft()
            self._removed += 1

    # -- worker side -----------------------------------------------------------------------
    def take(self, max_events: int) -> Lease | None:
        with self._lock:
            if self._retry:
                lease = self._retry.popleft()
            else:
                pending = self._pending
                if not pending:
                    return None
                # popleft only: other threads may append (lock-free) meanwhile. Each record
                # is counted as held just before it leaves _pending, so put()'s unlocked
                # check (pending + held) is never under the truth, and over it by at most
                # one record (a whole batch either way made the buffer overshoot, or
                # reject events while far from full)
                count = min(max_events, len(pending))
                popleft = pending.popleft
                records: PayloadDictList = []
                append = records.append
                for _ in range(count):
                    self._held += 1
                    append(popleft())
                lease = Lease(records, self._removed)
                self._removed += count
            self._leased.add(lease)
            return lease

    def settle(self, lease: Lease, retry: bool, done: int = 0) -> None:
        with self._lock:
            self._leased.discard(lease)
            if retry and done < len(lease.records):
                if done:
                    self._held -= done
                    del lease.records[:done]
                    lease.oldest_seq += done
                self._retry.append(lease)
                # keep retries in age order: several workers may fail out of order
                if len(self._retry) > 1 and self._retry[-2].oldest_seq > lease.oldest_seq:
                    self._retry = deque(sorted(self._retry, key=lambda item: item.oldest_seq))
            else:
                self._held -= len(lease.records)

    # -- observation -------------------------------------------------------------------------
    def pending(self) -> int:
        with self._lock:
            return len(self._pending) + sum(len(lease) for lease in self._retry)

    def size(self) -> int:
        """All unsettled records (pending, retrying and in flight)."""
        with self._lock:
            return len(self._pending) + self._held

    def oldest_seq(self) -> int | None:
        with self._lock:
            candidates = [lease.oldest_seq for lease in self._leased]
            candidates.extend(lease.oldest_seq for lease in self._retry)
            if self._pending:
                candidates.append(self._removed)
            return min(candidates) if candidates else None

    def next_seq(self) -> int:
        with self._lock:  # no take() between the two reads; an append is atomic
            return self._removed + len(self._pending)

    def drop_counts(self) -> dict[str, int]:
        with self._lock:
            rejected = next(self._rejected) - self._rejected_reads  # this read's own next()
            self._rejected_reads += 1
            drops = {**self._drops, "buffer_full": self._drops["buffer_full"] + rejected}
            return {k: v for k, v in drops.items() if v}

    def discard_pending(self) -> int:
        with self._lock:
            pending = self._pending
            count = len(pending)
            for _ in range(count):  # popleft only: an append may race (see put)
                pending.popleft()
            self._removed += count
            retried = sum(len(lease) for lease in self._retry)
            self._held -= retried
            self._retry.clear()
            return count + retried

    def reset_after_fork(self, keep: bool = False) -> int:
        if keep:
            self._lock = threading.Lock()
            if self._leased:
                leases = sorted([*self._retry, *self._leased], key=lambda x: x.oldest_seq)
                self._retry = deque(leases)
                self._leased = set()
            self._drops = {"buffer_full": 0, "evicted_oldest": 0}
            self._rejected, self._rejected_reads = itertools.count(), 0
            return 0
        dropped = len(self._pending) + self._held
        # Keep the parent's records referenced instead of freeing them: freeing would write
        # to every copy-on-write page they sit on, in every child, for nothing.
        _INHERITED.append((self._pending, self._retry, self._leased))
        self._lock = threading.Lock()
        self._init_state()
        return dropped

    # -- the reference's protocol, for code that uses the store directly -------------------
    def add_event(self, payload: PayloadDict) -> bool:
        """Add a payload dict (reference API); values are sent as strings."""
        return self.put(stringify(payload)) >= 0

    def get_events_batch(self) -> PayloadDictList:
        """Remove and return every waiting event, oldest first (reference API). An emitter
        using this store never sees them again; hand back what must be kept with
        ``cleanup(batch, need_retry=True)``."""
        taken: PayloadDictList = []
        while (lease := self.take(self.buffer_capacity)) is not None:
            taken.extend(lease.records)
            self.settle(lease, retry=False)
        return taken

    def cleanup(self, batch: PayloadDictList, need_retry: bool) -> None:
        """Reference API: after ``get_events_batch``, put *batch* back if *need_retry*
        (as new events, subject to the capacity); otherwise nothing is left to do."""
        if need_retry:
            for payload in batch:
                self.put(payload)


def stringify(payload: PayloadDict) -> PayloadDict:
    """A copy of *payload* with every value a string (as the protocol sends them)."""
    return {k: v if type(v) is str else as_text(v) for k, v in payload.items()}

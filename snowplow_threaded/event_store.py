"""Event stores: where tracked events wait until a worker sends them.

Two interfaces live here:

* :class:`EventStore` — the reference tracker's 4-method protocol (``add_event``,
  ``get_events_batch``, ``cleanup``, ``size``), with payload dicts. A user store
  implementing only that still works: the emitter wraps it in
  :class:`.legacy_store.LegacyStoreAdapter`.
* :class:`BatchStore` — what the engine uses. Records are ``bytes``
  (:data:`.record.Record`: an event's JSON object without its closing brace, made on the
  caller's thread); the worker joins them into a request body. Batches are *leased*
  (``take``) and later *settled* (``settle``: delivered/failed for good, or back for a
  retry ahead of newer events). Every admitted record gets a sequence number, so
  ``flush()`` can wait for exactly the events tracked before it. A durable store (SQLite:
  rowid as seq, a leased flag) implements the same methods.

:class:`InMemoryEventStore` is the default: a ring buffer bounded in events and in bytes,
thread-safe on its own (one internal lock, never held while calling out).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from .payload import as_text
from .record import BODY_HEAD_SIZE, STM_SIZE, Record, payload_of, record_of
from .typing import PayloadDict, PayloadDictList

DROP_NEWEST = "drop_newest"
DROP_OLDEST = "drop_oldest"
BLOCK = "block"
#: what an emitter does with a new event when its buffer is full (``when_full``)
WHEN_FULL = (DROP_NEWEST, DROP_OLDEST, BLOCK)
DEFAULT_BUFFER_CAPACITY = 100_000
#: 12 MiB: see docs/settings.md (``buffer_max_bytes``) for why
DEFAULT_BUFFER_MAX_BYTES = 12 * 1024 * 1024
#: bytes counted per record beyond its length: the ``bytes`` object's header (33), its
#: slot in a deque (8) and the allocator's rounding
RECORD_OVERHEAD = 48
_UNLIMITED = 1 << 62


@runtime_checkable
class EventStore(Protocol):
    """The reference tracker's event store protocol (payload dicts of strings)."""

    def add_event(self, payload: PayloadDict) -> bool: ...

    def get_events_batch(self) -> PayloadDictList: ...

    def cleanup(self, batch: PayloadDictList, need_retry: bool) -> None: ...

    def size(self) -> int: ...


class Lease:
    """A batch of records handed to one worker; settle it exactly once. ``records[i]`` has
    sequence number ``seq_at(i)``, rising (a store whose leases have gaps overrides it).
    ``unsendable``: payloads a user's store handed back that cannot be made records (they
    fail for good; not among ``records``, and already settled by the store)."""

    __slots__ = ("attempts", "oldest_seq", "records", "unsendable")

    def __init__(self, records: list[Record], oldest_seq: int,
                 unsendable: PayloadDictList | None = None) -> None:
        self.records = records
        self.oldest_seq = oldest_seq
        self.attempts = 0
        self.unsendable = unsendable

    def __len__(self) -> int:
        return len(self.records)

    def seq_at(self, index: int) -> int:
        return self.oldest_seq + index  # consecutive here


class BatchStore(Protocol):
    """The engine's store interface. All methods are thread-safe and never block on I/O
    of the engine; ``put`` is on the caller's hot path and must be O(1)."""

    def put(self, record: Record) -> int:
        """Admit *record*; return the pending count after it, or -1 if it was refused
        (full). A refusal is not counted here: the caller counts what it drops (it may
        wait for room and put the record again)."""
        ...

    def take(self, max_events: int, max_bytes: int | None = None) -> Lease | None:
        """Lease the oldest unleased records (retries first, each retried batch as it was),
        at most *max_events* and, beyond the first record, about *max_bytes* of request
        body (:func:`.record.body_size`); ``None`` when nothing is pending."""
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
        """Records dropped by the store itself, by reason (``evicted_oldest``)."""
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


def take_all(store: BatchStore, max_events: int, max_bytes: int | None) -> list[Record]:
    """Every record *store* still has to lease, settled as done (``close()`` gave up:
    never sent)."""
    taken: list[Record] = []
    while (lease := store.take(max_events, max_bytes)) is not None:
        taken.extend(lease.records)
        store.settle(lease, retry=False)
    return taken


#: Buffers inherited from a parent process, never touched again (see reset_after_fork).
_INHERITED: list[object] = []


def _bytes_of(records: Iterable[Record]) -> int:
    return sum(map(len, records))


class InMemoryEventStore:
    """A bounded, thread-safe ring buffer of records.

    :param buffer_capacity: most unsettled events held (pending + leased), 100 000.
    :param when_full: what a new event meets when the buffer is full: ``"drop_newest"``
        (default) refuses it; ``"drop_oldest"`` evicts the oldest events not in flight
        (those waiting for a retry first) until it fits, and counts them
        (``evicted_oldest``); ``"block"`` refuses it, for the emitter to wait for room.
    :param max_bytes: most memory the unsettled records take, counting each as its
        length plus :data:`RECORD_OVERHEAD` (12 MiB).

    Lock: ``_lock`` guards every field except ``_pending``'s right end and ``_in_bytes``,
    which ``put`` advances without it (see there); everything else is held only for O(1)
    deque work (``take`` is O(batch)). The first positional argument may be a
    ``logging.Logger`` as in the reference (``InMemoryEventStore(logger,
    buffer_capacity)``); it is ignored.
    """

    def __init__(
        self,
        logger: logging.Logger | None = None,
        buffer_capacity: int = DEFAULT_BUFFER_CAPACITY,
        when_full: str = DROP_NEWEST,
        max_bytes: int = DEFAULT_BUFFER_MAX_BYTES,
    ) -> None:
        for name, value in (("buffer_capacity", buffer_capacity), ("max_bytes", max_bytes)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int")
            if value <= 0:
                raise ValueError(f"{name} must be greater than 0, got {value}")
        if when_full not in WHEN_FULL:
            raise ValueError(f"when_full must be one of {WHEN_FULL}, got {when_full!r}")
        self.buffer_capacity = buffer_capacity
        self.when_full = when_full
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._init_state()

    def _init_state(self) -> None:
        self._pending: deque[Record] = deque()
        self._retry: deque[Lease] = deque()
        self._leased: set[Lease] = set()
        self._held = 0  # records in _retry and _leased
        self._held_bytes = 0  # their bytes (with RECORD_OVERHEAD each)
        # bytes of _pending: _in_bytes (advanced by put, without the lock) - _out_bytes
        self._in_bytes = 0
        self._out_bytes = 0
        self._removed = 0  # records ever taken or evicted from _pending: the oldest's seq
        self._evicted = 0

    # -- hot path ------------------------------------------------------------------------
    def put(self, record: Record) -> int:
        """Lock-free unless the buffer is full: ``deque.append`` is atomic under the GIL,
        and a record's sequence number is its position in append order, so no counter
        needs the lock. (With the lock here, trackers on several threads formed convoys:
        one preempted while holding it made all the others block and hand the GIL on.)
        The checks are racy reads: threads racing at the limit may overshoot it by at
        most one record each. ``_in_bytes += size`` is a read-modify-write that no GIL
        switch interrupts in CPython (no call, no backward jump between them); should a
        count be lost anyway, it is corrected whenever ``_pending`` is empty (``take``).
        The count returned may include a racing thread's record (callers treat it as
        approximate)."""
        size = len(record) + RECORD_OVERHEAD
        pending = self._pending
        if (len(pending) + self._held >= self.buffer_capacity
                or self._in_bytes - self._out_bytes + self._held_bytes + size > self.max_bytes):
            return self._put_full(record, size)
        pending.append(record)
        self._in_bytes += size
        return len(pending)

    def _put_full(self, record: Record, size: int) -> int:
        """Refuse without the lock (producers that outrun the sender all come here; the
        lock made convoys, and made the sender wait for it behind them in ``take``), or
        evict the oldest records until *record* fits."""
        if self.when_full != DROP_OLDEST:
            return -1
        with self._lock:
            pending = self._pending
            while (len(pending) + self._held >= self.buffer_capacity
                   or self._in_bytes - self._out_bytes + self._held_bytes + size
                   > self.max_bytes):
                if not (self._retry or pending):
                    return -1  # everything is in flight
                self._evict_oldest_locked()
                self._evicted += 1
            pending.append(record)
            self._in_bytes += size
            return len(pending)

    def _evict_oldest_locked(self) -> None:
        """Drop the oldest record not in flight: records waiting for a retry are older
        than every pending one (leased records cannot be evicted)."""
        if self._retry:
            lease = self._retry[0]
            self._held_bytes -= len(lease.records[0]) + RECORD_OVERHEAD
            del lease.records[0]
            lease.oldest_seq += 1
            self._held -= 1
            if not lease.records:
                self._retry.popleft()
        else:
            self._out_bytes += len(self._pending.popleft()) + RECORD_OVERHEAD
            self._removed += 1

    # -- worker side -----------------------------------------------------------------------
    def take(self, max_events: int, max_bytes: int | None = None) -> Lease | None:
        with self._lock:
            if self._retry:
                lease = self._retry.popleft()
            else:
                pending = self._pending
                if not pending:
                    self._out_bytes = self._in_bytes  # empty: resynchronised (see put)
                    return None
                # popleft only: other threads may append (lock-free) meanwhile. Each record
                # is counted as held just before it leaves _pending, so put()'s unlocked
                # check (pending + held) is never under the truth, and over it by at most
                # one record (a whole batch either way made the buffer overshoot, or
                # reject events while far from full)
                count = min(max_events, len(pending))
                room = _UNLIMITED if max_bytes is None else max_bytes - BODY_HEAD_SIZE
                if self.when_full == DROP_OLDEST:  # half the buffer stays evictable
                    count = min(count, max(1, self.buffer_capacity // 2))
                    room = min(room, self.max_bytes // 2)
                popleft = pending.popleft
                records: list[Record] = []
                append = records.append
                for _ in range(count):
                    size = len(pending[0])
                    room -= size + STM_SIZE
                    if room < 0 and records:
                        break
                    self._held += 1
                    self._held_bytes += size + RECORD_OVERHEAD
                    self._out_bytes += size + RECORD_OVERHEAD
                    append(popleft())
                lease = Lease(records, self._removed)
                self._removed += len(records)
            self._leased.add(lease)
            return lease

    def settle(self, lease: Lease, retry: bool, done: int = 0) -> None:
        with self._lock:
            self._leased.discard(lease)
            if retry and done < len(lease.records):
                if done:
                    self._held -= done
                    self._held_bytes -= _bytes_of(lease.records[:done]) + RECORD_OVERHEAD * done
                    del lease.records[:done]
                    lease.oldest_seq += done
                self._retry.append(lease)
                # keep retries in age order: several workers may fail out of order
                if len(self._retry) > 1 and self._retry[-2].oldest_seq > lease.oldest_seq:
                    self._retry = deque(sorted(self._retry, key=lambda item: item.oldest_seq))
            else:
                self._held -= len(lease.records)
                self._held_bytes -= _bytes_of(lease.records) + RECORD_OVERHEAD * len(lease)

    # -- observation -------------------------------------------------------------------------
    def pending(self) -> int:
        with self._lock:
            return len(self._pending) + sum(len(lease) for lease in self._retry)

    def size(self) -> int:
        """All unsettled records (pending, retrying and in flight)."""
        with self._lock:
            return len(self._pending) + self._held

    def size_bytes(self) -> int:
        """The memory all unsettled records take, as ``max_bytes`` counts it."""
        with self._lock:
            return self._in_bytes - self._out_bytes + self._held_bytes

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
            return {"evicted_oldest": self._evicted} if self._evicted else {}

    def discard_pending(self) -> int:
        with self._lock:
            pending = self._pending
            count = len(pending)
            for _ in range(count):  # popleft only: an append may race (see put)
                self._out_bytes += len(pending.popleft()) + RECORD_OVERHEAD
            self._removed += count
            retried = sum(len(lease) for lease in self._retry)
            self._held -= retried
            self._held_bytes -= sum(_bytes_of(lease.records) + RECORD_OVERHEAD * len(lease)
                                    for lease in self._retry)
            self._retry.clear()
            return count + retried

    def reset_after_fork(self, keep: bool = False) -> int:
        if keep:
            self._lock = threading.Lock()
            if self._leased:
                leases = sorted([*self._retry, *self._leased], key=lambda x: x.oldest_seq)
                self._retry = deque(leases)
                self._leased = set()
            self._evicted = 0
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
        return self.put(record_of(payload)) >= 0

    def get_events_batch(self) -> PayloadDictList:
        """Remove and return every waiting event, oldest first, as payload dicts (reference
        API). An emitter using this store never sees them again; hand back what must be
        kept with ``cleanup(batch, need_retry=True)``."""
        taken: PayloadDictList = []
        while (lease := self.take(self.buffer_capacity)) is not None:
            taken.extend(payload_of(record) for record in lease.records)
            self.settle(lease, retry=False)
        return taken

    def cleanup(self, batch: PayloadDictList, need_retry: bool) -> None:
        """Reference API: after ``get_events_batch``, put *batch* back if *need_retry*
        (as new events, subject to the capacity); otherwise nothing is left to do."""
        if need_retry:
            for payload in batch:
                self.put(record_of(payload))


def stringify(payload: PayloadDict) -> PayloadDict:
    """A copy of *payload* with every value a string (as the protocol sends them)."""
    return {k: v if type(v) is str else as_text(v) for k, v in payload.items()}

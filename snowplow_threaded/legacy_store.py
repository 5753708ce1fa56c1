"""Running a user store that implements only the reference tracker's 4-method
:class:`~.event_store.EventStore` protocol as the engine's :class:`~.event_store.BatchStore`.

The user's store holds payload dicts: the adapter decodes each record it adds
(:func:`.record.payload_of`) and makes records of what it hands out. The user's store is
called under the adapter's one lock, never while sending. Whatever it does (raise, return
something that is not a list, hand back a payload that cannot be made a record) is logged
or handed to the worker, which fails that event alone for good and reports it
(``Lease.unsendable``); it never ends a worker.
"""

from __future__ import annotations

import logging
import threading
from collections import deque

from .event_store import EventStore, Lease
from .record import BODY_HEAD_SIZE, STM_SIZE, Record, payload_of, record_of
from .typing import PayloadDict, PayloadDictList

logger = logging.getLogger("snowplow_threaded.legacy_store")


class _AdapterLease(Lease):
    """A lease that remembers the user store's payloads of its records (``payloads[i]``
    is what ``records[i]`` was made from), to hand them back to its ``cleanup``."""

    __slots__ = ("payloads",)

    def __init__(self, records: list[Record], oldest_seq: int, payloads: PayloadDictList,
                 unsendable: PayloadDictList | None) -> None:
        super().__init__(records, oldest_seq, unsendable)
        self.payloads = payloads


class LegacyStoreAdapter:
    """Runs a user store that implements only the reference's :class:`EventStore`.

    Such a store hands out *all* its events at once, so the adapter keeps what does not fit
    in one request in an overflow queue it owns. ``oldest_seq`` is derived from counts
    (``next_seq - unsettled``), exact as long as the user store is first-in first-out.
    ``_lock`` guards the adapter and serialises every call into the user store.
    """

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._overflow: deque[PayloadDict] = deque()
        self._retry: deque[_AdapterLease] = deque()
        self._leased: set[_AdapterLease] = set()
        self._next_seq = 0
        self._settled = 0

    def put(self, record: Record) -> int:
        with self._lock:
            if not self.store.add_event(payload_of(record)):
                return -1
            self._next_seq += 1
            return self.store.size() + len(self._overflow)

    def take(self, max_events: int, max_bytes: int | None = None) -> Lease | None:
        with self._lock:
            if self._retry:
                lease = self._retry.popleft()
                self._leased.add(lease)
                return lease
            if not self._overflow:
                batch = self._user_batch()
                if batch is None:
                    return None  # asked again on the next wake
                self._overflow.extend(batch)
            if not self._overflow:
                return None
            first = self._next_seq - self._unsettled_locked()
            room = (1 << 62) if max_bytes is None else max_bytes - BODY_HEAD_SIZE
            records: list[Record] = []
            payloads: PayloadDictList = []
            unsendable: PayloadDictList = []
            while self._overflow and len(records) + len(unsendable) < max_events:
                payload = self._overflow[0]
                try:
                    record = record_of(payload)
                except Exception:
                    unsendable.append(self._overflow.popleft())
                    continue
                room -= len(record) + STM_SIZE
                if room < 0 and records:
                    break
                records.append(record)
                payloads.append(self._overflow.popleft())
            if unsendable:
                self._cleanup_locked(unsendable)
            lease = _AdapterLease(records, first, payloads, unsendable or None)
            self._leased.add(lease)
            return lease

    def _user_batch(self) -> list[PayloadDict] | None:
        """The user store's ``get_events_batch()`` as a list, or None (logged) when it
        raised or did not return an iterable: every path that empties the user's store
        goes through here, so none of them (``take``, ``close()``'s discard, a fork) raises
        for it. Called under ``_lock``, or in a forked child before any other use."""
        try:
            return list(self.store.get_events_batch())
        except Exception:
            logger.exception("event store get_events_batch() raised or did not return a list")
            return None

    def _unsettled_locked(self) -> int:
        return self._next_seq - self._settled

    def settle(self, lease: Lease, retry: bool, done: int = 0) -> None:
        assert isinstance(lease, _AdapterLease)
        with self._lock:
            self._leased.discard(lease)
            finished = lease.payloads if not retry else lease.payloads[:done]
            if retry and done < len(lease.records):
                del lease.records[:done], lease.payloads[:done]
                lease.oldest_seq += done
                self._retry.append(lease)
            self._cleanup_locked(finished)

    def _cleanup_locked(self, payloads: PayloadDictList) -> None:
        """*payloads* are done with (sent, or failed for good): tell the user's store."""
        self._settled += len(payloads)
        if payloads:
            try:
                self.store.cleanup(payloads, False)
            except Exception:
                logger.exception("event store cleanup() raised")

    def pending(self) -> int:
        with self._lock:
            return (self.store.size() + len(self._overflow)
                    + sum(len(lease) for lease in self._retry))

    def oldest_seq(self) -> int | None:
        with self._lock:
            unsettled = self._unsettled_locked()
            return None if unsettled <= 0 else self._next_seq - unsettled

    def next_seq(self) -> int:
        return self._next_seq

    def drop_counts(self) -> dict[str, int]:
        return {}  # refusals are counted by the dispatcher

    def discard_pending(self) -> int:
        with self._lock:
            count = (len(self._user_batch() or ()) + len(self._overflow)
                     + sum(len(x) for x in self._retry))
            self._overflow.clear()
            self._retry.clear()
            self._settled += count
            return count

    def reset_after_fork(self, keep: bool = False) -> int:
        self._lock = threading.Lock()
        if keep:
            self._retry = deque(sorted([*self._retry, *self._leased],
                                       key=lambda x: x.oldest_seq))
            self._leased = set()
            return 0
        self._overflow = deque()
        self._retry = deque()
        self._leased = set()
        dropped = len(self._user_batch() or ())
        self._settled = self._next_seq
        return dropped

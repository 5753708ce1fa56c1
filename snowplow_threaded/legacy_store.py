"""Running a user store that implements only the reference tracker's 4-method
:class:`~.event_store.EventStore` protocol as the engine's :class:`~.event_store.BatchStore`.

The user's store is called under the adapter's one lock, never while sending. Whatever it
does (raise, return something that is not a list, hand back values that are not text) is
logged or carried to the send, where the batch fails for good; it never ends a worker.
"""

from __future__ import annotations

import logging
import threading
from collections import deque

from .event_store import EventStore, Lease, stringify
from .typing import PayloadDict

logger = logging.getLogger("snowplow_threaded.legacy_store")


def _as_record(payload: PayloadDict) -> PayloadDict:
    """A payload from a user's store as a record; one that cannot be made text is kept as
    it is, and its batch fails for good when encoded (``SendResult.unsendable``)."""
    try:
        return stringify(payload)
    except Exception:
        return payload


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
        self._retry: deque[Lease] = deque()
        self._leased: set[Lease] = set()
        self._next_seq = 0
        self._settled = 0
        self._rejected = 0

    def put(self, record: PayloadDict) -> int:
        with self._lock:
            if not self.store.add_event(record):
                self._rejected += 1
                return -1
            self._next_seq += 1
            return self.store.size() + len(self._overflow)

    def take(self, max_events: int) -> Lease | None:
        with self._lock:
            if self._retry:
                lease = self._retry.popleft()
                self._leased.add(lease)
                return lease
            if not self._overflow:
                batch = self._user_batch()
                if batch is None:
                    return None  # asked again on the next wake
                self._overflow.extend(_as_record(p) for p in batch)
            if not self._overflow:
                return None
            count = min(max_events, len(self._overflow))
            records = [self._overflow.popleft() for _ in range(count)]
            lease = Lease(records, self._next_seq - self._unsettled_locked())
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
        payloads = lease.records if not retry else lease.records[:done]
        with self._lock:
            self._leased.discard(lease)
            if retry and done < len(lease.records):
                del lease.records[:done]
                self._retry.append(lease)
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
        return {"buffer_full": self._rejected} if self._rejected else {}

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
            self._rejected = 0
            return 0
        self._overflow = deque()
        self._retry = deque()
        self._leased = set()
        dropped = len(self._user_batch() or ())
        self._settled = self._next_seq
        return dropped

"""What a full buffer does to a new event: an emitter's ``when_full``.

``"drop_newest"`` and ``"drop_oldest"`` are the store's doing: it refuses the event, or
evicts the oldest waiting ones to make room. ``"block"`` is :meth:`Door.full`'s: the
caller waits for room, for at most ``block_timeout``, and never while waiting cannot help
(the sender is failing: an outage must never stall a web request; no sender runs; or the
caller is a sender itself, tracking from a callback). An event that is not put in the end
is dropped: counted and said (:class:`.accounts.Accounts`).

Thread-safe: the wait is on a condition of the dispatcher's lock that it notifies when a
batch leaves the buffer, when a backoff starts and at close; nothing else is shared.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .accounts import Accounts
from .event_store import BLOCK, BatchStore
from .record import Record
from .settings import EmitterSettings


class Door:
    """The admission of one emitter when its store is full."""

    def __init__(self, store: BatchStore, settings: EmitterSettings, accounts: Accounts,
                 ) -> None:
        self._store = store
        self._block = settings.when_full == BLOCK
        self._timeout = settings.block_timeout
        self._accounts = accounts

    def closed(self, count: int) -> bool:
        """*count* events tracked after close() were dropped; False (for ``admit()``)."""
        self._accounts.drop("closed", count)
        self._accounts.say()
        return False

    def full(self, record: Record, room: threading.Condition, senders: threading.Condition,
             may_wait: Callable[[], bool]) -> int:
        """The store refused *record*: with ``block``, put it as soon as there is room
        (waiting on *room*, which is notified when a batch leaves the buffer and when the
        sender starts to back off), while *may_wait()* (asked under the lock *room* and
        *senders* share) says waiting can help; else drop it. The pending count after the
        put, or -1 (dropped)."""
        if self._block:
            deadline = time.monotonic() + self._timeout
            with room:
                senders.notify()  # a sender that lingers may go now
                while may_wait():
                    if (pending := self._store.put(record)) >= 0:
                        return pending
                    if (remaining := deadline - time.monotonic()) <= 0:
                        break
                    room.wait(remaining)
        self._accounts.refused()
        self._accounts.say()
        return -1

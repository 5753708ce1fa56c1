"""When a batch is due: the emitter's size, byte, time and linger triggers.

:class:`BatchTrigger` is plain state owned by one dispatcher and used only under the
dispatcher's lock (``engine.Dispatcher._cond``); it does no I/O and never blocks.
"""

from __future__ import annotations

from .record import STM_SIZE, Record

#: After a request, how long a full batch may wait for more events to join it (busy only).
LINGER = 0.005
_NO_LIMIT = 1 << 62
#: Width of each wake-up point, in events (see BatchTrigger.is_wake_point).
_BAND = 4


class BatchTrigger:
    """A batch is due when ``batch_size`` events wait, when about ``byte_limit`` bytes
    wait (counted as events of the average size seen), or ``flush_interval`` after the
    first waiting event. Under load, a full batch found right after another request
    lingers up to :data:`LINGER` so that a backlog coalesces into one larger request
    (fewer requests, fewer GIL hand-offs to the sender); never when ``byte_limit`` is set
    or ``max_events_per_request`` already wait."""

    def __init__(self, batch_size: int, byte_limit: int | None, flush_interval: float,
                 max_events_per_request: int | None) -> None:
        self.batch_size = batch_size
        self.byte_limit = byte_limit
        self.flush_interval = flush_interval
        #: None: no count limit (a request is sized by bytes, see BatchStore.take)
        self.max_events_per_request = (_NO_LIMIT if max_events_per_request is None
                                       else max(max_events_per_request, batch_size))
        self.reset()

    def reset(self) -> None:
        self.due_at: float | None = None  # when waiting events are due by flush_interval
        self.byte_due_count = self.batch_size  # byte_limit, as a count of average events

    def estimate(self, record: Record) -> None:
        """Before any send, size the byte trigger from one event's encoded size (with
        ``stm``); :meth:`refine` corrects it after sends."""
        if self.byte_limit is None:
            return
        size = len(record) + STM_SIZE
        self.byte_due_count = max(1, min(self.batch_size, self.byte_limit // size))

    def refine(self, nbytes: int, events: int) -> None:
        if self.byte_limit is not None and nbytes and events:
            average = max(1, nbytes // events)
            self.byte_due_count = max(1, min(self.batch_size, self.byte_limit // average))

    def is_wake_point(self, pending: int) -> bool:
        """Whether the *pending*-th waiting event may make a sleeping worker's batch due.
        *pending* is approximate (appends race, see ``InMemoryEventStore.put``), so each
        point is a small band; a worker asleep with nothing due also wakes by itself
        every ``flush_interval`` (:meth:`wait`), so no racing event waits longer."""
        return (pending <= _BAND or 0 <= pending - self.batch_size < _BAND
                or 0 <= pending - self.byte_due_count < _BAND)

    def is_due(self, now: float, pending: int, forced: bool, last_attempt: float) -> bool:
        """*forced*: closing, or a flush() covers a waiting event."""
        if pending == 0:
            self.due_at = None
            return False
        if self.due_at is None:
            self.due_at = now + self.flush_interval
        if forced or now >= self.due_at:
            return True
        if pending < self.batch_size and pending < self.byte_due_count:
            return False
        return (now - last_attempt >= LINGER or self.byte_limit is not None
                or pending >= self.max_events_per_request)

    def wait(self, now: float, pending: int, last_attempt: float) -> float:
        """How long a worker may sleep when nothing is due (woken earlier by events)."""
        wait = self.flush_interval if self.due_at is None else self.due_at - now
        if pending >= self.batch_size:  # lingering
            linger = last_attempt + LINGER - now
            wait = linger if wait is None else min(wait, linger)
        return wait

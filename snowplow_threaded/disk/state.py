"""The state of a :class:`~.store.DiskEventStore`, declared once: the store's parts
(:class:`~.io_read.ReadSide`, :class:`~.io_loop.IOLoop`, :class:`~.closing.Closing`, the
store itself) are layers of one object over these fields, set by the store's
``__init__``/``_init_state``.

Who touches what: ``put()`` (the caller's thread) appends to ``_incoming`` without a lock
(its right end only); everything else is guarded by ``_lock``, which is never held across
a system call. The I/O thread alone does file I/O (``_spool``'s files) and reads its own
flags (``_io_idle``, ``_io_batching``, ``_incoming_since``, ``_full``, ``_last_write``,
``_drops_said``) without the lock: the other threads only set ``_write_now`` and call
``_kick()``, or read them as hints.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..event_store import Lease

if TYPE_CHECKING:
    from ..record import Record
    from .spool import Segment, Spool

#: ``(seq, segment, start, end)`` of a record: where it is on disk (segment None: in
#: memory only, after a disk fault)
Loc = tuple[int, "Segment | None", int, int]


class DiskLease(Lease):
    """A lease whose records have a place on disk: ``locs[i]`` is ``records[i]``'s. Their
    sequence numbers rise but may have gaps (what was evicted, damaged or adopted)."""

    __slots__ = ("locs",)

    def __init__(self, records: list[Record], locs: list[Loc]) -> None:
        super().__init__(records, min(loc[0] for loc in locs))
        self.locs = locs

    def seq_at(self, index: int) -> int:
        return self.locs[index][0]


class StoreState:
    """The fields (see the module); no behaviour but the hooks the store defines."""

    # -- settings (constant after construction; set_wakeup sets the emitter's) ------------------
    directory: str
    max_bytes: int
    when_full: str
    write_interval: float
    write_events: int
    memory_events: int
    durable: bool
    read_ahead: int
    scan_interval: float
    shutdown_timeout: float
    _wakeup: Callable[[], None] | None  # wake the dispatcher (and track()s waiting for room)
    _say: Callable[[bool], None] | None  # have the emitter say this store's drops
    _block: bool  # the emitter's when_full="block"

    # -- the locks and wake-ups -------------------------------------------------------------------
    _lock: threading.Lock
    _synced_cond: threading.Condition  # durable put()s wait on it for _synced
    _settled_cond: threading.Condition  # finish_close() waits on it for settle()
    _wake: threading.Event  # the I/O thread sleeps on it
    _thread: threading.Thread | None  # the I/O thread

    # -- events, in sending order: in requests, retried, read back, on disk, not written yet --
    _leased: set[DiskLease]
    _retry: deque[DiskLease]
    _ready: deque[Record]  # takeable ...
    _ready_locs: deque[Loc]  # ... and where each is on disk
    _unread: int  # records on disk not read back yet
    _writing: tuple[int, int] | None  # (first seq, count) being written
    _incoming: deque[Record]  # queued by put(), not written yet
    _in_base: int  # the sequence number of _incoming[0]
    _adopt_seq: int  # the next sequence number for adopted records (before every own one)
    _acks: list[list[Loc]]  # settled: to record on disk
    _marks: list[tuple[bytes, list[Loc]]]  # (LEASED or UNLEASED, locs) to record on disk
    _spool: Spool  # the files

    # -- the I/O thread's loop and the bound ------------------------------------------------------
    _io_idle: bool
    _io_batching: bool
    _incoming_since: float | None
    _write_now: bool  # the sender asked for events none of which is written yet
    _starved: bool  # a take() found nothing takeable: wake the sender after
    _next_scan: float
    _fallback_until: float  # after a disk fault: keep events in memory until then
    _synced: int  # durable mode: every seq below this is written (or dropped)
    _adopt_wanted: bool
    _adopt_done: threading.Event
    _full: bool  # block: the directory cannot take the next write
    _refused: bool  # block: a put() was refused; wake the waiters once there is room
    _last_write: int  # block: the room wanted before put() is let in again

    # -- closing ----------------------------------------------------------------------------------
    _close_deadline: float  # from then on (monotonic) take() hands out nothing
    _closing: bool
    _closed: bool
    _held: bool  # close() gave up: what is left stays for the next process

    # -- what is counted --------------------------------------------------------------------------
    _drops: dict[str, int]  # by reason (drop_counts())
    _drops_said: int  # their total when last said
    _stats: dict[str, Any]
    _warned: set[str]

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        raise NotImplementedError  # IOLoop's

    def _finish_close(self) -> None:
        raise NotImplementedError  # Closing's

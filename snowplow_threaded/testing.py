"""Deterministic event ids and times, for tests of your own tracking.

The tracker makes event ids ahead, from a CSPRNG, and reads the clock itself, so tests
written for the reference that patch ``Tracker.get_uuid``/``get_timestamp`` or
``time.time`` no longer fix them. Use this instead::

    from snowplow_threaded.testing import deterministic_events

    with deterministic_events(start_ms=1_700_000_000_000) as fixed:
        eid = tracker.track(StructuredEvent("shop", "checkout"))
        assert eid == fixed.event_id(1)            # "00000000-0000-4000-8000-000000000001"
        fixed.advance(1_000)                        # the clock moves only when told

(the pytest plugin's ``snowplow_deterministic`` fixture is the same, for one test).

While the block runs, in this process:

* event ids (``eid``, what ``track()`` returns) are ``event_id(1)``, ``event_id(2)``, ...
  in the order they are made (across threads: in the order the threads get them); valid
  version-4 UUIDs, so the collector accepts them;
* ``dtm`` (creation), ``stm`` (sending) and the ``ttm`` that ``track_ecommerce_transaction``
  gives its items are ``now_ms``, which stays where it is until :meth:`Deterministic.advance`
  or an assignment to ``now_ms``.

Times the collector adds (``collector_tstamp`` and what is derived from it) are its own.
A child forked inside the block makes random ids again (so it never repeats its parent's)
and keeps the fixed clock. On exit the ids that were not used are dropped and the real
generator and clock are back. Blocks do not nest (``RuntimeError``). Nothing here is for
production: it changes the whole process.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from . import tracker as _tracker
from . import transport as _transport
from .process_id import current_pid

__all__ = ["Deterministic", "deterministic_events"]

#: 2023-11-14T22:13:20Z
DEFAULT_START_MS = 1_700_000_000_000
_active = threading.Lock()  # held while a block runs: blocks do not nest


class _Sequence:
    """Stands in for the id pool's list: ``pop()`` gives the next id of the sequence.
    ``next()`` of an ``itertools.count`` is atomic, so threads never get the same id."""

    def __init__(self, first: int) -> None:
        self._numbers = itertools.count(first)

    def pop(self) -> str:
        return Deterministic.event_id(next(self._numbers))


class _SequencePool:
    """Stands in for the tracker's id pool (``pid``, ``ids``) for this process; a forked
    child does not match ``pid`` and refills ``ids`` with random ids, as it always does."""

    def __init__(self, first: int) -> None:
        self.pid = current_pid()
        self.ids: object = _Sequence(first)


class Deterministic:
    """The handle of :func:`deterministic_events`: the fixed clock and the id sequence."""

    def __init__(self, start_ms: int) -> None:
        self.now_ms = start_ms

    def time_ns(self) -> int:
        """The clock the tracker reads while the block runs."""
        return self.now_ms * 1_000_000

    def advance(self, ms: int) -> None:
        """Move the clock *ms* milliseconds on."""
        self.now_ms += ms

    @staticmethod
    def event_id(n: int) -> str:
        """The *n*-th id of the sequence: ``event_id(1)`` is
        ``"00000000-0000-4000-8000-000000000001"``."""
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n < 16**12:
            raise ValueError(f"n must be an int from 0 to 16**12 - 1, got {n!r}")
        return f"00000000-0000-4000-8000-{n:012x}"


@contextmanager
def deterministic_events(start_ms: int = DEFAULT_START_MS,
                         first_id: int = 1) -> Iterator[Deterministic]:
    """Make event ids a sequence from ``event_id(first_id)`` and fix the tracker's clock at
    *start_ms* (milliseconds since the epoch) until the block ends; see the module
    docstring. Raises ``RuntimeError`` if a block is already running."""
    if isinstance(start_ms, bool) or not isinstance(start_ms, int) or start_ms < 0:
        raise ValueError(f"start_ms must be an int >= 0, got {start_ms!r}")
    Deterministic.event_id(first_id)  # checks it
    if not _active.acquire(blocking=False):
        raise RuntimeError("deterministic_events() is already active in this process")
    handle = Deterministic(start_ms)
    saved = (_tracker._pool, _tracker._time_ns, _transport._time_ns)
    try:
        _tracker._pool = _SequencePool(first_id)  # type: ignore[assignment]
        _tracker._time_ns = _transport._time_ns = handle.time_ns
        yield handle
    finally:
        _tracker._pool, _tracker._time_ns, _transport._time_ns = saved
        _active.release()

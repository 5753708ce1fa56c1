"""Emitter statistics: a snapshot value object (the counters live in the dispatcher)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class EmitterStats:
    """A consistent snapshot of one emitter's counters (or the sum of a tracker's).

    * ``tracked``: events admitted to the buffer.
    * ``queued``: events waiting, retrying or in flight right now.
    * ``in_flight``: events in requests under way.
    * ``sent``: events the collector acknowledged (2xx).
    * ``failed``: events given up for good (non-retryable status, ``max_retries`` reached).
    * ``retried``: events put back for another attempt (counted each time).
    * ``dropped``: events lost before any send, by reason: ``buffer_full`` (refused when
      the buffer was full), ``evicted_oldest`` (``when_full="drop_oldest"``), ``closed``
      (tracked after close), ``shutdown_timeout``.
    * ``requests``, ``bytes_sent``: HTTP requests made and request body bytes.
    * ``split_requests``: of those, requests made to single out events the collector
      refused (a refused request of several events is split in halves until they are).
    * ``last_error``: the most recent failure (``"HTTP 503"``, ``"ConnectionError: ..."``).
    * ``disk``: with a ``DiskEventStore``, its directory's state (bytes and events on
      disk, the age of the oldest event waiting, ...: see docs/disk-buffer.md); else None.
    """

    tracked: int = 0
    queued: int = 0
    in_flight: int = 0
    sent: int = 0
    failed: int = 0
    retried: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    bytes_sent: int = 0
    split_requests: int = 0
    last_error: str | None = None
    disk: dict[str, Any] | None = None

    @classmethod
    def snapshot(cls, *, tracked: int, pending: int, in_flight: int, counts: dict[str, int],
                 dropped: list[dict[str, int]], last_error: str | None) -> EmitterStats:
        """Build from a dispatcher's counters (the caller holds the dispatcher's lock)."""
        merged: dict[str, int] = {}
        for part in dropped:
            for reason, count in part.items():
                merged[reason] = merged.get(reason, 0) + count
        return cls(tracked=tracked, queued=pending + in_flight, in_flight=in_flight,
                   sent=counts["sent"], failed=counts["failed"], retried=counts["retried"],
                   dropped=merged, requests=counts["requests"], bytes_sent=counts["bytes"],
                   split_requests=counts["split_requests"], last_error=last_error)

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __add__(self, other: EmitterStats) -> EmitterStats:
        dropped = dict(self.dropped)
        for reason, count in other.dropped.items():
            dropped[reason] = dropped.get(reason, 0) + count
        return EmitterStats(
            tracked=self.tracked + other.tracked,
            queued=self.queued + other.queued,
            in_flight=self.in_flight + other.in_flight,
            sent=self.sent + other.sent,
            failed=self.failed + other.failed,
            retried=self.retried + other.retried,
            dropped=dropped,
            requests=self.requests + other.requests,
            bytes_sent=self.bytes_sent + other.bytes_sent,
            split_requests=self.split_requests + other.split_requests,
            last_error=other.last_error or self.last_error,
            disk=_add_disk(self.disk, other.disk),
        )


def _add_disk(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any] | None:
    """Two emitters' disk stats together: counts added, the oldest age kept; a value that
    is not a number (the directory, the last error) from the second if it has one."""
    if a is None or b is None:
        return a if b is None else b
    merged = dict(a)
    for key, value in b.items():
        mine = merged.get(key)
        if key == "oldest_event_age":
            merged[key] = max((v for v in (mine, value) if v is not None), default=None)
        elif isinstance(value, int) and isinstance(mine, int) and not isinstance(value, bool):
            merged[key] = mine + value
        elif isinstance(value, bool) and isinstance(mine, bool):
            merged[key] = mine or value
        elif value is not None:
            merged[key] = value
    return merged

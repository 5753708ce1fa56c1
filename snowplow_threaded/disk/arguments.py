"""The arguments of ``DiskEventStore(...)``, checked in one place (the store and the web
integrations' ``disk_buffer`` setting use it)."""

from __future__ import annotations

import os

from ..event_store import DROP_NEWEST, DROP_OLDEST

#: ``when_full`` policies of the store itself; ``block`` is the emitter's
#: (``Emitter(..., when_full="block")``: a full directory makes ``track()`` wait).
WHEN_FULL = (DROP_NEWEST, DROP_OLDEST)


def check_arguments(directory: str | os.PathLike[str], max_bytes: int = 256 * 1024 * 1024, *,
                    when_full: str = DROP_NEWEST, write_interval: float = 0.05,
                    write_events: int = 1000, durable: bool = False,
                    durable_timeout: float = 5.0, memory_events: int = 10_000,
                    read_ahead: int = 1000, segment_bytes: int = 4 * 1024 * 1024,
                    scan_interval: float = 2.0, on_error: str = "raise") -> None:
    """Raise ``TypeError``/``ValueError`` naming the argument if ``DiskEventStore(...)``
    would not accept these (the directory itself is checked only by the store)."""
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"directory must be a path, got {directory!r}")
    if not isinstance(durable, bool):
        raise TypeError(f"durable must be True or False, got {durable!r}")
    for name, value in (("max_bytes", max_bytes), ("write_events", write_events),
                        ("memory_events", memory_events), ("read_ahead", read_ahead),
                        ("segment_bytes", segment_bytes)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be an int greater than 0, got {value!r}")
    for name, number in (("write_interval", write_interval),
                         ("durable_timeout", durable_timeout), ("scan_interval", scan_interval)):
        if isinstance(number, bool) or not isinstance(number, (int, float)) or number <= 0:
            raise ValueError(f"{name} must be a number of seconds greater than 0, "
                             f"got {number!r}")
    if when_full not in WHEN_FULL:
        hint = (" (block is the emitter's: Emitter(..., when_full='block'))"
                if when_full == "block" else "")
        raise ValueError(f"when_full must be one of {WHEN_FULL}{hint}, got {when_full!r}")
    if on_error not in ("raise", "memory"):
        raise ValueError(f"on_error must be 'raise' or 'memory', got {on_error!r}")

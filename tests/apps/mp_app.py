"""A module-level tracker, as an application builds it at import time.

Used by the multiprocessing tests: with the ``fork`` start method children inherit it, with
``spawn``/``forkserver`` they import this module afresh and build their own. The endpoint
comes from ``SNOWPLOW_TEST_ENDPOINT``.
"""

from __future__ import annotations

import os

from snowplow_threaded import Emitter, StructuredEvent, Tracker

emitter = Emitter(os.environ["SNOWPLOW_TEST_ENDPOINT"], batch_size=50, flush_interval=30.0,
                  shutdown_timeout=10.0)
tracker = Tracker("mp", emitter)


def track_many(args: tuple[str, int]) -> int:
    """Track *count* events labelled *label*; do not flush: the exit hook must."""
    label, count = args
    for i in range(count):
        tracker.track(StructuredEvent("mp", label, property_=str(os.getpid()), value=i))
    return count

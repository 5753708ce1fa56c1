"""A process that tracks to a DiskEventStore, for tests that kill it or run several at once.

``python -m tests.apps.disk_child DIR ENDPOINT PREFIX COUNT [--rate N] [--hold] [--send]``

* tracks COUNT structured events labelled ``PREFIX-<n>`` (n from 0), printing
  ``tracked <n> <time.time()>`` to stdout after every 50 (flushed), and ``done`` at the end;
* ``--hold``: then sleeps until killed (a test sends SIGKILL or SIGTERM);
* ``--send``: adopt what dead processes left, flush until everything is delivered and
  exit (the process that takes over a directory).

At a normal exit (also on SIGTERM) it prints ``stats <json>``, after the emitter closed.
"""

from __future__ import annotations

import argparse
import atexit
import json
import signal
import sys
import time
from typing import Any

from snowplow_threaded import (
    DiskEventStore,
    Emitter,
    InMemoryEventStore,
    StructuredEvent,
    Tracker,
)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("directory")
    parser.add_argument("endpoint")
    parser.add_argument("prefix")
    parser.add_argument("count", type=int)
    parser.add_argument("--rate", type=float, default=0.0, help="events/s (0: flat out)")
    parser.add_argument("--hold", action="store_true")
    parser.add_argument("--send", action="store_true")
    parser.add_argument("--scan", type=float, default=0.2)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--memory", action="store_true",
                        help="the memory store instead (holding every event), to compare")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # exit through atexit
    result: dict[str, object] = {}
    # registered before the emitter's exit hook, so it runs after it: the closed stats
    atexit.register(lambda: print(f"stats {json.dumps({**result, **emitter.stats().as_dict()})}",
                                  flush=True))
    store: Any = (InMemoryEventStore(buffer_capacity=args.count + 1) if args.memory
                  else DiskEventStore(args.directory, scan_interval=args.scan))
    emitter = Emitter(args.endpoint, event_store=store, max_retry_delay_seconds=0.5,
                      shutdown_timeout=2.0)
    tracker = Tracker("disk-child", emitter)
    out = sys.stdout
    out.write(f"rss {_rss_kb()}\n")
    out.flush()
    start = time.monotonic()
    for n in range(args.count):
        tracker.track(StructuredEvent("disk", "child", label=f"{args.prefix}-{n}"))
        if n % 50 == 49 or n == args.count - 1:
            out.write(f"tracked {n} {time.time():.6f}\n")
            out.flush()
        if args.rate:
            delay = start + (n + 1) / args.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    out.write("done\n")
    out.flush()
    if args.send:
        store.adopt()
        result["flushed"] = emitter.flush(args.timeout)
        return 0 if result["flushed"] else 1
    while args.hold:
        time.sleep(3600)
    return 0


def _rss_kb() -> int:
    """This process's resident set size (Linux), in KiB; 0 where unknown."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

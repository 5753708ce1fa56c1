"""Does a busy tracking thread starve the sender of the GIL?

``python -m stress.sender_gil [--requests 40] [--runs 3]`` times POSTs of a 500-event body
to the loopback sink (:mod:`stress.sink`) through the default keep-alive client, in fresh
processes, while another thread of the same process does one of:

* ``nothing``: the sender alone;
* ``spin``: a pure-Python busy loop (holds the GIL, never releases it on its own);
* ``track``: tracks events flat out (to a closed port, so that only this client sends),
  with event ids from ``ssl.RAND_bytes`` (the library's default);
* ``track, ids from os.urandom (N per call)``: the same, with ids from ``os.urandom``, a
  system call that releases the GIL, N ids per call (the library makes 1024 per call);
* ``track, N threads``: N threads tracking flat out through one shared tracker, as in
  the bench's 4- and 16-thread cells (one buffer, one sender thread of its own, which
  retries the closed port).

Every hand-back of the GIL restarts a waiting thread's switch interval (5 ms), so a
tracking thread that releases and retakes it often keeps the sender waiting much longer
than one that never does. Each socket call hands the GIL over, and with N busy threads
the sender waits behind them to take it back, so a POST takes longer the more threads
track. That is what caps delivery while 16 threads track flat out, however cheap the
sender's own work is. Nothing is asserted: this prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from stress.bench_runner import in_fresh_process, sink_process
from stress.child import event_factory, records_of

LOADS = ("nothing", "spin", "track", "track, ids from os.urandom (1024 per call)",
         "track, ids from os.urandom (256 per call)", "track, 4 threads", "track, 16 threads")


def measure(port: int, load: str, requests: int) -> float:
    """In a fresh process: median ms per POST next to *load*."""
    import snowplow_threaded.tracker as tracker_module
    from snowplow_threaded import Emitter, Tracker
    from snowplow_threaded.clients import ConnectionClient
    from snowplow_threaded.record import post_body

    if "os.urandom" in load:
        tracker_module.random_bytes = os.urandom
        if "256" in load:
            fresh = tracker_module._fresh_ids
            tracker_module._fresh_ids = lambda count=256: fresh(count)
    source = Tracker("gil", Emitter("http://127.0.0.1:9", max_retry_delay_seconds=60))
    make = event_factory("ours", "se")
    records = records_of(source, [make() for _ in range(500)])
    body = post_body(records, "1")
    client = ConnectionClient(f"http://127.0.0.1:{port}/com.snowplowanalytics.snowplow/tp2",
                              (5.0, 10.0))
    threads = int(load.split()[1]) if load.endswith(" threads") else 1
    times = []
    with busy(load, threads, make) as running:
        for _ in range(requests):
            if running.broken:
                raise RuntimeError(f"a thread of the load {load!r} failed")
            start = time.perf_counter()
            client.request("POST", body, None)
            times.append(time.perf_counter() - start)
    client.close()
    return statistics.median(times) * 1000


@contextlib.contextmanager
def busy(load: str, threads: int, make: Callable[[], Any]) -> Iterator[threading.Barrier]:
    """*threads* threads doing *load* (``nothing``, ``spin``, or tracking flat out through
    one shared tracker to a closed port) until the block ends; yields a barrier that is
    broken if one of them failed."""
    stop = threading.Event()
    running = threading.Barrier(threads + 1)
    from snowplow_threaded import Emitter, Tracker

    tracker = None if load in ("nothing", "spin") else Tracker(
        "busy", Emitter("http://127.0.0.1:9", buffer_capacity=1000, max_retry_delay_seconds=60))
    if tracker is not None:
        tracker.track(make())  # its sender has started and failed once: it now backs off

    def work() -> None:
        try:
            running.wait(10)
        except threading.BrokenBarrierError:
            return  # another thread failed first: the main thread reports it
        try:
            count = 0
            while not stop.is_set():
                if tracker is None:
                    count += 1
                else:
                    tracker.track(make())
        except BaseException:
            running.abort()  # the timed requests would measure a load that is not there
            raise

    if load != "nothing":
        for _ in range(threads):
            threading.Thread(target=work, daemon=True).start()
        running.wait(10)  # the load runs before the first timed request
    try:
        yield running
    finally:
        stop.set()


def run_sender(spec: dict[str, Any]) -> dict[str, Any]:
    """``stress.child`` mode ``sender`` (for ``stress.ab --sender``): the library's
    :class:`~snowplow_threaded.transport.Transport` sends a batch of ``batch`` records of
    ``workload`` to the sink (encoding and POST, as a worker does) ``requests`` times next
    to ``threads`` threads tracking flat out. Median wall ms and sender-thread CPU ms per
    send."""
    from snowplow_threaded import Emitter, Tracker
    from snowplow_threaded.transport import Transport, sent_timestamp

    workload, batch = spec["workload"], int(spec["batch"])
    source = Tracker("gil", Emitter("http://127.0.0.1:9", max_retry_delay_seconds=60),
                     encode_base64=workload != "sd_raw")
    make = event_factory("ours", "sd" if workload.startswith("sd") else workload)
    records = records_of(source, [make() for _ in range(batch)])
    transport = Transport(f"http://127.0.0.1:{spec['port']}/com.snowplowanalytics.snowplow/tp2",
                          "post", (5.0, 10.0))
    transport.send(records, sent_timestamp())  # connected
    threads = int(spec["threads"])
    times, cpu, requests = [], [], 0
    with busy("track" if threads else "nothing", max(threads, 1), make) as running:
        for _ in range(int(spec["requests"])):
            if running.broken:
                raise RuntimeError("a tracking thread failed")
            start, start_cpu = time.perf_counter(), time.thread_time()
            result = transport.send(records, sent_timestamp())
            times.append(time.perf_counter() - start)
            cpu.append(time.thread_time() - start_cpu)
            requests += result.requests
            if getattr(result, "delivered", getattr(result, "sent", None)) != batch:
                raise RuntimeError(f"the sink did not take the batch: {result}")
    transport.close()
    return {"ms": statistics.median(times) * 1000, "cpu_ms": statistics.median(cpu) * 1000,
            "requests": requests}


def run_child(port: int, load: str, requests: int) -> float:
    value: float = in_fresh_process(measure, port, load, requests)
    return value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stress.sender_gil", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    results: dict[str, list[float]] = {load: [] for load in LOADS}
    with sink_process() as port:
        for _ in range(args.runs):
            for load in LOADS:
                results[load].append(run_child(port, load, args.requests))
    lines = [f"# One POST of 500 events to the loopback sink, next to busy threads "
             f"({args.runs} runs x {args.requests} requests, median of medians)", "",
             "| the other threads | ms per POST | every run |", "| --- | ---: | --- |"]
    for load, values in results.items():
        lines.append(f"| {load} | {statistics.median(values):.1f} | "
                     + ", ".join(f"{v:.1f}" for v in values) + " |")
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

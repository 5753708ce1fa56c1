"""Is ``track()``'s tail latency the engine's, or the machine's?

``python -m stress.jitter [--events 20000] [--runs 5]`` times ``track()`` (StructuredEvent,
one tracking thread, as workload (a) of :mod:`stress.bench`) in fresh processes, runs
alternating between two set-ups:

* ``sending``: the collector is the loopback sink, so the sender thread is busy and takes
  the GIL for every request;
* ``idle``: the collector is a closed port, so after its first refused connection the
  sender sleeps in its backoff and never runs again during the measurement.

* ``plain work``: no tracker at all, the same loop timing a pure-Python function of about
  the same p50 (dict copies and updates): what this machine does to any code.
* ``SD JSON parts only``: for workload (b)'s self-describing event (base64, 2 contexts),
  only the part of ``track()`` no implementation can skip: encoding its data and context
  entities as JSON and base64 on the caller's thread (that is what validates them and
  takes a snapshot the caller may then change). Its p99 is a floor for any tracker's
  ``track()`` p99 of that event on this machine.

For the two ``track()`` set-ups it also counts the calls during which the thread took a
minor page fault (``getrusage(RUSAGE_THREAD)`` read before and after each call, outside
the timed span) and their median time.

If p99 is about the same in the two ``track()`` set-ups, the tail comes from the process
and the machine (timer interrupts, scheduling, page faults), not from the sender; GIL
hand-offs with the sender show at p99.9 and max. ``stalls/s``: calls that took 10 µs or
more over p50, per second of timed calls (how often the machine interrupts a running
thread; a call of *d* µs catches one with a probability of about ``d x stalls/s x 1e-6``,
which sets p99 once it passes 1 %). Nothing is asserted: this prints a table.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time

from stress.bench_runner import in_fresh_process, sink_process
from stress.child import event_factory, percentiles


def _stall_rate(samples: list[int]) -> float:
    """Calls at least 10 µs over the median, per second of timed calls."""
    ordered = sorted(samples)
    threshold = ordered[len(ordered) // 2] + 10_000
    return sum(1 for s in samples if s >= threshold) / (sum(samples) / 1e9)


def measure_plain(events: int) -> dict[str, float]:
    """Run in a fresh process: time a pure-Python stand-in for track() (no library)."""
    base = {f"k{i}": f"value-{i}" for i in range(8)}
    tail = {"tv": "x", "tna": "y", "aid": "z", "p": "pc"}

    def work(n: int) -> dict[str, str]:
        out = {}
        for _ in range(3):
            out = base.copy()
            out.update(tail)
            out["eid"] = str(n)
        return out

    clock = time.perf_counter_ns
    samples: list[int] = []
    for n in range(events + 500):
        start = clock()
        work(n)
        samples.append(clock() - start)
    del samples[:500]
    return {**percentiles(samples), "stalls": _stall_rate(samples)}


def measure_json_parts(events: int) -> dict[str, float]:
    """Run in a fresh process: time only the JSON/base64 parts of workload (b)'s event."""
    make = event_factory("ours", "sd")
    batch = [make() for _ in range(events + 500)]
    clock = time.perf_counter_ns
    samples: list[int] = []
    for event in batch:
        start = clock()
        event._add_parts({}, True, None)
        samples.append(clock() - start)
    del samples[:500]
    return {**percentiles(samples), "stalls": _stall_rate(samples)}


def measure(endpoint: str, events: int) -> dict[str, float]:
    """Run in a fresh process: track *events* events after a warm-up, return percentiles."""
    from snowplow_threaded import Emitter, Tracker

    emitter = Emitter(endpoint, buffer_capacity=events * 2, max_retry_delay_seconds=60)
    tracker = Tracker("jitter", emitter)
    make = event_factory("ours", "se")
    for _ in range(500):
        tracker.track(make())
    time.sleep(0.2)  # 'idle': the first attempt has failed and the backoff started
    batch = [make() for _ in range(events)]
    clock = time.perf_counter_ns
    samples: list[int] = []
    faulted: list[int] = []  # the calls during which this thread took a page fault
    usage, me = resource.getrusage, resource.RUSAGE_THREAD
    for event in batch:
        faults = usage(me).ru_minflt  # outside the timed span
        start = clock()
        tracker.track(event)
        took = clock() - start
        samples.append(took)
        if usage(me).ru_minflt != faults:
            faulted.append(took)
    faulted.sort()
    return {**percentiles(samples), "stalls": _stall_rate(samples),
            "faulted_pct": 100 * len(faulted) / len(samples),
            "faulted_p50": faulted[len(faulted) // 2] / 1000 if faulted else 0.0}


def run_child(endpoint: str | None, events: int, json_parts: bool = False
              ) -> dict[str, float]:
    """One set-up's percentiles, measured in a fresh process."""
    def run() -> dict[str, float]:
        if json_parts:
            result = measure_json_parts(events)
        else:
            result = measure(endpoint, events) if endpoint else measure_plain(events)
        return {k: v for k, v in result.items() if isinstance(v, float)}

    parsed: dict[str, float] = in_fresh_process(run)
    return parsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stress.jitter", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    results: dict[str, list[dict[str, float]]] = {
        "sending": [], "idle": [], "plain work": [], "SD JSON parts only": []}
    with sink_process() as port:
        for _ in range(args.runs):
            results["sending"].append(run_child(f"http://127.0.0.1:{port}", args.events))
            results["idle"].append(run_child("http://127.0.0.1:9", args.events))
            results["plain work"].append(run_child(None, args.events))
            results["SD JSON parts only"].append(run_child(None, args.events, json_parts=True))
    lines = [f"# track() latency, sender busy vs idle, plain work, and the JSON parts of a "
             f"self-describing event ({args.runs} runs x "
             f"{args.events} calls each, medians; load average {os.getloadavg()[0]:.2f})", "",
             "| set-up | p50 µs | p99 µs | p99.9 µs | max µs | stalls/s "
             "| calls with a page fault | their p50 µs |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, runs in results.items():
        cells = [statistics.median(run[key] for run in runs)
                 for key in ("p50", "p99", "p999", "max", "stalls")]
        line = (f"| {name} | " + " | ".join(f"{c:,.1f}" for c in cells[:4])
                + f" | {cells[4]:,.0f} |")
        if "faulted_pct" in runs[0]:
            line += (f" {statistics.median(run['faulted_pct'] for run in runs):.1f} % | "
                     f"{statistics.median(run['faulted_p50'] for run in runs):.1f} |")
        else:
            line += " — | — |"
        lines.append(line)
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

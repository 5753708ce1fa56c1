"""What the fork hooks cost: time added to ``os.fork()`` with 1 and 10 live emitters, and
the cost of the pid check on the enqueue path.

Run: ``python -m stress.fork_cost [--forks 200]``. Each fork's child exits at once with
``os._exit(0)``; the parent times ``os.fork()`` itself (the child-side hook runs in the
child, so it is measured there and reported through a pipe). Loopback only, nothing sent.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import timeit


def fork_times(forks: int) -> tuple[list[float], list[float]]:
    """(parent-side fork() µs, child-side µs from fork return to hooks done) per fork."""
    parent: list[float] = []
    child: list[float] = []
    for _ in range(forks):
        read_fd, write_fd = os.pipe()
        start = time.perf_counter_ns()
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            os.write(write_fd, str(time.perf_counter_ns() - start).encode())
            os._exit(0)
        parent.append((time.perf_counter_ns() - start) / 1000)
        os.close(write_fd)
        child_ns = int(os.read(read_fd, 64) or b"0")
        os.close(read_fd)
        os.waitpid(pid, 0)
        child.append(child_ns / 1000)
    return parent, child


def summary(values: list[float]) -> str:
    values = sorted(values)
    return (f"p50 {statistics.median(values):8.1f} µs   "
            f"p90 {values[int(len(values) * 0.9)]:8.1f} µs")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--forks", type=int, default=200)
    args = parser.parse_args()
    from snowplow_threaded import Emitter, StructuredEvent, Tracker

    baseline_parent, baseline_child = fork_times(args.forks)
    out = [f"fork cost, {args.forks} forks each (child: fork return -> first line of child)",
           f"  no emitter:   parent {summary(baseline_parent)}   child {summary(baseline_child)}"]
    keep = []
    for count in (1, 10):
        while len(keep) < count:
            emitter = Emitter("http://127.0.0.1:9", flush_interval=3600, batch_size=10_000)
            tracker = Tracker("fork-cost", emitter)
            for i in range(100):  # workers started, 100 events buffered to drop in children
                tracker.track(StructuredEvent("c", "a", value=i))
            keep.append((emitter, tracker))
        parent, child = fork_times(args.forks)
        added = statistics.median(child) - statistics.median(baseline_child)
        out.append(f"  {count:2d} emitters:  parent {summary(parent)}   child {summary(child)}"
                   f"   -> hooks add ~{added:.1f} µs in the child")
    from snowplow_threaded import lifecycle

    dispatchers = [e._dispatcher for e, _ in keep]
    rounds, spent = 200, 0
    for _ in range(rounds):  # our hook alone, in-process: as if the pid had changed
        for dispatcher in dispatchers:
            dispatcher._pid = -1
        begin = time.perf_counter_ns()
        lifecycle._after_fork_in_child()
        spent += time.perf_counter_ns() - begin
    per_fork = spent / rounds / 1000
    out.append(f"  our after-fork hook alone (10 emitters): {per_fork:.1f} µs per fork, "
               f"{per_fork / len(dispatchers):.1f} µs per emitter; the rest of the child-side "
               "time is copy-on-write faults and Python's own thread clean-up after fork")
    emitter = keep[0][0]
    record = {"e": "se", "se_ca": "c", "se_ac": "a"}
    number = 200_000
    pid_check = timeit.timeit("os.getpid() != pid", setup="import os; pid = os.getpid()",
                              number=number) / number * 1e6
    admit = timeit.timeit(lambda: emitter.admit_record(record), number=20_000) / 20_000 * 1e6
    out.append(f"enqueue path: pid check {pid_check * 1000:.0f} ns per event; "
               f"whole admit() {admit:.2f} µs per event")
    for emitter, _ in keep:
        emitter.close(0)
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the fork hooks cost: time added to ``os.fork()`` with 1 and 10 live emitters, and
the cost of the pid check on the enqueue path.

Run: ``python -m stress.fork_cost [--forks 200] [--lib ours|ref] [--json PATH]``. Each
fork's child exits at once with ``os._exit(0)``; the parent times ``os.fork()`` itself
(before-fork hooks and the system call) and the child reports, through a pipe, the time
from just before the fork to its first line (the system call, scheduling and the
after-fork hooks). Loopback only, nothing sent. ``--lib ref`` measures the reference
``snowplow-tracker`` (``AsyncEmitter``: its threads start at construction, it has no fork
hook) the same way; :mod:`stress.bench` runs both and puts them side by side.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import statistics
import sys
import time
import timeit
from typing import Any

EMITTER_COUNTS = (1, 10)
BUFFERED = 100  # events held by each emitter at fork time (dropped in the children)


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


def stats_of(parent: list[float], child: list[float]) -> dict[str, float]:
    p, c = sorted(parent), sorted(child)
    return {"parent_p50": statistics.median(p), "parent_p90": p[int(len(p) * 0.9)],
            "child_p50": statistics.median(c), "child_p90": c[int(len(c) * 0.9)]}


def live_emitter(lib: str, index: int) -> tuple[Any, Any]:
    """(emitter, tracker) of *lib* with its sender thread(s) running and ``BUFFERED``
    events held (a closed port, batches too large to be due: nothing is sent)."""
    mod: Any = importlib.import_module("snowplow_threaded" if lib == "ours"
                                       else "snowplow_tracker")
    if lib == "ours":
        emitter = mod.Emitter("http://127.0.0.1:9", flush_interval=3600, batch_size=10_000)
        tracker = mod.Tracker("fork-cost", emitter)
    else:
        emitter = mod.AsyncEmitter("127.0.0.1", protocol="http", port=9, batch_size=10_000,
                                   thread_count=1)
        tracker = mod.Tracker(f"fork-cost-{index}", emitters=emitter)
    for i in range(BUFFERED):
        tracker.track(mod.StructuredEvent("c", "a", value=i))
    return emitter, tracker


def measure(lib: str, forks: int) -> dict[str, Any]:
    """Fork timings with 0, 1 and 10 live emitters of *lib*, in this process."""
    # the library is imported before the baseline: "no emitter" = imported, none live
    if lib == "ours":
        import snowplow_threaded  # noqa: F401
    else:  # the reference calls logging.basicConfig() and logs INFO
        import snowplow_tracker.emitters  # noqa: F401  (sets its own logger to INFO)

        for name in ("snowplow_tracker", "snowplow_tracker.emitters"):
            logging.getLogger(name).setLevel(logging.WARNING)
    result: dict[str, Any] = {"lib": lib, "forks": forks}
    base = stats_of(*fork_times(forks))
    result["0"] = base
    keep: list[tuple[Any, Any]] = []
    for count in EMITTER_COUNTS:
        while len(keep) < count:
            keep.append(live_emitter(lib, len(keep)))
        row = stats_of(*fork_times(forks))
        row["added_child_us"] = row["child_p50"] - base["child_p50"]
        row["added_parent_us"] = row["parent_p50"] - base["parent_p50"]
        result[str(count)] = row
    if lib == "ours":
        result.update(ours_extras(keep))
    result["keep"] = len(keep)
    return result


def ours_extras(keep: list[tuple[Any, Any]]) -> dict[str, float]:
    """Our after-fork hook alone (in-process, as if the pid had changed), the pid check
    and a whole ``admit()`` on the enqueue path."""
    from snowplow_threaded.process import REGISTRY

    dispatchers = [e._dispatcher for e, _ in keep]
    rounds, spent = 200, 0
    for _ in range(rounds):
        for dispatcher in dispatchers:
            dispatcher._pid = -1
        begin = time.perf_counter_ns()
        REGISTRY._after_fork_in_child()
        spent += time.perf_counter_ns() - begin
    per_fork = spent / rounds / 1000
    emitter = keep[0][0]
    record = b'{"e":"se","se_ca":"c","se_ac":"a"'
    number = 200_000
    # the expression track() runs (process_id.current_pid, inlined) and the comparison
    pid_check = timeit.timeit(
        "(KNOWN_PID[0] if FORK_MARK[0] else pid_now()) != pid",
        setup="from snowplow_threaded.process_id import FORK_MARK, KNOWN_PID, pid_now\n"
              "pid = pid_now()",
        number=number) / number * 1e6
    getpid = timeit.timeit("os.getpid() != pid", setup="import os; pid = os.getpid()",
                           number=number) / number * 1e6  # what it replaces
    admit = timeit.timeit(lambda: emitter.admit_record(record),
                          number=20_000) / 20_000 * 1e6
    for emitter, _ in keep:
        emitter.close(0)
    return {"hook_us_per_fork": per_fork, "hook_us_per_emitter": per_fork / len(dispatchers),
            "hook_emitters": len(dispatchers), "pid_check_ns": pid_check * 1000,
            "getpid_ns": getpid * 1000, "admit_us": admit}


def text_report(result: dict[str, Any]) -> str:
    base = result["0"]
    out = [f"fork cost ({result['lib']}), {result['forks']} forks each "
           "(child: just before fork -> first line of child)",
           f"  no emitter:   parent p50 {base['parent_p50']:8.1f} µs   child p50 "
           f"{base['child_p50']:8.1f} µs"]
    for count in EMITTER_COUNTS:
        row = result[str(count)]
        out.append(f"  {count:2d} emitters:  parent p50 {row['parent_p50']:8.1f} µs   "
                   f"child p50 {row['child_p50']:8.1f} µs   -> adds ~{row['added_parent_us']:.1f}"
                   f" µs in the parent, ~{row['added_child_us']:.1f} µs in the child")
    if "hook_us_per_fork" in result:
        out.append(f"  our after-fork hook alone ({result['hook_emitters']} emitters): "
                   f"{result['hook_us_per_fork']:.1f} µs per fork, "
                   f"{result['hook_us_per_emitter']:.1f} µs per emitter; the rest of the "
                   "child-side time is copy-on-write faults and Python's own thread clean-up "
                   "after fork")
        out.append(f"enqueue path: pid check {result['pid_check_ns']:.0f} ns per event "
                   f"(an os.getpid() check: {result['getpid_ns']:.0f} ns); "
                   f"whole admit() {result['admit_us']:.2f} µs per event")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--forks", type=int, default=200)
    parser.add_argument("--lib", choices=("ours", "ref"), default="ours",
                        help="this library (default) or the reference snowplow-tracker")
    parser.add_argument("--json", default=None, help="also write the raw numbers here")
    args = parser.parse_args(argv)
    result = measure(args.lib, args.forks)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh)
    sys.stdout.write(text_report(result) + "\n")
    sys.stdout.flush()
    os._exit(0)  # the reference's daemon threads and our closed emitters: nothing to wait for


if __name__ == "__main__":
    sys.exit(main())

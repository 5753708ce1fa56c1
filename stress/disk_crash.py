"""Issue 16's crash runs at full size, against the embedded collector, in real processes
killed with SIGKILL (tests/test_disk_crash.py runs small versions of each):

* ``outage``: the collector down, 100 000 events tracked, SIGKILL two seconds later, then a
  new process on the directory with the collector up: delivered, duplicates, RSS growth of
  the first process (its peak minus its size before tracking), beside the memory store
  holding the same events (which loses them all to the SIGKILL);
* ``kills``: SIGKILL at 20 random moments while tracking (about 50 000 events in all)
  and sending, a process after each; at the end, every event tracked more than
  ``--window`` before its kill must have arrived. Also reported: for each kill, how long
  before it the newest event that arrived was tracked (the write window as observed);
* ``four``: four processes on one directory tracking 12 500 events each, one killed while
  the collector holds back the answer to its request (the events are in, the 2xx is not):
  lost events (0), duplicates, and whether they were all that victim's.

Writes stress/out/disk.md (the committed copy: stress/results/disk.md).

    python -m stress.disk_crash [--only outage kills four] [--out stress/results/disk.md]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

from snowplow_threaded.collector import Collector
from tests.disk_support import Child, HoldingRelay, labels, wait_labels


def _peak_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def outage(collector: Collector, count: int) -> list[str]:
    lines = ["## Collector down, SIGKILL, a new process", "",
             "| store | tracked in | RSS growth | delivered after SIGKILL | duplicates | "
             "new process sent them in |", "| --- | --- | --- | --- | --- | --- |"]
    for kind in ("disk", "memory"):
        collector.reset()
        collector.pause(503)
        directory = Path(tempfile.mkdtemp(prefix="disk-outage-"))
        extra = ["--memory"] if kind == "memory" else []
        first = Child(directory, collector.endpoint, "a", count, "--hold", *extra)
        before = int(first.wait_line("rss ").split()[1])
        started = time.monotonic()
        first.wait_line("done", timeout=300)
        tracked_in = time.monotonic() - started
        time.sleep(2.0)
        growth = _peak_kb(first.proc.pid) - before
        first.proc.send_signal(signal.SIGKILL)
        first.wait()
        collector.resume()
        started = time.monotonic()
        second = Child(directory, collector.endpoint, "b", 0, "--send", "--timeout", "300")
        second.wait(600)
        sent_in = time.monotonic() - started
        got = labels(collector)
        duplicates = sum(got.values()) - len(got)
        lines.append(f"| {kind} | {tracked_in:.2f} s | {growth / 1024:.1f} MB | "
                     f"{len(got)} of {count} | {duplicates} | {sent_in:.1f} s |")
    return [*lines, ""]


def kills(collector: Collector, rounds: int, window: float, seed: int) -> list[str]:
    collector.reset()
    rng = random.Random(seed)
    directory = Path(tempfile.mkdtemp(prefix="disk-kills-"))
    owed: dict[str, int] = {}
    timelines: dict[str, list[tuple[int, float]]] = {}
    killed: dict[str, float] = {}
    for index in range(rounds):
        child = Child(directory, collector.endpoint, f"k{index}", 1_000_000, "--rate", "10000")
        child.wait_line("tracked")
        time.sleep(rng.uniform(0.05, 0.45))
        killed[child.prefix] = time.time()
        child.proc.send_signal(signal.SIGKILL)
        child.wait()
        timelines[child.prefix] = child.tracked()
        safe = [n for n, at in timelines[child.prefix] if at <= killed[child.prefix] - window]
        owed[child.prefix] = max(safe, default=-1)
    last = Child(directory, collector.endpoint, "end", 0, "--send", "--timeout", "120")
    last.wait(300)
    expected = {f"{p}-{n}" for p, top in owed.items() for n in range(top + 1)}
    wait_labels(collector, expected, timeout=60)
    got = labels(collector)
    tracked = sum(max((n for n, _ in t), default=-1) + 1 for t in timelines.values())
    lost = expected - set(got)
    duplicates = sum(got.values()) - len(got)
    windows = []
    for prefix, timeline in timelines.items():
        newest = max((int(label.split("-")[1]) for label in got
                      if label.startswith(prefix + "-")), default=-1)
        at = next((t for n, t in timeline if n >= newest), None)
        if at is not None:
            windows.append(killed[prefix] - at)
    windows.sort()
    return ["## SIGKILL at random moments while tracking and sending", "",
            f"{rounds} processes one after another on one directory, each tracking at 10 000 "
            f"events/s and killed after 0.05 to 0.45 s (seed {seed}); then one process sends "
            "what is left.", "",
            "| tracked (about) | owed (tracked > window before the kill) | delivered | lost "
            "| duplicates | newest delivered event tracked before its kill: min / median / max |",
            "| --- | --- | --- | --- | --- | --- |",
            f"| {tracked} | {len(expected)} (window {window} s) | {len(got)} | {len(lost)} | "
            f"{duplicates} | {windows[0] * 1000:.0f} / {windows[len(windows) // 2] * 1000:.0f}"
            f" / {windows[-1] * 1000:.0f} ms |", "",
            "The last column is the write window as it was: events tracked up to that long "
            "before a SIGKILL were already written (progress is printed every 50 events, so "
            "it is rounded up by up to 5 ms).", ""]


def four(collector: Collector, count: int) -> list[str]:
    collector.reset()
    directory = Path(tempfile.mkdtemp(prefix="disk-four-"))
    relay = HoldingRelay(collector.port)
    relay.hold.set()
    victim = Child(directory, relay.endpoint, "dead", count, "--hold")
    others = [Child(directory, collector.endpoint, f"live{i}", count, "--rate", "5000",
                    "--hold") for i in range(3)]
    relay.holding.wait(60)
    victim.wait_line("done", timeout=120)
    time.sleep(0.5)
    victim.proc.send_signal(signal.SIGKILL)
    victim.wait()
    relay.release.set()
    expected = {f"{c.prefix}-{n}" for c in [victim, *others] for n in range(count)}
    wait_labels(collector, expected, timeout=120)
    for child in others:
        child.proc.send_signal(signal.SIGTERM)
    stats = [child.stats() for child in others]
    relay.close()
    got = labels(collector)
    twice = [label for label, n in got.items() if n > 1]
    victims = sum(label.startswith("dead-") for label in twice)
    in_flight = sum(s["disk"]["adopted_in_flight"] for s in stats)
    return ["## Four processes, one killed while its request is in flight", "",
            f"Four processes on one directory, {count} events each (three at 5 000/s, the "
            "victim flat out through a relay that holds the collector's answers back); the "
            "victim is SIGKILLed once all its events are written, its first request in.", "",
            "| events | delivered | lost | duplicates | of them the victim's | counted as "
            "possibly sent (adopted_in_flight) | leftovers in the directory |",
            "| --- | --- | --- | --- | --- | --- | --- |",
            f"| {len(expected)} | {len(set(got) & expected)} | {len(expected - set(got))} | "
            f"{len(twice)} | {victims} | {in_flight} | "
            f"{'none' if sorted(os.listdir(directory)) == ['FORMAT'] else 'some'} |", ""]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", default=["outage", "kills", "four"])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--window", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--out", default="stress/out/disk.md")
    args = parser.parse_args()
    load = os.getloadavg()
    started = time.monotonic()
    lines = ["# DiskEventStore crash runs", "",
             f"`python -m stress.disk_crash` on {os.cpu_count()} shared cores, Python "
             f"{sys.version.split()[0]}; load average {load[0]:.1f} at the start (other "
             "developers' jobs ran too).", ""]
    with Collector(max_events=400_000) as collector:
        if "outage" in args.only:
            lines += outage(collector, args.events)
        if "kills" in args.only:
            lines += kills(collector, args.rounds, args.window, args.seed)
        if "four" in args.only:
            lines += four(collector, 12_500)
    lines.append(f"Load average {os.getloadavg()[0]:.1f} at the end; "
                 f"{time.monotonic() - started:.0f} s in all.\n")
    report = "\n".join(lines)
    print(report)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A/B pairs of our library against itself: two revisions, or a hand-written part against
the library that would replace it, on the bench's workloads, interleaved.

Run from the repository root::

    python -m stress.ab --a rev:HEAD~1 --b tree --pairs 5
    python -m stress.ab --a tree --b tree+urllib3_pool --threads 1,4,16 --pairs 5
    python -m stress.ab --a tree --b tree+json_dumps --callgrind

A side is ``tree`` (this working tree's ``snowplow_threaded``) or ``rev:<git revision>``
(that revision's, exported to a temporary folder), optionally followed by ``+<variant>``
(:mod:`stress.variants`: ``urllib3_pool``, ``json_dumps``). Both sides run this tree's
harness (:mod:`stress.child`, the sink), each measurement in a fresh interpreter.

* Pairs (the default): for every workload and thread count, ``--pairs`` pairs of bench
  cells (:func:`stress.child.run_load`: every thread tracks flat out, then the sink waits
  for the last event), the order alternating (A B, B A, ...) so that a noisy moment or a
  drift hits both sides. Reported per cell: each side's median, and the median of the
  per-pair ratios B/A, of delivered events/s, process CPU per delivered event, the
  senders' CPU per delivered event (process CPU minus the tracking threads'), and
  ``track()`` p50/p99; and in how many pairs B was better. ``--lib ours_nodrop`` (the
  default) gives the buffer room for every event, so CPU per delivered event is not
  inflated by events dropped.
* ``--sender``: the sender alone, next to tracking threads (:func:`stress.sender_gil.run_sender`):
  for every workload and thread count (0 = the sender alone), ``--pairs`` pairs of fresh
  processes, each timing ``--requests`` sends of a ``--batch``-record batch through the
  library's ``Transport`` (encoding and POST, as a worker does) while the threads track
  flat out; the median wall and sender-thread CPU ms per send, and the ratios B/A.
* ``--callgrind``: instructions instead of seconds. Each side runs one tracking thread
  under ``valgrind --tool=callgrind`` at two sizes, and the difference of the two totals
  over the difference of the sizes is its marginal instruction count per delivered event
  (start-up and warm-up cancel out). Repeatable whatever else the machine runs; threads
  are serialised by valgrind, so batching differs from a real run (the requests made are
  reported too).

Nothing is asserted: this prints a Markdown report (``--out`` also writes it there).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stress.bench_runner import REPO, WORKLOADS, closed_port, run_child, sink_process

#: (key in a run's result, label, True if larger is better)
METRICS = (("events_per_s", "delivered events/s", True),
           ("cpu_us_per_event", "CPU µs / delivered event", False),
           ("other_cpu_us_per_event", "senders' CPU µs / delivered event", False),
           ("p50", "track() p50 µs", False),
           ("p99", "track() p99 µs", False),
           ("events_per_request", "events per request", True))


@dataclass
class Side:
    label: str
    root: Path
    variant: str


@contextlib.contextmanager
def sides(specs: list[str]) -> Iterator[list[Side]]:
    """A folder per side holding this tree's ``stress`` and the side's library."""
    with tempfile.TemporaryDirectory(prefix="stress-ab-") as tmp:
        made = []
        for index, spec in enumerate(specs):
            source, _, variant = spec.partition("+")
            root = Path(tmp) / f"side{index}"
            root.mkdir()
            (root / "stress").symlink_to(REPO / "stress")
            if source == "tree":
                (root / "snowplow_threaded").symlink_to(REPO / "snowplow_threaded")
            elif source.startswith("rev:"):
                archive = subprocess.run(
                    ["git", "archive", source[4:], "snowplow_threaded"], cwd=REPO,
                    check=True, capture_output=True).stdout
                subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
            else:
                raise SystemExit(f"a side is 'tree' or 'rev:<revision>', got {source!r}")
            made.append(Side(spec, root, variant))
        yield made


def figure(result: dict[str, Any], key: str) -> float | None:
    if not result.get("ok"):
        return None
    if key == "events_per_request":
        return result["delivered"] / result["requests"] if result.get("requests") else None
    value = result.get("latency_us", {}).get(key) if key in ("p50", "p99") else result.get(key)
    return None if value is None else float(value)


#: ``--sender``'s figures: (key in a run's result, label, True if larger is better)
SENDER_METRICS = (("ms", "ms per send", False), ("cpu_ms", "sender CPU ms per send", False))
Metrics = tuple[tuple[str, str, bool], ...]


def run_pairs(args: argparse.Namespace, pair: list[Side]) -> list[str]:
    header = (f"A = `{pair[0].label}`, B = `{pair[1].label}`; {args.pairs} pairs per cell, "
              f"{args.events} events per run, `{args.lib}`; each figure the median over the "
              "pairs, each ratio the median of the per-pair ratios B/A (the order alternates)")

    def spec(workload: str, threads: int, port: int) -> dict[str, Any]:
        return {"mode": "run", "lib": args.lib, "workload": workload, "threads": threads,
                "events": args.events, "port": port, "timeout": 120,
                "capacity": 2 * args.events if args.lib == "ours_nodrop" else None}

    return interleaved(args, pair, header, "threads", spec, METRICS, 150)


def run_sender(args: argparse.Namespace, pair: list[Side]) -> list[str]:
    header = (f"One send of {args.batch} records (encode + POST) next to tracking threads: "
              f"A = `{pair[0].label}`, B = `{pair[1].label}`; {args.pairs} pairs of fresh "
              f"processes, each the median of {args.requests} sends; figures the median over "
              "the pairs, ratios the median of the per-pair ratios B/A")

    def spec(workload: str, threads: int, port: int) -> dict[str, Any]:
        return {"mode": "sender", "lib": "ours", "workload": workload, "threads": threads,
                "batch": args.batch, "port": port, "requests": args.requests}

    return interleaved(args, pair, header, "tracking threads", spec, SENDER_METRICS, 300)


def interleaved(args: argparse.Namespace, pair: list[Side], header: str, threads_name: str,
                spec: Callable[[str, int, int], dict[str, Any]], metrics: Metrics,
                timeout: float) -> list[str]:
    """For every workload and thread count, ``--pairs`` pairs of children (the order
    alternating), and a row per metric."""
    lines = [header, "", f"| workload, {threads_name} | metric | A | B | B/A | B better |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    with sink_process() as port:
        for workload in args.workloads:
            for threads in args.threads:
                runs: list[list[dict[str, Any]]] = [[], []]
                for index in range(args.pairs):
                    for which in ((0, 1) if index % 2 == 0 else (1, 0)):
                        side = pair[which]
                        result = run_child({**spec(workload, threads, port),
                                            "variant": side.variant}, timeout, root=side.root)
                        check_library(result, side)
                        runs[which].append(result)
                lines += cell_rows(f"{WORKLOADS[workload]}, {threads}", runs, metrics)
                progress(lines[-len(metrics):])
    return lines


def check_library(result: dict[str, Any], side: Side) -> None:
    """Fail loudly if the child imported another copy of the library than the side's."""
    found = result.get("library_file")
    if result.get("ok") and not str(found).startswith(str(side.root)):
        raise SystemExit(f"side {side.label} imported {found}, not from {side.root}")


def cell_rows(name: str, runs: list[list[dict[str, Any]]], metrics: Metrics) -> list[str]:
    rows = []
    for key, label, larger_better in metrics:
        a = [figure(r, key) for r in runs[0]]
        b = [figure(r, key) for r in runs[1]]
        ratios = [y / x for x, y in zip(a, b, strict=True) if x and y is not None]
        better = sum(1 for x, y in zip(a, b, strict=True) if x is not None and y is not None
                     and (y > x if larger_better else y < x))
        rows.append(f"| {name} | {label} | {med(a)} | {med(b)} | "
                    + (f"{statistics.median(ratios):.3f}" if ratios else "n/a")
                    + f" | {better}/{len(ratios)} |")
    return rows


def med(values: list[float | None]) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return "n/a"
    value = statistics.median(known)
    return f"{value:,.0f}" if value >= 1000 else f"{value:.2f}"


def callgrind_total(side: Side, workload: str, events: int, port: int,
                    folder: str, args: argparse.Namespace) -> tuple[int, dict[str, Any]]:
    """Instructions of one run: *events* events tracked and delivered, or (``--sender``)
    *events* sends of a ``--batch``-record batch."""
    out = os.path.join(folder, f"cg.{abs(hash((side.label, workload, events)))}")
    spec: dict[str, Any] = (
        {"mode": "sender", "lib": "ours", "workload": workload, "threads": 0,
         "batch": args.batch, "requests": events, "port": port, "variant": side.variant}
        if args.sender else
        {"mode": "down", "lib": "ours", "workload": workload, "events": events,
         "port": closed_port(), "capacity": 2 * events, "variant": side.variant,
         "time_budget": 1200}
        if args.down else
        {"mode": "run", "lib": "ours_nodrop", "workload": workload, "threads": 1,
         "events": events, "port": port, "timeout": 1200, "variant": side.variant,
         "capacity": 2 * events})
    result = run_child(spec, 1500, root=side.root,
                       prefix=("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"))
    check_library(result, side)
    if not result.get("ok"):
        raise SystemExit(f"callgrind run failed: {result.get('error')}")
    text = Path(out).read_text(errors="replace")
    found = re.search(r"^summary:\s+(\d+)", text, re.MULTILINE)
    if found is None:
        raise SystemExit(f"no callgrind summary in {out}")
    return int(found.group(1)), result


def run_callgrind(args: argparse.Namespace, pair: list[Side]) -> list[str]:
    small, large = args.callgrind_events
    if args.sender:  # per record sent: the differences are over sends of a batch
        what = (f"Instructions per record sent (callgrind; the sender alone: (Ir of {large} "
                f"sends - Ir of {small}) / {large - small} / {args.batch} records)")
    elif args.down:
        what = (f"Instructions per tracked event (callgrind; `track()` alone: the collector "
                f"unreachable, the sender backing off; (Ir at {large:,} events - Ir at "
                f"{small:,}) / {large - small:,})")
    else:
        what = (f"Instructions per delivered event (callgrind, 1 tracking thread, "
                f"`ours_nodrop`: (Ir at {large:,} events - Ir at {small:,}) / "
                f"{large - small:,})")
    lines = [f"{what}; A = `{pair[0].label}`, B = `{pair[1].label}`", "",
             "| workload | A Ir / event | B Ir / event | B/A | requests A | requests B |",
             "| --- | ---: | ---: | ---: | --- | --- |"]
    with sink_process() as port, tempfile.TemporaryDirectory(prefix="stress-cg-") as folder:
        for workload in args.workloads:
            per_event, requests = [], []
            per = (large - small) * (args.batch if args.sender else 1)
            for side in pair:
                low, low_run = callgrind_total(side, workload, small, port, folder, args)
                high, high_run = callgrind_total(side, workload, large, port, folder, args)
                per_event.append((high - low) / per)
                requests.append(f"{low_run.get('requests')}, {high_run.get('requests')}")
            lines.append(f"| {WORKLOADS[workload]} | {per_event[0]:,.0f} | {per_event[1]:,.0f}"
                         f" | {per_event[1] / per_event[0]:.3f} | {requests[0]} | "
                         f"{requests[1]} |")
            progress(lines[-1:])
    return lines


def progress(lines: list[str]) -> None:
    print("\n".join(lines), file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stress.ab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", default="rev:HEAD", help="side A (default rev:HEAD)")
    parser.add_argument("--b", default="tree", help="side B (default tree)")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--threads", type=lambda s: [int(x) for x in s.split(",")],
                        default=[1, 4])
    parser.add_argument("--workloads", type=lambda s: s.split(","), default=list(WORKLOADS))
    parser.add_argument("--lib", choices=("ours", "ours_nodrop"), default="ours_nodrop")
    parser.add_argument("--sender", action="store_true",
                        help="time the sender alone next to tracking threads")
    parser.add_argument("--batch", type=int, default=500, help="records per send (--sender)")
    parser.add_argument("--requests", type=int, default=30, help="sends per run (--sender)")
    parser.add_argument("--callgrind", action="store_true",
                        help="instruction counts under valgrind instead of timed pairs")
    parser.add_argument("--down", action="store_true",
                        help="with --callgrind: track() alone (the collector unreachable)")
    parser.add_argument("--callgrind-events", type=lambda s: [int(x) for x in s.split(",")],
                        default=None, help="the two sizes: events (default 1000,3000), or "
                                           "with --sender sends (default 5,25)")
    parser.add_argument("--out", type=Path, help="also write the report to this file")
    args = parser.parse_args(argv)
    if args.callgrind_events is None:
        args.callgrind_events = [5, 25] if args.sender else [1000, 3000]
    started, load = time.monotonic(), os.getloadavg()
    with sides([args.a, args.b]) as pair:
        body = (run_callgrind(args, pair) if args.callgrind
                else run_sender(args, pair) if args.sender else run_pairs(args, pair))
    command = "python -m stress.ab " + " ".join(argv if argv is not None else sys.argv[1:])
    report = "\n".join([f"`{command}`", "",
                        f"Load average {load[0]:.2f} at the start, "
                        f"{os.getloadavg()[0]:.2f} at the end; {os.cpu_count()} CPUs; "
                        f"{time.monotonic() - started:.0f} s.", "", *body]) + "\n"
    sys.stdout.write(report)
    if args.out is not None:
        args.out.write_text(report)


if __name__ == "__main__":
    main()

"""What the collector's sliced JSON parser (``collector/jsontext.py``) buys: the longest a
thread waits for the interpreter while a big body is parsed, against ``json.loads``.

    python -m stress.json_slices            # writes a Markdown table to stdout

A second thread wakes every millisecond and records the longest gap between its wake-ups
while the main thread parses each document (the event loop is that second thread in the
collector). ``json.loads`` holds the GIL for the whole parse; ``load_json`` hands each
element of a large container to the C scanner on its own. Each figure is the median of
``--runs`` runs; the machine's load shows in both columns alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

from snowplow_threaded.collector.jsontext import load_json


def longest_gap(parse: Callable[[], Any]) -> tuple[float, float]:
    """(seconds *parse* took, longest gap in seconds between a 1 ms ticker's wake-ups)."""
    gaps: list[float] = []
    stop = threading.Event()

    def tick() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            time.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = threading.Thread(target=tick)
    ticker.start()
    time.sleep(0.05)
    gaps.clear()
    started = time.perf_counter()
    parse()
    took = time.perf_counter() - started
    stop.set()
    ticker.join()
    return took, max(gaps)


DOCUMENTS: dict[str, Callable[[], str]] = {
    "10 MiB batch, 318 000 tiny events": lambda: json.dumps(
        {"schema": "iglu:x", "data": [{"e": "pv", "tv": "t", "p": "web"}] * 318_000}),
    "9 MiB of [] in one array": lambda: "[" + ",".join(["[]"] * 3_000_000) + "]",
    "10 MiB, one string": lambda: json.dumps({"data": "x" * 10_000_000}),
    "60 KB batch, 50 events (inline size)": lambda: json.dumps(
        {"schema": "iglu:x", "data": [{"e": "pv", "tv": "t", "p": "web",
                                       "url": "https://example.com/" + "p" * 1000}] * 50}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    load = os.getloadavg()
    print(f"Python sliced JSON parse vs json.loads; {args.runs} runs each, median; "
          f"load average {load[0]:.2f} at the start\n")
    print("| document | json.loads: time, longest gap | load_json: time, longest gap |")
    print("| --- | --- | --- |")
    for name, build in DOCUMENTS.items():
        text = build()
        cells = []
        for parse in (json.loads, load_json):
            runs = [longest_gap(lambda parse=parse, text=text: parse(text))
                    for _ in range(args.runs)]
            took = statistics.median(r[0] for r in runs)
            gap = statistics.median(r[1] for r in runs)
            cells.append(f"{took * 1000:.0f} ms, {gap * 1000:.1f} ms")
        print(f"| {name} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()

"""What encoding a batch costs the sender: the request body joined from records (an
event's JSON, made by ``track()``: ``snowplow_threaded.record``) against encoding the
same events held as dicts with the C JSON encoder and with ``json.dumps`` (what a sender
holding dicts must do).

Run: ``python -m stress.encode_cost [--batch 500] [--runs 5]``. For each workload, a batch
of records as ``track()`` builds them (the bench's events) is made into the UTF-8 bytes of
a request body; thread CPU per record, best of 7 loops (the encoders take turns), median
over *runs* fresh processes. No network. Prints Markdown tables; nothing is asserted.

A second table is about the caller's thread: could ``track()`` check a context entity
instead of encoding it, and leave the encoding to the sender? It times the C encoder
``track()`` uses on each of workload (b)'s three entities against the cheapest Python check
that such a design needs (a dict of ``str`` keys and JSON scalars, finite floats, then a
shallow snapshot): a check no cheaper than the encoding means nothing to gain.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys

from stress.bench_procs import best_cpu_us
from stress.bench_runner import in_fresh_process
from stress.child import event_factory, records_of

WORKLOADS = {"se": "(a) StructuredEvent", "sd": "(b) SelfDescribing+2 ctx, base64",
             "sd_raw": "(b) SelfDescribing+2 ctx, no base64"}
ENCODERS = ("join of records (post_body)", "C encoder of dicts", "json.dumps of dicts")


def measure(workload: str, batch: int) -> dict[str, float]:
    """In a fresh process: µs per record for each encoder, on one batch of *workload*."""
    from snowplow_threaded import Snowplow, TrackerConfiguration
    from snowplow_threaded.record import encode_object, payload_of, post_body

    tracker = Snowplow.create_tracker(
        f"encode-{workload}", "http://127.0.0.1:9", app_id="bench",
        tracker_config=TrackerConfiguration(encode_base64=workload != "sd_raw"))
    make = event_factory("ours", workload)
    records = records_of(tracker, [make() for _ in range(batch)])
    stm = "1700000000000"
    dicts = [{**payload_of(record), "stm": stm} for record in records]
    tracker.close(0)
    dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    variants = {
        ENCODERS[0]: lambda: post_body(records, stm),
        ENCODERS[1]: lambda: ("[" + ",".join(map(encode_object, dicts)) + "]").encode(),
        ENCODERS[2]: lambda: dumps(dicts).encode("utf-8"),
    }
    expected = variants[ENCODERS[2]]()
    if json.loads(variants[ENCODERS[0]]())["data"] != json.loads(expected) or any(
            json.loads(fn()) != json.loads(expected) for fn in list(variants.values())[1:]):
        raise AssertionError("the encoders disagree")  # they must give the same events
    number = max(3, 20_000 // batch)
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(7):  # the encoders take turns, so a change of machine speed hits all
        for name, fn in variants.items():
            best[name] = min(best[name], best_cpu_us(fn, number, repeat=1) / batch)
    return best


_SCALARS = frozenset({str, int, float, bool, type(None)})
CALLER = ("encode (the C encoder track() uses)", "check and snapshot in Python")
CALLER_ROW = "(b) SelfDescribing+2 ctx: data and contexts"


def _checked_snapshot(data: object) -> dict[str, object] | None:
    """What a sender-side encoding would need from ``track()``: a snapshot of *data* if it
    is a dict of ``str`` keys to JSON scalars (finite floats), else None."""
    if type(data) is not dict:
        return None
    types = set(map(type, data.values()))
    if not types <= _SCALARS or not all(type(key) is str for key in data):
        return None
    if float in types and not all(map(math.isfinite,
                                      [v for v in data.values() if type(v) is float])):
        return None
    return data.copy()


def measure_caller() -> dict[str, float]:
    """In a fresh process: µs per entity of workload (b), encoded or checked."""
    from snowplow_threaded.payload import encoder_for

    encode = encoder_for(None)
    event = event_factory("ours", "sd")()
    entities = [event.event_json.data] + [entity.data for entity in event.context]
    if any(_checked_snapshot(data) is None for data in entities):
        raise AssertionError("the check must accept the bench's entities")
    variants = {CALLER[0]: lambda: [encode(data, "") for data in entities],
                CALLER[1]: lambda: [_checked_snapshot(data) for data in entities]}
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(7):
        for name, fn in variants.items():
            best[name] = min(best[name], best_cpu_us(fn, 5000, repeat=1) / len(entities))
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stress.encode_cost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    lines = [f"# Encoding a batch of {args.batch} records: thread CPU µs per record "
             f"(median of {args.runs} fresh processes, best of 7 loops each)", "",
             "| workload | " + " | ".join(ENCODERS) + " | join / C encoder |",
             "| --- |" + " ---: |" * (len(ENCODERS) + 1)]
    for workload, label in WORKLOADS.items():
        runs = [in_fresh_process(measure, workload, args.batch) for _ in range(args.runs)]
        cells = {name: statistics.median(run[name] for run in runs) for name in ENCODERS}
        ratio = statistics.median(run[ENCODERS[0]] / run[ENCODERS[1]] for run in runs)
        lines.append(f"| {label} | " + " | ".join(f"{cells[n]:.2f}" for n in ENCODERS)
                     + f" | {ratio:.2f}x |")
    caller = [in_fresh_process(measure_caller) for _ in range(args.runs)]
    encoded, checked = (statistics.median(run[name] for run in caller) for name in CALLER)
    ratio = statistics.median(run[CALLER[1]] / run[CALLER[0]] for run in caller)
    lines += ["", "On the caller's thread: thread CPU µs per context entity (the mean of "
              "workload (b)'s three), median of the runs", "",
              "| entities | " + " | ".join(CALLER) + " | check / encode |",
              "| --- | ---: | ---: | ---: |",
              f"| {CALLER_ROW} | {encoded:.2f} | {checked:.2f} | {ratio:.2f}x |"]
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

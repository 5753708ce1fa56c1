"""Benchmark scenarios about processes, run inside a :mod:`stress.child` interpreter.

* ``fork`` — the tracker is built (and warmed up) in this process, which then forks
  ``workers`` children; each tracks ``events / workers`` ``StructuredEvent`` s on one
  thread and **exits normally** (``SystemExit`` → interpreter exit → ``atexit``: the
  library flushes, if it does). A child still alive at the deadline is killed and counted.
  Reported: delivered / unique / tracked, end-to-end events/s (first fork → the last event
  at the sink), CPU of every process (children through ``os.wait4``), ``track()`` latency
  pooled from the children, and how long each child took from its last ``track()`` to
  its exit.
* ``exit`` — a script: build a tracker, track ``events`` events, end normally. It writes
  its result (the time of the last ``track()``) *before* the interpreter exits; the
  parent (:mod:`stress.bench_runs`) times the exit and asks the sink what arrived.
* ``floor`` — the per-event cost a sender cannot go below, measured in this process with
  timeit-style loops (best of 7, thread CPU time): event object construction, the
  payload build (``track()`` with a no-op admission: the event's record, its JSON
  included), what is left of the JSON for the sender (the cheaper of ``json.dumps`` of the
  payload dict and the request body made of the records, per event), and one keep-alive
  ``http.client`` POST of a batch to the sink divided by its event count.
"""

from __future__ import annotations

import array
import gc
import http.client
import json
import os
import shutil
import signal
import struct
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from functools import partial
from typing import Any

from stress.child import (
    event_factory,
    make_tracker,
    percentiles,
    records_of,
    sink_call,
    warm_up,
)

Spec = dict[str, Any]
_HEAD = struct.Struct("<qqq")  # events tracked, monotonic ns of the last track(), CPU ns


# -- waiting for processes ----------------------------------------------------------------------
def reap(pids: list[int], deadline_ns: int) -> dict[int, dict[str, Any]]:
    """Wait for every pid (``os.wait4`` on one thread each, no polling) until
    *deadline_ns* (monotonic); kill the rest with SIGKILL. Per pid: ``status``, ``cpu_s``
    (user + system from its rusage), ``exit_ns``, ``killed``."""
    out: dict[int, dict[str, Any]] = {}

    def wait(pid: int) -> None:
        _pid, status, usage = os.wait4(pid, 0)
        out[pid] = {"status": status, "cpu_s": usage.ru_utime + usage.ru_stime,
                    "exit_ns": time.monotonic_ns(), "killed": False}

    waiters = {pid: threading.Thread(target=wait, args=(pid,), daemon=True) for pid in pids}
    for waiter in waiters.values():
        waiter.start()
    for waiter in waiters.values():
        waiter.join(max(0.0, (deadline_ns - time.monotonic_ns()) / 1e9))
    for pid, waiter in waiters.items():
        killed = waiter.is_alive()
        if killed:
            os.kill(pid, signal.SIGKILL)
            waiter.join(10.0)  # a killed process is reaped at once
        if pid not in out:  # the waiter raised (its error is on stderr) or still waits
            raise RuntimeError(f"process {pid} could not be reaped")
        out[pid]["killed"] = killed
    return out


# -- fork ---------------------------------------------------------------------------------------
def forked_worker(tracker: Any, make: Callable[[], Any], events: int, path: str) -> None:
    """The body of one forked child: track, write the samples, leave *normally*."""
    code = 0
    try:
        samples = array.array("q")
        append = samples.append
        clock = time.perf_counter_ns
        track = tracker.track
        cpu0 = time.process_time_ns()
        for _ in range(events):
            event = make()
            t = clock()
            track(event)
            append(clock() - t)
        last_ns = time.monotonic_ns()
        with open(path, "wb") as fh:
            fh.write(_HEAD.pack(events, last_ns, time.process_time_ns() - cpu0))
            fh.write(samples.tobytes())
    except BaseException:
        code = 1
        with open(path + ".err", "w") as fh:
            fh.write(traceback.format_exc())
    # a normal exit from the forked child: SystemExit unwinds to the interpreter, which
    # runs atexit handlers and joins non-daemon threads (nothing in our frames catches it)
    raise SystemExit(code)


def read_worker(path: str) -> tuple[int, int, int, array.array[int]] | None:
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    tracked, last_ns, cpu_ns = _HEAD.unpack_from(data)
    samples = array.array("q")
    samples.frombytes(data[_HEAD.size:])
    return tracked, last_ns, cpu_ns, samples


def run_fork(spec: Spec) -> dict[str, Any]:
    port = spec["port"]
    spec = {**spec, "workload": "se"}
    tracker, _emitter = make_tracker(spec, port)
    make = event_factory(spec["lib"], "se")
    # warm-up in this (the parent) process: what a pre-fork server's master holds when it
    # forks its workers
    warm_up(spec, tracker, make, port)
    workers = int(spec["workers"])
    per_child = int(spec["events"]) // workers
    total = per_child * workers
    sink_call(port, "POST", f"/_reset?expect={total}")
    folder = tempfile.mkdtemp(prefix="bench-fork-")
    paths = [os.path.join(folder, f"w{i}.bin") for i in range(workers)]
    sys.stdout.flush()
    sys.stderr.flush()
    gc.collect()
    cpu0 = time.process_time()
    t0 = time.monotonic_ns()
    pids: list[int] = []
    for path in paths:
        pid = os.fork()
        if pid == 0:
            forked_worker(tracker, make, per_child, path)  # raises SystemExit
        pids.append(pid)
    reaped = reap(pids, t0 + int(float(spec["child_timeout"]) * 1e9))
    t_gone = time.monotonic_ns()
    sink = sink_call(port, "GET", f"/_wait?timeout={spec.get('settle', 1)}&expect={total}")
    parent_cpu = time.process_time() - cpu0
    tracked = 0
    samples: list[int] = []
    drains: list[float] = []
    errors: list[str] = []
    for pid, path in zip(pids, paths, strict=True):
        got = read_worker(path)
        if got is not None:
            tracked += got[0]
            samples.extend(got[3])
            if not reaped[pid]["killed"]:
                drains.append((reaped[pid]["exit_ns"] - got[1]) / 1e9)
        if os.path.exists(path + ".err"):
            with open(path + ".err") as fh:
                errors.append(fh.read()[-800:])
    shutil.rmtree(folder, ignore_errors=True)
    delivered = int(sink["events"])
    end_ns = sink.get("done_ns") or sink.get("last_ns")
    e2e = (end_ns - t0) / 1e9 if end_ns and delivered else None
    child_cpu = sum(r["cpu_s"] for r in reaped.values())
    cpu = parent_cpu + child_cpu
    killed = sum(1 for r in reaped.values() if r["killed"])
    statuses = sorted({os.waitstatus_to_exitcode(r["status"]) for r in reaped.values()})
    return {
        "events": total, "tracked": tracked, "workers": workers,
        "delivered": delivered, "unique": sink["unique"], "requests": sink["requests"],
        "complete": bool(sink.get("done_ns")) and sink["unique"] == total == delivered,
        "all_accounted": bool(sink.get("done_ns")) and sink["unique"] == delivered == total,
        "dropped": 0,
        "killed": killed, "exit_codes": statuses,
        "latency_us": percentiles(samples),
        "e2e_s": e2e, "wall_s": (t_gone - t0) / 1e9,
        "events_per_s": delivered / e2e if e2e else None,
        "cpu_s": cpu, "child_cpu_s": child_cpu, "parent_cpu_s": parent_cpu,
        "cpu_us_per_event": cpu / delivered * 1e6 if delivered else None,
        "exit_drain_s": sorted(drains),
        "sink_cpu_s": sink["sink_cpu_s"], "errors": errors[:2],
    }


# -- a script that ends ------------------------------------------------------------------------
def run_exit(spec: Spec) -> dict[str, Any]:
    """Track ``events`` events and return: the caller (:func:`stress.child.main`) writes
    the result and lets the interpreter exit normally."""
    start_ns = time.monotonic_ns()
    spec = {**spec, "workload": "se"}
    tracker, _emitter = make_tracker(spec, spec["port"])
    make = event_factory(spec["lib"], "se")
    events = int(spec["events"])
    samples = array.array("q")
    clock = time.perf_counter_ns
    for _ in range(events):
        event = make()
        t = clock()
        tracker.track(event)
        samples.append(clock() - t)
    last_ns = time.monotonic_ns()
    result: dict[str, Any] = {"events": events, "start_ns": start_ns, "last_track_ns": last_ns,
                              "track_s": (last_ns - start_ns) / 1e9,
                              "latency_us": percentiles(samples)}
    if spec["lib"].startswith("ours"):
        stats = tracker.stats()
        result["dropped_before_exit"] = sum(stats.dropped.values())
        result["queued_at_exit"] = int(stats.queued)
    return result


# -- the floor ----------------------------------------------------------------------------------
def best_cpu_us(fn: Callable[[], Any], number: int, repeat: int = 7) -> float:
    """timeit-style: the best of *repeat* loops of *number* calls, in thread CPU µs/call."""
    best = float("inf")
    for _ in range(repeat):
        start = time.thread_time_ns()
        for _ in range(number):
            fn()
        best = min(best, (time.thread_time_ns() - start) / number)
    return best / 1000.0


def run_floor(spec: Spec) -> dict[str, Any]:
    """Per workload: construction, build, dumps and amortised-HTTP CPU per event."""
    from snowplow_threaded import Snowplow, TrackerConfiguration
    from snowplow_threaded.record import payload_of, post_body

    port = spec["port"]
    endpoint = f"http://127.0.0.1:{port}"
    number = int(spec.get("number", 2000))
    # json.dumps with the transport's compact separators, its encoder built once (as
    # json.dumps does for default arguments): the cheapest stdlib encoding of the dict
    encode = json.JSONEncoder(separators=(",", ":")).encode
    out: dict[str, Any] = {"workloads": {}}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json; charset=utf-8"}
    path = "/com.snowplowanalytics.snowplow/tp2"
    for workload in spec["workloads"]:
        tracker = Snowplow.create_tracker(
            f"floor-{workload}", endpoint, app_id="bench",
            tracker_config=TrackerConfiguration(encode_base64=workload != "sd_raw"))
        make = event_factory("ours", workload)
        event = make()
        construct = best_cpu_us(make, number)
        # track() with the admission replaced by a no-op: the payload build alone (its
        # record: the event's JSON, made on the caller's thread)
        tracker._single_admit = lambda record, pid: None
        build = best_cpu_us(partial(tracker.track, event), number)
        stm = str(time.time_ns() // 1_000_000)
        record = {**payload_of(records_of(tracker, [event])[0]), "stm": stm}
        batch = max(1, int(spec["batches"].get(workload) or 500))
        records = records_of(tracker, [event] * batch)
        # what is left of the JSON for the sender: the cheaper of the stdlib's encoding of
        # the payload dict (a record that is not JSON yet) and the body made of the
        # records, per event
        dumps = min(best_cpu_us(partial(encode, record), number),
                    best_cpu_us(partial(post_body, records, stm), max(10, number // batch))
                    / batch)
        body = post_body(records, stm)

        def post(body: bytes = body) -> None:
            conn.request("POST", path, body=body, headers=headers)
            conn.getresponse().read()

        posts = max(10, min(200, 20_000 // batch))
        post()  # connect, warm
        per_post = best_cpu_us(post, posts)
        out["workloads"][workload] = {
            "construct_us": construct, "build_us": build, "dumps_us": dumps,
            "batch": batch, "post_us": per_post, "http_us": per_post / batch,
            "body_bytes": len(body),
            "floor_us": construct + build + dumps + per_post / batch,
        }
        tracker.close(0)
    conn.close()
    return out


MODES: dict[str, Callable[[Spec], dict[str, Any]]] = {
    "fork": run_fork, "exit": run_exit, "floor": run_floor,
}

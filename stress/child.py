"""One benchmark measurement, run in a fresh child process by :mod:`stress.bench`.

``python -m stress.child '<json spec>'`` imports exactly one library (ours or the
reference), runs the spec'd scenario, writes a JSON result to ``spec["result_file"]`` and
leaves with ``os._exit`` (no exit-time flush, no waiting for daemon threads).

Scenarios (``spec["mode"]``):

* ``run`` — ``threads`` threads track ``events`` events at once against the sink; per-call
  ``track()`` latency, end-to-end delivery time (first track → the sink has the N-th
  event), process CPU, tracking-thread CPU.
* ``down`` — the collector is unreachable (a closed port): track ``events`` events, report
  RSS growth and how many events the emitter holds.
* ``profile`` — ``run`` for our library under yappi (every thread), stats dumped.
* ``fork``, ``exit``, ``floor`` — see :mod:`stress.bench_procs` (forked workers, a script
  that ends normally, the per-event cost floor). ``exit`` is the one mode that leaves
  normally (interpreter exit, ``atexit``), after writing its result.
"""

from __future__ import annotations

import gc
import http.client
import importlib
import json
import logging
import os
import resource
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from stress.crew import Crew

Spec = dict[str, Any]
EventFactory = Callable[[], Any]

WARMUP_EVENTS = 200
PAGE = os.sysconf("SC_PAGE_SIZE")


# -- helpers -------------------------------------------------------------------------------------
def rss_bytes() -> int:
    """Current resident set size of this process."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def sink_call(port: int, method: str, path: str, timeout: float = 120.0) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path)
        body = conn.getresponse().read()
    finally:
        conn.close()
    result: dict[str, Any] = json.loads(body)
    return result


#: quantiles of the latency "ladder" kept for the chart (1.0 = max)
LADDER = (0.5, 0.75, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999, 0.9995, 0.9999, 1.0)


def percentiles(samples: Iterable[int]) -> dict[str, Any]:
    """Nearest-rank p50/p99/p99.9/max (and mean) of nanosecond samples, in µs, and the
    ``ladder``: ``[q, µs]`` at each of :data:`LADDER`."""
    data = sorted(samples)
    if not data:
        return {}
    n = len(data)

    def rank(q: float) -> float:
        return data[min(n - 1, max(0, int(q * n + 0.999999) - 1))] / 1000.0

    return {"p50": rank(0.50), "p99": rank(0.99), "p999": rank(0.999),
            "max": data[-1] / 1000.0, "mean": sum(data) / n / 1000.0, "n": n,
            "ladder": [[q, rank(q)] for q in LADDER]}


def quiet_reference(level: int) -> None:
    """The reference calls ``logging.basicConfig()`` on import and sets its emitters'
    logger to INFO (a line per request): raise both of its loggers to *level*."""
    for name in ("snowplow_tracker", "snowplow_tracker.emitters"):
        logging.getLogger(name).setLevel(level)


# -- building the trackers and events -----------------------------------------------------------
def library(lib: str) -> Any:
    """The library under test, imported on demand (a child imports only one of them)."""
    ours = lib.startswith("ours")
    return importlib.import_module("snowplow_threaded" if ours else "snowplow_tracker")


def event_factory(lib: str, workload: str) -> EventFactory:
    """A function returning a *new* event of *workload* each call (the reference mutates
    tracked events, so none is reused)."""
    mod = library(lib)
    SelfDescribing, SelfDescribingJson, StructuredEvent = (
        mod.SelfDescribing, mod.SelfDescribingJson, mod.StructuredEvent)
    if workload == "se":
        def make_se() -> Any:
            return StructuredEvent(category="shop", action="add-to-basket", label="sku-1234",
                                   property_="size:M", value=2)
        return make_se

    def make_sd() -> Any:
        return SelfDescribing(
            SelfDescribingJson("iglu:com.acme/checkout/jsonschema/1-0-0",
                               {"total": 42.5, "currency": "EUR", "items": 3,
                                "coupon": None, "basket_id": "b-0001-2222"}),
            context=[
                SelfDescribingJson("iglu:com.acme/user/jsonschema/1-0-0",
                                   {"tier": "gold", "id": 123456, "beta": True}),
                SelfDescribingJson("iglu:com.acme/page/jsonschema/1-0-0",
                                   {"path": "/checkout", "lang": "en-GB"}),
            ],
        )
    return make_sd


def records_of(tracker: Any, events: Iterable[Any]) -> list[Any]:
    """What ``tracker.track()`` (ours, one emitter) would buffer for *events* (records:
    see ``snowplow_threaded.record``; dicts before it): the same call with the admission
    replaced by a list append. The tracker is left as it was."""
    records: list[Any] = []
    # (the attribute's name before 63d2958, for stress.ab runs of older revisions)
    name = "_single_admit" if hasattr(tracker, "_single_admit") else "_only"
    saved = getattr(tracker, name)
    setattr(tracker, name, lambda record, pid: records.append(record))
    try:
        for event in events:
            tracker.track(event)
    finally:
        setattr(tracker, name, saved)
    return records


def make_tracker(spec: Spec, port: int) -> tuple[Any, Any]:
    """(tracker, emitter) for the spec'd library. Silences the reference's logging."""
    lib = spec["lib"]
    b64 = spec["workload"] != "sd_raw"
    endpoint = f"http://127.0.0.1:{port}"
    if lib in ("ours", "ours_nodrop"):  # its defaults; or room for every event (stress.ab)
        ours = library("ours")
        config = None
        if lib == "ours_nodrop":
            try:
                config = ours.EmitterConfiguration(buffer_capacity=spec["capacity"],
                                                   buffer_max_bytes=spec["capacity"] * 4096)
            except TypeError:  # a revision before buffer_max_bytes (stress.ab)
                config = ours.EmitterConfiguration(buffer_capacity=spec["capacity"])
        tracker = ours.Snowplow.create_tracker(
            "bench", endpoint, app_id="bench", emitter_config=config,
            tracker_config=ours.TrackerConfiguration(encode_base64=b64))
        return tracker, tracker.emitters[0]
    import requests
    ref = library(lib)
    # The reference calls logging.basicConfig() on import and logs INFO per request; at
    # WARNING its per-request logging is off. With the sink down it logs a WARNING per
    # failed request and an ERROR per dropped event, so that mode raises it to CRITICAL.
    quiet_reference(logging.CRITICAL if spec["mode"] == "down" else logging.WARNING)
    if lib == "ref_async":
        emitter = ref.AsyncEmitter("127.0.0.1", protocol="http", port=port,
                                   session=requests.Session())
        tracker = ref.Tracker("bench", emitters=emitter, app_id="bench", encode_base64=b64)
        return tracker, emitter
    tracker = ref.Snowplow.create_tracker(
        "bench", endpoint, app_id="bench",
        tracker_config=ref.TrackerConfiguration(encode_base64=b64))
    return tracker, tracker.emitters[0]


def warm_up(spec: Spec, tracker: Any, make: EventFactory, port: int) -> None:
    """Imports, sender threads running, a kept-alive connection; then a clean sink."""
    sink_call(port, "POST", f"/_reset?expect={WARMUP_EVENTS}")
    for _ in range(WARMUP_EVENTS):
        tracker.track(make())
    blocking_flush(spec, tracker)
    sink_call(port, "GET", "/_wait?timeout=10")


def blocking_flush(spec: Spec, tracker: Any) -> None:
    if spec["lib"].startswith("ours"):
        tracker.flush(timeout=30)
    else:
        tracker.flush()  # reference: sync_flush() of each emitter


# -- scenarios ------------------------------------------------------------------------------------
def run_load(spec: Spec) -> dict[str, Any]:
    port = spec["port"]
    tracker, _emitter = make_tracker(spec, port)
    make = event_factory(spec["lib"], spec["workload"])

    warm_up(spec, tracker, make, port)

    threads = int(spec["threads"])
    per_thread = int(spec["events"]) // threads
    total = per_thread * threads
    sink_call(port, "POST", f"/_reset?expect={total}")
    gc.collect()

    latencies: list[list[int]] = [[] for _ in range(threads)]
    thread_cpu: list[float] = [0.0] * threads
    track = tracker.track

    def body(index: int) -> None:
        samples = latencies[index]
        append = samples.append
        clock = time.perf_counter_ns
        cpu0 = time.thread_time()
        for _ in range(per_thread):
            event = make()
            t = clock()
            track(event)
            append(clock() - t)
        thread_cpu[index] = time.thread_time() - cpu0

    # a tracking thread that raises fails the run at once, with its error (see Crew)
    crew = Crew(body, threads, name="bench-track", timeout=float(spec.get("timeout", 120)))
    crew.start()
    cpu_start = time.process_time()
    t0 = time.monotonic_ns()
    crew.go()
    crew.join()
    t_tracked = time.monotonic_ns()
    tracker.flush(is_async=True)  # both: send the tail now (ours would within 1 s anyway)
    dropped = 0
    if spec["lib"].startswith("ours"):  # a full buffer drops events (the reference never drops)
        dropped = sum(tracker.stats().dropped.values())
    sink = sink_call(port, "GET",
                     f"/_wait?timeout={spec.get('timeout', 120)}&expect={total - dropped}")
    cpu_end = time.process_time()
    t_wait = time.monotonic_ns()
    all_lat = [x for samples in latencies for x in samples]
    done_ns = sink.get("done_ns")
    e2e = (done_ns - t0) / 1e9 if done_ns else None
    delivered = int(sink["events"])
    cpu = cpu_end - cpu_start
    result: dict[str, Any] = {
        "events": total,
        "delivered": delivered,
        "dropped": dropped,
        "unique": sink["unique"],
        "requests": sink["requests"],
        "complete": bool(done_ns) and sink["unique"] == total,
        "all_accounted": bool(done_ns) and sink["unique"] == delivered == total - dropped,
        "latency_us": percentiles(all_lat),
        "track_wall_s": (t_tracked - t0) / 1e9,
        "e2e_s": e2e,
        "events_per_s": (delivered / e2e) if e2e else None,
        "cpu_s": cpu,
        "wait_wall_s": (t_wait - t0) / 1e9,
        "cpu_us_per_event": cpu / max(delivered, 1) * 1e6,
        "tracking_cpu_us_per_event": sum(thread_cpu) / max(total, 1) * 1e6,
        "other_cpu_us_per_event": (cpu - sum(thread_cpu)) / max(delivered, 1) * 1e6,
        "sink_cpu_s": sink["sink_cpu_s"],
        "peak_rss_mb": peak_rss_bytes() / 2**20,
    }
    if spec["lib"].startswith("ours"):
        result["stats"] = repr(tracker.stats())
    if spec["mode"] == "profile":
        tracker.close(5)  # let the worker threads leave so their profiles are complete
    return result


def run_down(spec: Spec) -> dict[str, Any]:
    """Track ``events`` events with the collector unreachable: memory must stay bounded."""
    tracker, emitter = make_tracker(spec, spec["port"])
    make = event_factory(spec["lib"], spec["workload"])
    events = int(spec["events"])
    budget = float(spec.get("time_budget", 120.0))
    gc.collect()
    rss0 = rss_bytes()
    peak0 = peak_rss_bytes()
    start = time.monotonic()
    tracked = 0
    lat: list[int] = []
    clock = time.perf_counter_ns
    for i in range(events):
        event = make()
        t = clock()
        tracker.track(event)
        lat.append(clock() - t)
        tracked += 1
        if (i & 1023) == 0 and time.monotonic() - start > budget:
            break
    elapsed = time.monotonic() - start
    time.sleep(0.5)
    del lat[:]  # the samples are not part of the tracker's memory
    gc.collect()
    rss1 = rss_bytes()
    peak1 = peak_rss_bytes()
    buffer: dict[str, Any] = {}
    if spec["lib"] == "ours":
        stats = tracker.stats()
        held = int(stats.queued)
        dropped = dict(stats.dropped)
        store = emitter.event_store
        buffer = {"buffer_capacity": store.buffer_capacity, "buffer_max_bytes": store.max_bytes,
                  "held_bytes": store.size_bytes()}
    else:
        queue = list(emitter.queue.queue)
        held = emitter.event_store.size() + sum(len(batch) for batch in queue)
        dropped = {}
    growth = rss1 - rss0
    return {
        "events": events,
        "tracked": tracked,
        "track_s": elapsed,
        "completed": tracked == events,
        "held": held,
        "dropped": dropped,
        "rss_growth_mb": growth / 2**20,
        "peak_rss_growth_mb": max(peak1 - rss0, growth) / 2**20,
        "peak_rss_before_mb": peak0 / 2**20,
        "bytes_per_held_event": (growth / held) if held else None,
        **buffer,
    }


def run_profile(spec: Spec) -> dict[str, Any]:
    """``run`` under one profiler for the whole process: yappi, which keeps a profile per
    thread. (Not cProfile: since 3.12 one ``cProfile.Profile`` at a time may be enabled,
    and it sees every thread's calls on one call stack.) The tracking threads' profiles
    go to ``<profile_prefix>.caller.prof``, those of the threads the library starts to
    ``.worker.prof`` (pstats files); the main thread's are left out."""
    import yappi  # the [bench] and [test] extras install it

    # "wall": blocked time counts. "cpu": per-thread CPU time (blocked time does not count)
    yappi.set_clock_type(spec.get("profile_clock", "wall"))
    yappi.set_context_name_callback(lambda: threading.current_thread().name)
    yappi.start(builtins=True)
    try:
        result = run_load(spec)
    finally:
        yappi.stop()
    main_name = threading.main_thread().name
    groups: dict[str, list[Any]] = {}
    profiled = []
    for thread in yappi.get_thread_stats():
        if thread.name == main_name:
            continue
        profiled.append(thread.name)
        group = "caller" if thread.name.startswith("bench-track-") else "worker"
        groups.setdefault(group, []).append(thread.id)
    for group, ids in groups.items():
        stats = yappi.get_func_stats(filter_callback=lambda stat, ids=ids: stat.ctx_id in ids)
        if not stats.empty():
            stats.save(f"{spec['profile_prefix']}.{group}.prof", type="pstat")
    yappi.clear_stats()
    result["profiled_threads"] = profiled
    return result


def main(argv: list[str]) -> None:
    spec: Spec = json.loads(argv[0])
    result: dict[str, Any]
    mode = spec["mode"]
    try:
        if spec.get("variant"):  # stress.ab: a hand-written part swapped for a library
            from stress import variants

            variants.apply(spec["variant"])
        if mode == "run":
            result = run_load(spec)
        elif mode == "down":
            result = run_down(spec)
        elif mode == "profile":
            result = run_profile(spec)
        elif mode == "when_full":
            from stress import when_full

            result = when_full.run_when_full(spec)
        elif mode == "steady":
            from stress import degraded

            result = degraded.run_steady(spec)
        elif mode == "sender":
            from stress import sender_gil

            result = sender_gil.run_sender(spec)
        else:
            from stress import bench_procs

            result = bench_procs.MODES[mode](spec)
        result["ok"] = True
        result["library_file"] = getattr(sys.modules.get("snowplow_threaded"), "__file__", None)
    except Exception as exc:  # reported to the parent, which prints it
        import traceback
        result = {"ok": False, "error": repr(exc), "traceback": traceback.format_exc()}
    with open(spec["result_file"], "w") as fh:
        json.dump(result, fh)
    sys.stdout.flush()
    sys.stderr.flush()
    if mode == "exit":
        return  # a script that ends normally: the interpreter exits, atexit runs
    os._exit(0)  # daemon threads, a dead collector: do not wait for anything


if __name__ == "__main__":
    main(sys.argv[1:])

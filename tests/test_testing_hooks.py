"""``snowplow_threaded.testing.deterministic_events``: event ids as a sequence and a fixed
clock for users' tests, seen on the wire (embedded collector), across threads and a fork,
and gone when the block ends."""

from __future__ import annotations

import os
import threading
import time
import uuid
import warnings

import pytest

from snowplow_threaded import Emitter, PageView, StructuredEvent, Tracker
from snowplow_threaded.collector import Collector
from snowplow_threaded.testing import DEFAULT_START_MS, Deterministic, deterministic_events

SEQUENCE = {Deterministic.event_id(n) for n in range(1, 10_000)}


def test_ids_and_times_on_the_wire(micro_collector: Collector) -> None:
    tracker = Tracker("t", Emitter(micro_collector.endpoint, batch_size=3))
    try:
        with deterministic_events(start_ms=1_600_000_000_000) as fixed:
            eids = [tracker.track(StructuredEvent("c", "a")), tracker.track(PageView("u"))]
            fixed.advance(250)
            eids.append(tracker.complete_payload(PageView("v")).nv_pairs["eid"])
            eids.append(tracker.track(StructuredEvent("c", "b")))
            fixed.now_ms = 1_600_000_005_000
            assert tracker.flush(timeout=10)  # the batch of 3 went out at now_ms
            assert micro_collector.wait_for(3, timeout=5)
    finally:
        tracker.close(5)
    assert eids == [Deterministic.event_id(n) for n in (1, 2, 3, 4)]
    assert eids[0] == "00000000-0000-4000-8000-000000000001"
    assert uuid.UUID(eids[0]).version == 4
    sent = [event.parameters for event in micro_collector.good()]
    assert [(p["eid"], p["dtm"], p["stm"]) for p in sent] == [
        (eids[0], "1600000000000", "1600000005000"),
        (eids[1], "1600000000000", "1600000005000"),
        (eids[3], "1600000000250", "1600000005000")]
    assert micro_collector.bad() == []


def test_the_real_ids_and_clock_are_back_after_the_block() -> None:
    tracker = Tracker("t", Emitter("collector.example.com"))
    try:
        with deterministic_events():
            inside = tracker.complete_payload(PageView("u")).nv_pairs
        after = [tracker.complete_payload(PageView("u")).nv_pairs for _ in range(200)]
    finally:
        tracker.close(0)
    assert (inside["eid"], inside["dtm"]) == (Deterministic.event_id(1), str(DEFAULT_START_MS))
    assert not {p["eid"] for p in after} & SEQUENCE
    assert len({p["eid"] for p in after}) == 200
    assert abs(int(after[-1]["dtm"]) - time.time() * 1000) < 60_000


def test_ecommerce_items_get_the_fixed_time() -> None:
    seen: list[dict[str, str]] = []

    class Recorder:
        def input(self, payload: dict[str, str]) -> None:
            seen.append(payload)

    with deterministic_events(start_ms=1_650_000_000_000), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        Tracker("t", Recorder()).track_ecommerce_transaction(
            "order", 10.0, items=[{"sku": "s", "price": 10.0, "quantity": 1}])
    assert [(p["e"], p["dtm"], p.get("ttm")) for p in seen] == [
        ("tr", "1650000000000", None), ("ti", "1650000000000", "1650000000000")]


def test_threads_get_each_id_once(micro_collector: Collector) -> None:
    tracker = Tracker("t", Emitter(micro_collector.endpoint, batch_size=50))
    ids: list[str] = []
    start = threading.Barrier(4)

    def track() -> None:
        start.wait()
        ids.extend(tracker.track(StructuredEvent("c", "a")) for _ in range(250))

    with deterministic_events():
        threads = [threading.Thread(target=track) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert tracker.close(10)
    assert sorted(ids) == sorted(Deterministic.event_id(n) for n in range(1, 1001))
    assert sorted(e.parameters["eid"] for e in micro_collector.good()) == sorted(ids)


def test_a_child_forked_in_the_block_makes_random_ids() -> None:
    tracker = Tracker("t", Emitter("collector.example.com"))
    read_end, write_end = os.pipe()
    with deterministic_events() as fixed:
        first = tracker.complete_payload(PageView("u")).nv_pairs
        pid = os.fork()
        if pid == 0:  # the child: report its ids and time, then leave without cleanup
            try:
                payloads = [tracker.complete_payload(PageView("u")).nv_pairs for _ in range(3)]
                os.write(write_end, " ".join([p["eid"] for p in payloads]
                                             + [payloads[0]["dtm"]]).encode())
            finally:
                os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end) as pipe:
            *child_ids, child_dtm = pipe.read().split()
        os.waitpid(pid, 0)
        second = tracker.complete_payload(PageView("u")).nv_pairs
    tracker.close(0)
    assert (first["eid"], second["eid"]) == (fixed.event_id(1), fixed.event_id(2))
    assert len(child_ids) == 3 and not set(child_ids) & SEQUENCE
    assert child_dtm == str(DEFAULT_START_MS)


def test_blocks_do_not_nest_and_arguments_are_checked() -> None:
    with (deterministic_events(), pytest.raises(RuntimeError, match="already active"),
          deterministic_events()):
        pass  # pragma: no cover
    with deterministic_events(first_id=41) as fixed:  # usable again after the error
        assert Tracker("t", Emitter("collector.example.com")).complete_payload(
            PageView("u")).nv_pairs["eid"] == fixed.event_id(41)
    for bad in ({"start_ms": -1}, {"start_ms": 1.5}, {"first_id": -1}, {"first_id": 16**12}):
        with pytest.raises(ValueError), deterministic_events(**bad):  # type: ignore[arg-type]
            pass  # pragma: no cover

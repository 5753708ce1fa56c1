"""Losing nothing (issues 15 and 21), end to end against the embedded collector: bursts
delivered whole at default settings, drops never silent (log, on_drop, flush()), a refused
event costs only itself (POST split, GET alone, 413), when_full="block", and a collector
that refuses one request in three does not throttle a steady stream."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from snowplow_threaded import Emitter, StructuredEvent, Tracker
from snowplow_threaded import accounts as drops
from snowplow_threaded.collector import Collector
from snowplow_threaded.collector.http_types import Limits
from snowplow_threaded.typing import PayloadDictList
from stress.crew import Crew
from tests.helpers import accepted_events, eventually

Make = Callable[..., tuple[Tracker, Emitter]]


@pytest.fixture
def make(collector: Collector) -> Iterator[Make]:
    """(tracker, emitter) pairs on the test collector, at default settings unless given;
    every one is closed after the test."""
    made: list[Emitter] = []

    def build(endpoint: str | None = None, **settings: Any) -> tuple[Tracker, Emitter]:
        emitter = Emitter(endpoint or collector.endpoint, **settings)
        made.append(emitter)
        return Tracker("ns", emitters=emitter), emitter

    yield build
    for emitter in made:
        emitter.close(timeout=0.05)


@pytest.fixture(autouse=True)
def first_drop_not_yet_logged(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test is a fresh process as far as the first-drop warning goes."""
    monkeypatch.setattr(drops, "_warned_pid", [0])


def track(tracker: Tracker, n: int, start: int = 0) -> list[str]:
    return [tracker.track(StructuredEvent("c", "a", label=str(start + i))) for i in range(n)]


def delivered_eids(collector: Collector) -> list[str]:
    return [e["eid"] for e in accepted_events(collector)]


def assert_each_once(collector: Collector, sent: list[str]) -> None:
    got = Counter(delivered_eids(collector))
    assert set(got) == set(sent), (len(got), len(sent))
    assert got.most_common(1)[0][1] == 1  # nothing twice


# -- bursts at default settings --------------------------------------------------------------


def test_a_burst_of_30000_events_is_delivered_whole(collector: Collector, make: Make) -> None:
    """Issue 15, point 1: a script tracks 30 000 events in a loop; before, 15 000 to
    18 500 arrived and flush() said True."""
    tracker, emitter = make()
    sent = track(tracker, 30_000)
    assert emitter.flush(timeout=120) is True
    assert emitter.stats().dropped == {}
    assert collector.wait_for(30_000, timeout=30)
    assert_each_once(collector, sent)


def test_a_burst_through_a_collector_refusing_every_third_request(collector: Collector,
                                                                 make: Make) -> None:
    """Issue 15, point 1: 20 000 events against a collector that answers 503 to every
    third request; before, 11 000 arrived."""
    collector.faults(503, every=3)
    tracker, emitter = make()
    sent = track(tracker, 20_000)
    assert emitter.flush(timeout=120) is True
    stats = emitter.stats()
    assert stats.dropped == {} and stats.failed == 0 and stats.retried > 0
    assert_each_once(collector, sent)


# -- never silent ----------------------------------------------------------------------------


def test_a_full_buffer_warns_once_calls_on_drop_and_flush_says_false(
        collector: Collector, make: Make, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 15, point 2: buffer_capacity=100 and 5 000 events in a loop; before, no log
    line at any level and flush() True."""
    dropped: list[tuple[str, int]] = []
    tracker, emitter = make(buffer_capacity=100,
                            on_drop=lambda reason, n: dropped.append((reason, n)))
    with caplog.at_level(logging.DEBUG, logger="snowplow_threaded"):
        sent = track(tracker, 5_000)
        assert emitter.flush(timeout=30) is False
    stats = emitter.stats()
    lost = stats.dropped["buffer_full"]
    assert lost > 0 and stats.sent + lost == 5_000 and stats.dropped == {"buffer_full": lost}
    assert len(delivered_eids(collector)) == stats.sent
    assert set(delivered_eids(collector)) <= set(sent)
    # one WARNING for the first drop, naming the count, the reason and what to change
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    text = warnings[0].getMessage()
    assert "dropped 1 event(s) (buffer_full)" in text
    assert "buffer_capacity=100" in text and "buffer_max_bytes" in text
    # on_drop saw every one, counted by reason, in a few calls (not one per event)
    assert {reason for reason, _ in dropped} == {"buffer_full"}
    assert sum(n for _, n in dropped) == lost and len(dropped) < lost
    # nothing was lost since that flush(): the next one says so
    track(tracker, 10, start=5_000)
    assert emitter.flush(timeout=30) is True


def test_flush_says_false_only_for_what_was_lost_since_the_previous_call(
        collector: Collector, make: Make) -> None:
    """A poison event tracked between two flush() calls makes the second False, not the
    third; an event refused while the collector answered makes close() False too."""
    tracker, emitter = make(batch_size=1)
    assert emitter.flush(timeout=10) is True
    track(tracker, 3)
    assert emitter.flush(timeout=10) is True
    collector.faults(400, carrying={"se_la": "poison"})
    tracker.track(StructuredEvent("c", "a", label="poison"))
    track(tracker, 3, start=3)
    assert emitter.flush(timeout=10) is False
    track(tracker, 3, start=6)
    assert emitter.flush(timeout=10) is True
    tracker.track(StructuredEvent("c", "a", label="poison"))
    assert emitter.close(timeout=10) is False
    assert emitter.stats().failed == 2


# -- a refusal costs only what it must -------------------------------------------------------


@pytest.mark.parametrize("position", [0, 7, 49])
@pytest.mark.parametrize(("method", "batch_size"),
                         [("post", 1), ("post", 10), ("post", None), ("get", None)])
def test_a_poison_event_fails_alone(collector: Collector, make: Make,
                                    caplog: pytest.LogCaptureFixture, method: str,
                                    batch_size: int | None, position: int) -> None:
    """Issue 15, point 3: a collector that answers 400 to any request carrying one event.
    Before, POST delivered 0 of the 49 others (the backlog coalesced into one POST); GET
    never sent the events after the poison and reported them failed."""
    failures: list[tuple[int, PayloadDictList]] = []
    settings: dict[str, Any] = {} if batch_size is None else {"batch_size": batch_size}
    tracker, emitter = make(method=method, **settings,
                            on_failure=lambda n, p: failures.append((n, p)))
    collector.faults(400, carrying={"se_la": str(position)})
    with caplog.at_level(logging.WARNING, logger="snowplow_threaded"):
        sent = track(tracker, 50)
        assert emitter.flush(timeout=30) is False
    poison = sent[position]
    assert_each_once(collector, [eid for eid in sent if eid != poison])
    stats = emitter.stats()
    assert stats.failed == 1 and stats.sent == 49 and stats.retried == 0
    assert [[p["eid"] for p in payloads] for _, payloads in failures] == [[poison]]
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1 and "HTTP 400" in refusals[0].getMessage()
    if method == "get":
        assert stats.requests == 50 and stats.split_requests == 0
    else:  # bounded: about log2 of the request per refused event (two halves per level)
        assert 0 < stats.split_requests <= 2 * math.ceil(math.log2(50)) or batch_size == 1
    alone = [r for r in collector.requests() if r.status == 400 and len(r.events) == 1]
    assert len(alone) == 1  # sent alone once, never again


def test_an_oversized_post_answered_413_is_split_until_it_fits() -> None:
    """A collector (or proxy) with a 20 KB body limit answers 413 before reading the body:
    the request is split until its parts fit, and an event larger than the limit fails
    alone. Before, 413 was retried as it was, for ever."""
    with Collector(limits=Limits(max_body_bytes=20_000)) as collector:
        emitter = Emitter(collector.endpoint, batch_size=500, flush_interval=30)
        tracker = Tracker("ns", emitters=emitter)
        try:
            sent = track(tracker, 400)  # about 100 KB in one request
            huge = tracker.track(StructuredEvent("c", "a", label="x" * 30_000))
            sent += track(tracker, 99, start=400)  # the 500th event makes the batch due
            assert emitter.flush(timeout=60) is False
            stats = emitter.stats()
            assert stats.failed == 1 and stats.sent == 499 and stats.split_requests > 0
            assert collector.wait_for(499, timeout=10)
            got = delivered_eids(collector)
            assert sorted(got) == sorted(sent) and huge not in got
        finally:
            emitter.close(timeout=1)


# -- when_full="block" -----------------------------------------------------------------------


def test_block_waits_for_room_and_delivers_everything(collector: Collector,
                                                      make: Make) -> None:
    """With a healthy collector and a buffer of 50, two threads tracking flat out wait for
    room instead of dropping; no call waits past its block_timeout."""
    tracker, emitter = make(buffer_capacity=50, when_full="block", block_timeout=5.0)
    sent: list[list[str]] = [[], []]
    longest = [0.0, 0.0]

    def producer(k: int) -> None:
        for i in range(1500):
            started = time.monotonic()
            sent[k].append(tracker.track(StructuredEvent("c", "a", label=f"{k}-{i}")))
            longest[k] = max(longest[k], time.monotonic() - started)

    Crew(producer, 2, timeout=120).run()
    assert emitter.flush(timeout=60) is True
    assert emitter.stats().dropped == {}
    assert_each_once(collector, sent[0] + sent[1])
    assert max(longest) < 5.0 + 2.0  # never past block_timeout (and a scheduling margin)


def test_block_gives_up_at_its_timeout(collector: Collector, make: Make) -> None:
    """A collector that takes 3 s to answer: once the buffer of 10 is full, a track()
    waits block_timeout (0.3 s) for room that does not come, then drops and counts."""
    collector.faults(delay=3.0, times=1)
    tracker, emitter = make(buffer_capacity=10, batch_size=10, when_full="block",
                            block_timeout=0.3, request_timeout=10)
    track(tracker, 10)  # the batch in flight, held by the collector: the buffer is full
    assert eventually(lambda: emitter.stats().in_flight == 10, timeout=10)
    started = time.monotonic()
    tracker.track(StructuredEvent("c", "a", label="late"))
    waited = time.monotonic() - started
    assert 0.3 <= waited < 3.0  # waited its timeout, not for the answer
    assert emitter.stats().dropped == {"buffer_full": 1}


def test_block_never_waits_while_the_collector_is_down(collector: Collector,
                                                       make: Make) -> None:
    """With the collector down, once the sender is failing a full buffer drops at once
    even with a 30 s block_timeout: an outage can never stall a web request."""
    collector.down()
    failed = threading.Event()
    attempts: list[int] = []

    def on_failure(count: int, payloads: PayloadDictList) -> None:
        attempts.append(len(payloads))
        if len(attempts) >= 2:  # the second failure in a row: the sender backs off
            failed.set()

    tracker, emitter = make(buffer_capacity=10, batch_size=10, when_full="block",
                            block_timeout=30.0, on_failure=on_failure)
    track(tracker, 10)
    assert failed.wait(timeout=30)
    started = time.monotonic()
    track(tracker, 100, start=10)
    assert time.monotonic() - started < 10.0  # not 100 x 30 s: none waited its timeout
    assert emitter.stats().dropped["buffer_full"] >= 90


# -- a degraded collector does not throttle delivery (issue 21) -----------------------------


def test_a_steady_3000_events_per_second_through_a_collector_refusing_every_third_request(
        collector: Collector, make: Make) -> None:
    """Four threads track a steady 3 000 events/s for 8 s; every third request is answered
    503. Each isolated refusal used to pause the sender for 0.25-0.5 s with at most 500
    events per request: about 2 500 events/s went out, the backlog grew by some 700 a
    second, and the buffer overflowed. Here the buffer holds 1 s of events (3 000) so
    that a short run shows it (the backlog now stays at a few dozen events); the 90 s run
    at default settings is in stress/results/degraded.md."""
    collector.faults(503, every=3)
    tracker, emitter = make(buffer_capacity=3_000)
    per_thread, rate, seconds = 750, 3000, 8
    sent: list[list[str]] = [[] for _ in range(4)]
    start = time.monotonic() + 0.2

    def producer(k: int) -> None:
        for i in range(per_thread * seconds):
            due = start + (i * 4 + k) / rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            sent[k].append(tracker.track(StructuredEvent("c", "a", label=f"{k}-{i}")))

    Crew(producer, 4, timeout=seconds + 60).run()
    assert emitter.flush(timeout=60) is True
    stats = emitter.stats()
    assert stats.dropped == {} and stats.failed == 0 and stats.retried > 0
    assert_each_once(collector, [eid for part in sent for eid in part])


# -- bounds and counts -----------------------------------------------------------------------


def test_the_buffer_is_bounded_in_bytes_and_every_refusal_is_counted(
        collector: Collector, make: Make) -> None:
    """Collector down, 8 threads track 40 000 events into a 200 KB buffer: it never holds
    more than that, and every event is either held or counted as dropped, exactly, though
    refusals are counted without a lock."""
    collector.down()
    tracker, emitter = make(buffer_max_bytes=200_000)
    store = emitter.event_store
    peak = [0]

    def producer(k: int) -> None:
        for i in range(5000):
            tracker.track(StructuredEvent("c", "a", label=f"{k}-{i}"))
            if i % 500 == 0:
                peak[0] = max(peak[0], store.size_bytes())  # type: ignore[union-attr]

    Crew(producer, 8, timeout=120).run()
    stats = emitter.stats()
    assert stats.tracked + stats.dropped["buffer_full"] == 40_000
    # racing producers may overshoot the bound by one record each (see InMemoryEventStore.put)
    assert max(peak[0], store.size_bytes()) <= 200_000 + 8 * 400  # type: ignore[union-attr]
    assert stats.queued == stats.tracked - stats.sent

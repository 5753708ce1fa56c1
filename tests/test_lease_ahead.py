"""A worker with a backlog leases and encodes its next batch while the collector answers the
current one (``Worker._lease_ahead``): observable from ``on_success``, which runs after the
answer was read: the next batch is already in flight then, and its ``stm`` (set when its
body is encoded) is earlier. Order, exactly-once delivery, backoff and close() must be
exactly as without it. Everything runs against the embedded collector."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from snowplow_threaded import Emitter, StructuredEvent, Tracker
from snowplow_threaded.collector import Collector
from snowplow_threaded.typing import PayloadDictList
from tests.helpers import accepted_events

ANSWER = 0.4  # seconds the collector takes to answer, where it matters
Event = dict[str, Any]


@pytest.fixture
def made() -> Iterator[list[Emitter]]:
    emitters: list[Emitter] = []
    yield emitters
    for emitter in emitters:
        emitter.close(timeout=1.0)


def build(collector: Collector, made: list[Emitter], **kwargs: Any) -> tuple[Tracker, Emitter]:
    settings = {"batch_size": 10, "max_events_per_request": 20, "flush_interval": 0.2,
                "max_retry_delay_seconds": 0.2, "request_timeout": 5, **kwargs}
    emitter = Emitter(collector.endpoint, **settings)
    made.append(emitter)
    return Tracker("ahead", emitters=emitter, encode_base64=False), emitter


def labels(events: list[Event]) -> list[int]:
    return [int(e["se_la"]) for e in events]


def backlog(tracker: Tracker, collector: Collector, n: int) -> None:
    """One batch goes out; while the collector holds it, *n* more events wait."""
    for i in range(10):
        tracker.track(StructuredEvent("c", "a", label=str(i)))
    assert collector.wait_until(lambda: collector.in_flight == 1, timeout=5)
    for i in range(10, 10 + n):
        tracker.track(StructuredEvent("c", "a", label=str(i)))


def test_next_batch_is_leased_and_encoded_while_the_collector_answers(
        collector: Collector, made: list[Emitter]) -> None:
    collector.faults(delay=ANSWER)
    seen: list[tuple[int, float]] = []  # (events in flight, wall ms) at each on_success
    emitters: list[Emitter] = []

    def on_success(payloads: PayloadDictList) -> None:
        seen.append((emitters[0].stats().in_flight, time.time() * 1000))

    tracker, emitter = build(collector, made, on_success=on_success)
    emitters.append(emitter)
    backlog(tracker, collector, 80)
    assert emitter.flush(timeout=20) is True
    reqs = collector.requests()
    assert labels(accepted_events(collector)) == list(range(90))  # once each, in order
    assert [len(r.events) for r in reqs] == [10, 20, 20, 20, 20]
    # when the answers to requests 2-4 had been read, the batch of the next request was
    # leased already (20 + 20 in flight; a worker that leases after each answer: 20) ...
    assert [in_flight for in_flight, _ in seen[1:4]] == [40, 40, 40]
    # ... and encoded: its stm is no later than that moment
    for (_, answered_ms), later in zip(seen[1:4], reqs[2:5], strict=True):
        assert int(later.events[0]["stm"]) <= answered_ms
    assert all(len({e["stm"] for e in r.events}) == 1 for r in reqs)


def test_a_failure_sends_the_batch_leased_ahead_back_behind_the_retry(
        collector: Collector, made: list[Emitter]) -> None:
    """Request 2 is answered 503 while request 3 is leased ahead: 3 must wait for the
    backoff and go after the retry of 2; nothing is lost, duplicated or reordered."""
    collector.faults(delay=ANSWER, times=1)
    collector.faults(503, delay=ANSWER, after=1, times=1)
    collector.faults(delay=0.05, after=2)
    failures: list[int] = []
    tracker, emitter = build(collector, made,
                             on_failure=lambda ok, payloads: failures.append(len(payloads)))
    backlog(tracker, collector, 80)
    assert emitter.flush(timeout=20) is True
    reqs = collector.requests()
    assert reqs[1].status == 503
    assert labels(reqs[2].events) == labels(reqs[1].events)  # the retry comes first
    assert labels(accepted_events(collector)) == list(range(90))
    accepted_up_to = 0
    for req in reqs:  # every request starts where the accepted ones end (or re-sends)
        got = labels(req.events)
        assert got == list(range(accepted_up_to, accepted_up_to + len(got)))
        if req.accepted:
            accepted_up_to += len(got)
    stats = emitter.stats()
    assert (stats.sent, stats.retried, stats.failed, stats.queued) == (90, 20, 0, 0)
    assert failures == [20]


def test_close_gives_up_a_batch_leased_ahead_once(collector: Collector,
                                                  made: list[Emitter]) -> None:
    """The collector fails while a batch waits ahead and close() runs out of time: every
    event is either delivered or given up (reported to on_failure once, counted once)."""
    collector.faults(delay=ANSWER, times=1)
    collector.faults(500, delay=ANSWER, after=1, times=1)
    collector.faults(500, after=2)
    given_up: PayloadDictList = []
    tracker, emitter = build(collector, made, max_retry_delay_seconds=5,
                             on_failure=lambda ok, payloads: given_up.extend(payloads))
    backlog(tracker, collector, 80)
    assert collector.wait_until(lambda: len(collector.requests()) >= 2, timeout=5)
    assert emitter.close(timeout=0.5) is False
    delivered = [e["eid"] for e in accepted_events(collector)]
    reported = [p["eid"] for p in given_up]
    stats = emitter.stats()
    assert len(delivered) == 10 and stats.sent == 10
    # the failed request's events were reported when it failed, and again when given up
    # at close; every other event exactly once, when given up
    last_report = reported[-80:]
    assert len(set(last_report)) == 80 and not set(last_report) & set(delivered)
    assert stats.dropped == {"shutdown_timeout": 80} and stats.queued == 0


@pytest.mark.parametrize("how", ["get", "session"])
def test_get_and_user_sessions_do_not_lease_ahead(collector: Collector, made: list[Emitter],
                                                  how: str) -> None:
    """Only a POST through our own connection leases ahead: with GET, or a user's session,
    nothing but the batch just answered is in flight when its on_success runs."""
    collector.faults(delay=0.1)
    seen: list[tuple[int, int]] = []  # (events answered, events in flight then)
    emitters: list[Emitter] = []

    def on_success(payloads: PayloadDictList) -> None:
        seen.append((len(payloads), emitters[0].stats().in_flight))

    extra: dict[str, Any] = ({"method": "get", "max_events_per_request": 5} if how == "get"
                             else {"session": requests.Session()})
    tracker, emitter = build(collector, made, on_success=on_success, **extra)
    emitters.append(emitter)
    backlog(tracker, collector, 40)
    assert emitter.flush(timeout=20) is True
    assert labels(accepted_events(collector)) == list(range(50))
    assert len(seen) >= 3 and all(in_flight == answered for answered, in_flight in seen)

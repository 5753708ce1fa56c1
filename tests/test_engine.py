"""The emitter engine (Dispatcher + worker + transport) end to end against the embedded
collector and its fault rules: batching, coalescing, retry, ordering, flush/close,
callbacks, stats, buffer, legacy stores, GET, thread safety and thread lifecycle."""

from __future__ import annotations

import collections
import itertools
import logging
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from snowplow_threaded import Emitter, StructuredEvent, Tracker
from snowplow_threaded.collector import Collector
from snowplow_threaded.record import record_of
from snowplow_threaded.typing import PayloadDict, PayloadDictList
from stress.crew import Crew
from tests.helpers import TP2, accepted_events, gaps, sent_events

Make = Callable[..., tuple[Tracker, Emitter]]

FAST = {"flush_interval": 0.2, "max_retry_delay_seconds": 0.5, "request_timeout": 0.5}


@pytest.fixture
def make(collector: Collector) -> Iterator[Make]:
    """Build (tracker, emitter) pairs on the test collector; every one is closed after."""
    made: list[Emitter] = []

    def build(**kwargs: Any) -> tuple[Tracker, Emitter]:
        settings = {**FAST, **kwargs}
        emitter = Emitter(collector.endpoint, **settings)
        made.append(emitter)
        return Tracker("ns", emitters=emitter, encode_base64=False), emitter

    yield build
    for emitter in made:  # clean-up only: what is still undelivered is given up at once
        emitter.close(timeout=0.05)


def track(tracker: Tracker, n: int, start: int = 0) -> list[str]:
    return [tracker.track(StructuredEvent("c", "a", label=str(start + i))) for i in range(n)]


Event = dict[str, Any]


def labels(events: list[Event]) -> list[int]:
    return [int(e["se_la"]) for e in events]


def eids(events: list[Event]) -> list[str]:
    return [e["eid"] for e in events]


def snowplow_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("snowplow-") and t.is_alive()]


# -- healthy path ------------------------------------------------------------------------------


def test_batches_of_batch_size(collector: Collector, make: Make) -> None:
    tracker, emitter = make(batch_size=5, flush_interval=30)
    sent: list[str] = []
    for round_ in range(4):
        sent += track(tracker, 4, start=5 * round_)
        assert len(collector.requests()) == round_
        sent += track(tracker, 1, start=5 * round_ + 4)  # the 5th: a batch is due
        assert collector.wait_for(5 * (round_ + 1), timeout=5)
    assert [len(r.events) for r in collector.requests()] == [5, 5, 5, 5]
    assert eids(accepted_events(collector)) == sent
    assert all(r.path == TP2 and r.method == "POST" for r in collector.requests())
    assert emitter.flush(timeout=5) is True


@pytest.mark.parametrize("method", ["post", "get"])
def test_text_that_is_not_valid_unicode_is_sent_and_the_worker_lives_on(
        collector: Collector, make: Make, method: str, caplog: pytest.LogCaptureFixture) -> None:
    """A lone surrogate (a str UTF-8 cannot encode) used to kill the worker at encoding,
    leaving every later event unsent; it is now sent as U+FFFD."""
    tracker, emitter = make(method=method, batch_size=2)
    with caplog.at_level(logging.WARNING, logger="snowplow_threaded"):
        bad = tracker.track(StructuredEvent("c", "a", label="x\ud800"))
        good = track(tracker, 1, start=7)
        assert emitter.flush(timeout=10) is True
        later = track(tracker, 2, start=8)
        assert emitter.flush(timeout=10) is True
    events = accepted_events(collector)
    assert eids(events) == [bad, *good, *later]
    assert events[0]["se_la"] == "x\ufffd"
    stats = emitter.stats()
    assert stats.sent == 4 and stats.failed == 0 and stats.retried == 0
    assert "lone surrogate" in caplog.text and "worker died" not in caplog.text


def test_low_traffic_sends_after_flush_interval(collector: Collector, make: Make) -> None:
    tracker, _ = make(batch_size=10, flush_interval=0.2)
    start = time.monotonic()
    sent = track(tracker, 3)
    assert collector.wait_for(3, timeout=5)  # no flush() call
    assert time.monotonic() - start >= 0.15
    assert eids(accepted_events(collector)) == sent
    assert len(collector.requests()) == 1


def test_backlog_is_coalesced_up_to_max_events_per_request(collector: Collector,
                                                          make: Make) -> None:
    collector.faults(delay=0.5, times=1)
    tracker, emitter = make(batch_size=5, max_events_per_request=40, request_timeout=5)
    sent = track(tracker, 5)
    assert collector.wait_until(lambda: collector.in_flight == 1, timeout=5)
    sent += track(tracker, 200, start=5)
    assert emitter.flush(timeout=10) is True
    sizes = [len(r.events) for r in collector.requests()]
    assert sizes[0] == 5
    assert max(sizes[1:]) == 40 and all(s <= 40 for s in sizes)
    assert eids(accepted_events(collector)) == sent


def test_backlog_is_coalesced_up_to_max_request_bytes(collector: Collector, make: Make) -> None:
    collector.faults(delay=0.5, times=1)
    tracker, emitter = make(batch_size=2, max_request_bytes=3000, request_timeout=5)
    sent = track(tracker, 2)
    assert collector.wait_until(lambda: collector.in_flight == 1, timeout=5)
    sent += track(tracker, 100, start=2)
    assert emitter.flush(timeout=10) is True
    reqs = collector.requests()
    assert all(len(r.body) <= 3000 for r in reqs)
    assert max(len(r.events) for r in reqs) > 2  # coalesced beyond batch_size
    assert eids(accepted_events(collector)) == sent


def test_byte_limit_triggers_a_send_and_caps_the_body(collector: Collector, make: Make) -> None:
    tracker, _ = make(batch_size=1000, byte_limit=2000, flush_interval=30)
    sent = track(tracker, 40)  # ~300 bytes each: far over byte_limit, far under batch_size
    assert collector.wait_for(30, timeout=3), "byte_limit did not trigger a send"
    assert all(len(r.body) <= 2000 for r in collector.requests())
    got = eids(accepted_events(collector))
    assert got == sent[: len(got)]


# -- track() never blocks ------------------------------------------------------------------


def test_track_never_blocks_on_a_slow_collector(collector: Collector, make: Make) -> None:
    collector.faults(delay=60)  # answered by no one: a track() that waited would hang
    tracker, emitter = make(batch_size=10, request_timeout=30)
    for i in range(1000):
        tracker.track(StructuredEvent("c", "a", label=str(i)))
    assert collector.requests() == []  # every track() returned before a request completed
    assert collector.wait_until(lambda: collector.in_flight >= 1, timeout=5)
    assert emitter.stats().tracked == 1000


def test_track_never_blocks_nor_raises_with_the_collector_down(collector: Collector,
                                                              make: Make) -> None:
    collector.down()
    tracker, emitter = make(batch_size=10, max_retry_delay_seconds=5)
    start = time.monotonic()
    track(tracker, 1000)
    assert time.monotonic() - start < 5  # sanity bound only
    stats = emitter.stats()
    assert stats.tracked == 1000 and stats.sent == 0


# -- retry -----------------------------------------------------------------------------------


def test_500_is_retried_then_delivered_once(collector: Collector, make: Make) -> None:
    collector.faults(500, times=1)
    tracker, emitter = make(batch_size=3)
    sent = track(tracker, 3)
    assert emitter.flush(timeout=10) is True
    assert [r.status for r in collector.requests()] == [500, 200]
    assert eids(accepted_events(collector)) == sent
    stats = emitter.stats()
    assert stats.sent == 3 and stats.retried == 3 and stats.failed == 0
    assert stats.requests == 2 and stats.last_error == "HTTP 500"


def test_every_third_503_everything_delivered_once(collector: Collector, make: Make) -> None:
    collector.faults(503, every=3)
    tracker, emitter = make(batch_size=5, max_events_per_request=5,
                            max_retry_delay_seconds=0.2)
    sent = track(tracker, 100)
    assert emitter.flush(timeout=20) is True
    got = eids(accepted_events(collector))
    assert sorted(got) == sorted(sent) and len(set(got)) == len(got)
    stats = emitter.stats()
    assert stats.retried > 0 and stats.sent == 100 and stats.failed == 0
    assert stats.dropped == {}


def test_retry_after_is_honoured(collector: Collector, make: Make) -> None:
    collector.faults(429, retry_after=1, times=1)
    tracker, emitter = make(batch_size=1, max_retry_delay_seconds=5)
    track(tracker, 1)
    assert emitter.flush(timeout=10) is True
    first, second = collector.requests()
    assert first.status == 429 and second.status == 200
    assert first.answered_at is not None
    assert second.received_at - first.answered_at >= 0.9


def test_retry_after_is_capped_by_max_retry_delay(collector: Collector, make: Make) -> None:
    collector.faults(429, retry_after=30, times=1)
    tracker, _emitter = make(batch_size=1, max_retry_delay_seconds=0.4)
    track(tracker, 1)
    assert collector.wait_for(1, timeout=5)
    first, second = collector.requests()
    assert first.answered_at is not None
    assert 0.3 <= second.received_at - first.answered_at < 3


@pytest.mark.parametrize("status", [400, 401, 403, 410, 413, 422])
def test_non_retryable_status_fails_for_good(collector: Collector, make: Make,
                                            status: int) -> None:
    """Every request refused: the batch is split down to single events (2 more requests
    for 2 events), each fails for good, and each is reported once."""
    failures: list[tuple[int, PayloadDictList]] = []
    collector.faults(status)
    tracker, emitter = make(batch_size=2, on_failure=lambda n, p: failures.append((n, p)))
    sent = track(tracker, 2)
    assert emitter.flush(timeout=5) is False  # settled: failed for good
    assert [len(r.events) for r in collector.requests()] == [2, 1, 1]
    assert len(failures) == 1
    count, payloads = failures[0]
    assert count == 0 and [p["eid"] for p in payloads] == sent
    stats = emitter.stats()
    assert stats.failed == 2 and stats.retried == 0 and stats.sent == 0
    assert stats.split_requests == 2 and stats.requests == 3
    assert stats.queued == 0


def test_custom_retry_codes(collector: Collector, make: Make) -> None:
    collector.faults(400, times=1)
    tracker, emitter = make(batch_size=1, custom_retry_codes={400: True})
    sent = track(tracker, 1)
    assert emitter.flush(timeout=5) is True
    assert [r.status for r in collector.requests()] == [400, 200]
    assert eids(accepted_events(collector)) == sent


def test_custom_retry_codes_can_disable_a_retry(collector: Collector, make: Make) -> None:
    collector.faults(503, times=1)
    tracker, emitter = make(batch_size=1, custom_retry_codes={503: False})
    track(tracker, 1)
    assert emitter.flush(timeout=5) is False  # failed for good
    assert [r.status for r in collector.requests()] == [503]
    assert emitter.stats().failed == 1


def test_connection_refused_then_up_delivers_once(collector: Collector, make: Make) -> None:
    collector.down()
    tracker, emitter = make(batch_size=5, max_retry_delay_seconds=0.3)
    sent = track(tracker, 10)
    assert emitter.flush(timeout=0.5) is False
    stats = emitter.stats()
    assert stats.retried > 0 and stats.last_error and "ConnectionError" in stats.last_error
    collector.up()
    assert emitter.flush(timeout=10) is True
    got = eids(accepted_events(collector))
    assert got == sent


def test_slow_response_beyond_request_timeout_is_retried(collector: Collector,
                                                        make: Make) -> None:
    collector.faults(delay=1.0, times=1)
    tracker, emitter = make(batch_size=2, request_timeout=0.3)
    sent = track(tracker, 2)
    assert emitter.flush(timeout=10) is True
    stats = emitter.stats()
    assert stats.retried == 2 and stats.sent == 2
    assert stats.last_error is not None and "Timeout" in stats.last_error
    # the collector kept the timed-out request too: a duplicate is expected, never more
    assert collector.wait_for_requests(2, timeout=3)
    counts = collections.Counter(eids(sent_events(collector)))
    assert set(counts) == set(sent) and max(counts.values()) <= 2


def test_reset_before_response_is_retried_without_duplicates(collector: Collector,
                                                            make: Make) -> None:
    collector.faults(reset="before", times=1)
    tracker, emitter = make(batch_size=3)
    sent = track(tracker, 3)
    assert emitter.flush(timeout=10) is True
    assert [r.outcome for r in collector.requests()] == ["reset", "answered"]
    assert eids(accepted_events(collector)) == sent  # accepted exactly once
    assert emitter.stats().retried == 3


def test_reset_mid_response_is_retried_and_the_duplicate_is_reported(
    collector: Collector, make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    collector.faults(reset="mid-response", times=1)
    tracker, emitter = make(batch_size=3)
    sent = track(tracker, 3)
    with caplog.at_level(logging.WARNING, logger="snowplow_threaded"):
        assert emitter.flush(timeout=10) is True
    assert [r.outcome for r in collector.requests()] == ["reset-mid-response", "answered"]
    counts = collections.Counter(eids(sent_events(collector)))
    assert set(counts) == set(sent) and max(counts.values()) <= 2
    stats = emitter.stats()
    assert stats.retried == 3 and stats.sent == 3 and stats.last_error
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("will retry" in m and "duplicate" in m for m in warnings), warnings


def test_redirect_is_retried_not_followed(collector: Collector, make: Make) -> None:
    elsewhere = "/elsewhere" + TP2
    collector.faults(301, headers={"Location": collector.endpoint + elsewhere}, times=1)
    tracker, emitter = make(batch_size=2)
    sent = track(tracker, 2)
    assert emitter.flush(timeout=10) is True
    assert [r.path for r in collector.requests()] == [TP2, TP2]
    assert eids(accepted_events(collector)) == sent


@pytest.mark.parametrize("retry_after", [None, 0])
def test_no_hot_loop_while_the_collector_fails(collector: Collector, make: Make,
                                              retry_after: float | None) -> None:
    """Failures are retried (four attempts come); an isolated failure at once, then each
    after a backoff of at least half its 0.5 s base, even when the collector says
    ``Retry-After: 0`` (which is honoured from the first failure, floored)."""
    collector.faults(503, retry_after=retry_after)
    tracker, emitter = make(batch_size=1, thread_count=1, max_retry_delay_seconds=1.0)
    track(tracker, 5)
    assert collector.wait_for_requests(4, timeout=10)
    waits = gaps(collector)[1:] if retry_after is None else gaps(collector)
    assert waits and all(gap >= 0.25 for gap in waits), gaps(collector)
    assert emitter.stats().sent == 0


# -- ordering ----------------------------------------------------------------------------------


def test_failed_batch_goes_back_ahead_of_newer_events(collector: Collector, make: Make) -> None:
    collector.faults(503, every=2)
    tracker, emitter = make(batch_size=5, thread_count=1, max_retry_delay_seconds=0.05)
    n = 60
    for i in range(n):
        tracker.track(StructuredEvent("c", "a", label=str(i)))
        if i % 7 == 0:
            time.sleep(0.01)  # let batches of several sizes form
    assert emitter.flush(timeout=20) is True
    # accepted order is exactly the tracked order: nothing lost, duplicated or reordered
    assert labels(accepted_events(collector)) == list(range(n))
    reqs = collector.requests()
    for failed, nxt in itertools.pairwise(reqs):
        if failed.status == 503:
            # the retry is the next request, and it starts with the same events
            assert labels(nxt.events)[: len(failed.events)] == labels(failed.events)
    # per round, the values sent are non-decreasing and start where the previous round ended
    # (or re-send exactly the failed batch)
    accepted_up_to = 0
    for req in reqs:
        got = labels(req.events)
        assert got == list(range(accepted_up_to, accepted_up_to + len(got)))
        if req.accepted:
            accepted_up_to += len(got)


# -- flush -----------------------------------------------------------------------------------


def test_flush_true_when_delivered(collector: Collector, make: Make) -> None:
    tracker, emitter = make(batch_size=100, flush_interval=30)
    sent = track(tracker, 7)
    assert emitter.flush(timeout=5) is True
    assert eids(accepted_events(collector)) == sent
    assert emitter.flush(timeout=5) is True  # nothing pending: at once


def test_flush_false_at_the_timeout_when_down(collector: Collector, make: Make) -> None:
    collector.down()
    tracker, emitter = make(batch_size=100)
    track(tracker, 3)
    start = time.monotonic()
    assert emitter.flush(timeout=0.7) is False
    elapsed = time.monotonic() - start
    assert 0.6 <= elapsed < 3


def test_flush_works_through_the_backoff(collector: Collector, make: Make) -> None:
    collector.faults(503, times=2)
    tracker, emitter = make(batch_size=100, max_retry_delay_seconds=1.0)
    sent = track(tracker, 5)
    assert emitter.flush(timeout=10) is True
    assert eids(accepted_events(collector)) == sent
    assert [r.status for r in collector.requests()] == [503, 503, 200]


def test_flush_during_a_long_backoff_makes_an_early_attempt(collector: Collector,
                                                           make: Make) -> None:
    collector.faults(503, retry_after=60, times=1)
    tracker, emitter = make(batch_size=1, max_retry_delay_seconds=60)
    sent = track(tracker, 1)
    assert collector.wait_for_requests(1, timeout=5)
    assert emitter.flush(timeout=5) is True
    assert eids(accepted_events(collector)) == sent


def test_flush_from_on_success_does_not_deadlock(collector: Collector, make: Make) -> None:
    results: list[bool] = []
    holder: list[Emitter] = []

    def on_success(payloads: PayloadDictList) -> None:
        results.append(holder[0].flush(timeout=5))

    tracker, emitter = make(batch_size=2, max_events_per_request=2, on_success=on_success)
    holder.append(emitter)
    track(tracker, 4)
    start = time.monotonic()
    assert emitter.flush(timeout=10) is True
    assert time.monotonic() - start < 4
    assert len(results) == 2


def release_delayed_answers(collector: Collector) -> None:
    """Abort the answers a delay fault holds (the sender sees a reset and retries)."""
    collector.faults.clear()
    collector.down()
    collector.up()


def test_async_tracker_flush_returns_at_once(collector: Collector, make: Make) -> None:
    collector.faults(delay=60, times=1)  # nobody is answered until released below
    tracker, _emitter = make(batch_size=100, flush_interval=30, request_timeout=30,
                             flush_timeout=2)
    track(tracker, 3)
    # a flush that waited would return False (at flush_timeout: nothing is answered)
    assert tracker.flush(is_async=True) is True
    assert collector.requests() == []  # it returned without waiting for an answer
    assert collector.wait_until(lambda: collector.in_flight == 1, timeout=5)  # ... and sent
    release_delayed_answers(collector)
    assert collector.wait_for(3, timeout=10)


def test_a_number_as_tracker_flush_first_argument_warns(collector: Collector,
                                                        make: Make) -> None:
    """``tracker.flush(5)`` is ``is_async=5`` (the reference's signature): an async flush,
    which this library's own tests once mistook for a 5 s wait. It still triggers the send
    and returns, and warns with the call to write instead."""
    collector.faults(delay=60, times=1)  # nobody is answered until released below
    tracker, _emitter = make(batch_size=100, flush_interval=30, request_timeout=30,
                             flush_timeout=2)
    track(tracker, 2)
    with pytest.warns(UserWarning, match=r"pass timeout=5 "):
        assert tracker.flush(5) is True  # type: ignore[arg-type]
    assert collector.requests() == []  # it returned without waiting for an answer
    assert collector.wait_until(lambda: collector.in_flight == 1, timeout=5)
    release_delayed_answers(collector)
    assert collector.wait_for(2, timeout=10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tracker.flush(True)
        tracker.flush(timeout=5)


def test_flush_before_any_event(collector: Collector, make: Make) -> None:
    _, emitter = make()
    assert emitter.flush(timeout=1) is True
    assert snowplow_threads() == [] or all(
        not t.name.startswith(f"snowplow-{emitter.endpoint}") for t in snowplow_threads()
    )


# -- close -----------------------------------------------------------------------------------


def test_close_drains_and_is_idempotent(collector: Collector, make: Make) -> None:
    tracker, emitter = make(batch_size=100, flush_interval=30)
    sent = track(tracker, 25)
    assert emitter.close(timeout=5) is True
    assert eids(accepted_events(collector)) == sent
    assert emitter.closed
    assert emitter.close(timeout=5) is True
    assert tracker.close() is True
    assert not [t for t in snowplow_threads() if emitter.endpoint in t.name]


def test_close_with_the_collector_down(collector: Collector, make: Make) -> None:
    """Every event ends up reported to on_failure: the failed attempts, and at close the
    events given up (including any never attempted during the backoff)."""
    collector.down()
    reported: set[str] = set()
    failed = threading.Event()

    def on_failure(count: int, payloads: PayloadDictList) -> None:
        reported.update(x["eid"] for x in payloads)
        failed.set()

    tracker, emitter = make(batch_size=5, on_failure=on_failure)
    sent = track(tracker, 5)
    assert failed.wait(10)  # the 1st attempt failed
    sent += track(tracker, 7, start=5)  # during the backoff: never attempted
    start = time.monotonic()
    assert emitter.close(timeout=0.8) is False
    assert time.monotonic() - start < 0.8 + 1.0
    assert reported == set(sent)
    stats = emitter.stats()
    assert stats.dropped.get("shutdown_timeout") == 12
    assert stats.queued == 0 and stats.sent == 0
    assert emitter.close(timeout=1) is False  # still says: events were lost
    assert not [t for t in snowplow_threads() if emitter.endpoint in t.name]


def test_events_after_close_are_dropped(collector: Collector, make: Make) -> None:
    tracker, emitter = make()
    track(tracker, 2)
    assert emitter.close(timeout=5) is True
    track(tracker, 3, start=2)
    stats = emitter.stats()
    assert stats.dropped == {"closed": 3} and stats.tracked == 2 and stats.sent == 2
    assert labels(accepted_events(collector)) == [0, 1]
    assert emitter.flush(timeout=1) is False  # three were dropped since close()
    assert emitter.flush(timeout=1) is True  # none since that flush()


def test_close_stops_every_worker_thread(collector: Collector, make: Make) -> None:
    tracker, emitter = make(thread_count=4, batch_size=1)
    track(tracker, 40)
    assert len([t for t in snowplow_threads() if emitter.endpoint in t.name]) == 4
    assert emitter.close(timeout=5) is True
    assert not [t for t in snowplow_threads() if emitter.endpoint in t.name]


# -- callbacks ---------------------------------------------------------------------------------


def test_on_success_gets_the_payloads_with_stm(collector: Collector, make: Make) -> None:
    got: list[PayloadDictList] = []
    tracker, emitter = make(batch_size=3, max_events_per_request=3, on_success=got.append)
    sent = track(tracker, 6)
    assert emitter.flush(timeout=5) is True
    assert [len(batch) for batch in got] == [3, 3]
    flat = [p for batch in got for p in batch]
    assert [p["eid"] for p in flat] == sent
    assert all(p["stm"].isdigit() and len(p["stm"]) == 13 for p in flat)
    assert [e["stm"] for e in accepted_events(collector)] == [p["stm"] for p in flat]


def test_on_failure_partial_success_count(collector: Collector, make: Make) -> None:
    """One event of a batch refused: on_failure gets the count of the others, delivered in
    the same attempt, and the refused one alone."""
    calls: list[tuple[int, list[str]]] = []
    tracker, emitter = make(
        batch_size=12, flush_interval=30,
        on_failure=lambda n, p: calls.append((n, [x["eid"] for x in p])),
    )
    collector.faults(400, carrying={"se_la": "7"})
    sent = track(tracker, 12)
    assert emitter.flush(timeout=5) is False
    assert calls == [(11, [sent[7]])]
    stats = emitter.stats()
    assert stats.sent == 11 and stats.failed == 1


def test_callback_exceptions_are_logged_and_the_worker_goes_on(
    collector: Collector, make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(*args: object) -> None:
        raise RuntimeError("callback boom")

    collector.faults(500, times=1)
    tracker, emitter = make(batch_size=2, on_success=boom, on_failure=boom)
    with caplog.at_level(logging.ERROR, logger="snowplow_threaded"):
        sent = track(tracker, 2)
        assert emitter.flush(timeout=5) is True
        sent += track(tracker, 2, start=2)
        assert emitter.flush(timeout=5) is True
    assert eids(accepted_events(collector)) == sent
    boom_logs = [r for r in caplog.records if r.exc_info and "callback boom" in str(r.exc_info[1])]
    assert len(boom_logs) == 3  # on_failure once, on_success twice
    assert emitter.stats().sent == 4


def test_close_from_a_callback_returns_at_once_and_the_rest_is_delivered(
    collector: Collector, make: Make
) -> None:
    """close() on a worker thread (inside on_success) cannot wait for the batch that is
    calling it: it returns False at once instead of running out its deadline, admission
    stops, and what was tracked before is still delivered."""
    results: list[tuple[bool, float]] = []
    emitter_box: list[Emitter] = []

    def on_success(payloads: PayloadDictList) -> None:
        if not results:
            started = time.monotonic()
            results.append((emitter_box[0].close(timeout=5), time.monotonic() - started))

    collector.faults(delay=0.3, times=1)
    tracker, emitter = make(batch_size=2, on_success=on_success, flush_interval=0.05)
    emitter_box.append(emitter)
    sent = track(tracker, 2)
    assert collector.wait_until(lambda: collector.in_flight == 1, timeout=5)
    sent += track(tracker, 3, start=2)  # buffered before the close
    assert collector.wait_until(lambda: len(results) == 1, timeout=5)
    closed, waited = results[0]
    assert closed is False and waited < 1.0
    assert collector.wait_for(5, timeout=5)
    assert eids(accepted_events(collector)) == sent
    tracker.track(StructuredEvent("c", "late"))
    assert emitter.stats().dropped.get("closed") == 1
    assert emitter.close(timeout=2) is False  # the late event was dropped
    assert emitter.close(timeout=2) is False  # and close() keeps its verdict


# -- stats -----------------------------------------------------------------------------------


def test_stats_in_flight_and_queued(collector: Collector, make: Make) -> None:
    collector.faults(delay=0.6, times=1)
    tracker, emitter = make(batch_size=4, request_timeout=5, flush_interval=30)
    track(tracker, 4)
    assert collector.wait_until(lambda: collector.in_flight == 1, timeout=5)
    track(tracker, 2, start=4)
    stats = emitter.stats()
    assert stats.tracked == 6 and stats.in_flight == 4 and stats.queued == 6
    assert stats.sent == 0 and stats.requests == 0
    assert emitter.flush(timeout=5) is True
    stats = emitter.stats()
    assert stats.sent == 6 and stats.queued == 0 and stats.in_flight == 0
    assert stats.requests == 2
    assert stats.bytes_sent == sum(len(r.body) for r in collector.requests())
    assert stats.last_error is None and stats.failed == 0 and stats.retried == 0
    assert tracker.stats().sent == 6


# -- buffer ----------------------------------------------------------------------------------


def test_capacity_bounds_memory_drop_newest(collector: Collector, make: Make) -> None:
    collector.down()
    tracker, emitter = make(buffer_capacity=1000, max_retry_delay_seconds=5)
    for i in range(100_000):
        emitter.admit_record(record_of({"e": "se", "se_la": str(i), "eid": str(i)}))
    stats = emitter.stats()
    assert stats.dropped == {"buffer_full": 99_000}
    assert stats.tracked == 1000 and stats.queued == 1000
    collector.up()
    assert emitter.flush(timeout=10) is False  # delivered what it held; the rest dropped
    assert labels(accepted_events(collector)) == list(range(1000))
    del tracker


def test_capacity_bounds_memory_drop_oldest(collector: Collector, make: Make) -> None:
    collector.down()
    tracker, emitter = make(buffer_capacity=1000, when_full="drop_oldest",
                            max_retry_delay_seconds=5)
    # let the first batch fail and wait for its retry: those records must be evicted too
    for i in range(10):
        emitter.admit_record(record_of({"e": "se", "se_la": str(i), "eid": str(i)}))
    assert emitter.flush(timeout=0.3) is False
    for i in range(10, 100_000):
        emitter.admit_record(record_of({"e": "se", "se_la": str(i), "eid": str(i)}))
    stats = emitter.stats()
    assert stats.dropped == {"evicted_oldest": 99_000}
    assert stats.queued == 1000
    collector.up()
    assert emitter.flush(timeout=10) is False  # events were evicted since the last flush
    got = sorted(labels(accepted_events(collector)))
    assert len(got) == len(set(got)) == 1000
    # the newest, except that a retry attempt the backoff let start during the loop holds
    # its batch (records in flight are never evicted): those older ones are sent instead
    held = sum(1 for label in got if label < 99_000)
    assert held <= 500  # one request: at most half the buffer with drop_oldest
    assert got[held:] == list(range(99_000 + held, 100_000))
    del tracker


# -- a user store with only the reference's protocol -------------------------------------------


class ListStore:
    """The reference's 4-method EventStore protocol, list-based."""

    def __init__(self) -> None:
        self.items: PayloadDictList = []
        self.lock = threading.Lock()
        self.cleaned = 0

    def add_event(self, payload: PayloadDict) -> bool:
        with self.lock:
            self.items.append(payload)
            return True

    def get_events_batch(self) -> PayloadDictList:
        with self.lock:
            batch, self.items = self.items, []
            return batch

    def cleanup(self, batch: PayloadDictList, need_retry: bool) -> None:
        with self.lock:
            self.cleaned += len(batch)
            if need_retry:
                self.items[:0] = batch

    def size(self) -> int:
        with self.lock:
            return len(self.items)


def test_reference_protocol_store_end_to_end_with_retries(collector: Collector,
                                                         make: Make) -> None:
    store = ListStore()
    collector.faults(503, every=2)
    tracker, emitter = make(batch_size=5, max_events_per_request=5, event_store=store,
                            max_retry_delay_seconds=0.1)
    sent = track(tracker, 30)
    assert emitter.flush(timeout=10) is True
    assert eids(accepted_events(collector)) == sent
    assert store.size() == 0 and store.cleaned == 30
    stats = emitter.stats()
    assert stats.retried > 0 and stats.sent == 30 and stats.queued == 0


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no text for this value")


@pytest.mark.parametrize("method", ["post", "get"])
def test_a_record_that_cannot_be_encoded_is_dropped_and_the_worker_lives_on(
        collector: Collector, make: Make, caplog: pytest.LogCaptureFixture,
        method: str) -> None:
    """A user's store that hands back a value no encoder can write used to end the worker
    (nothing was sent after it); that event alone now fails for good and is reported, and
    the rest of its batch is sent."""
    store = ListStore()
    failures: list[tuple[int, list[PayloadDict]]] = []
    tracker, emitter = make(method=method, batch_size=3, flush_interval=30,
                            event_store=store, on_failure=lambda n, p: failures.append((n, p)))
    with caplog.at_level(logging.ERROR, logger="snowplow_threaded"):
        batch = track(tracker, 2)
        store.items[1]["se_la"] = Unprintable()  # type: ignore[assignment]
        batch += track(tracker, 1, start=2)  # the third event makes the batch due
        assert emitter.flush(timeout=10) is False
        later = track(tracker, 3, start=3)
        assert emitter.flush(timeout=10) is True
    assert eids(accepted_events(collector)) == [batch[0], batch[2], *later]
    assert [(n, [p["eid"] for p in payloads]) for n, payloads in failures] == [(2, [batch[1]])]
    stats = emitter.stats()
    assert stats.failed == 1 and stats.sent == 5 and stats.retried == 0
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "could not be encoded" in errors[0].getMessage()
    assert "worker died" not in caplog.text


class BadFifthStore(ListStore):
    """Stores the fifth event with a value no encoder can write, and hands out nothing
    until ``gate`` is set (so that every event waits when the worker first leases)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def add_event(self, payload: PayloadDict) -> bool:
        if len(self.items) == 4:
            payload = {**payload, "se_la": Unprintable()}  # type: ignore[dict-item]
        return super().add_event(payload)

    def get_events_batch(self) -> PayloadDictList:
        return super().get_events_batch() if self.gate.is_set() else []


def test_an_event_that_cannot_be_encoded_under_a_backlog_is_reported_once(
        collector: Collector, make: Make, caplog: pytest.LogCaptureFixture) -> None:
    """Under a backlog the worker leases its next batch while the collector answers the
    current one; an event that cannot be made a record is set aside when leased, reported
    once, and its batch goes out without it."""
    store = BadFifthStore()
    tracker, emitter = make(batch_size=3, max_events_per_request=3, flush_interval=30,
                            event_store=store)
    with caplog.at_level(logging.DEBUG, logger="snowplow_threaded"):
        sent = track(tracker, 9)
        store.gate.set()
        assert emitter.flush(timeout=10) is False
    assert eids(accepted_events(collector)) == sent[:4] + sent[5:]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "could not be encoded" in errors[0].getMessage()
    assert emitter.stats().failed == 1


# -- GET -------------------------------------------------------------------------------------


def test_get_one_event_per_request(collector: Collector, make: Make) -> None:
    tracker, emitter = make(method="get")
    sent = track(tracker, 5)
    assert emitter.flush(timeout=5) is True
    reqs = collector.requests()
    assert [r.method for r in reqs] == ["GET"] * 5 and all(len(r.events) == 1 for r in reqs)
    assert [r.query["eid"] for r in reqs] == sent


def test_get_partial_failure_is_retried_from_the_failed_event(collector: Collector,
                                                             make: Make) -> None:
    collector.faults(503, after=1, times=1)
    successes: list[int] = []
    failures: list[tuple[int, int]] = []
    tracker, emitter = make(method="get", batch_size=4, flush_interval=30,
                            on_success=lambda p: successes.append(len(p)),
                            on_failure=lambda n, p: failures.append((n, len(p))))
    sent = track(tracker, 4)
    assert emitter.flush(timeout=10) is True
    assert [r.query["eid"] for r in collector.requests()] == [sent[0], sent[1], *sent[1:]]
    assert eids(accepted_events(collector)) == sent
    assert failures == [(1, 3)] and successes == [1, 3]
    assert emitter.stats().retried == 3


# -- thread safety ---------------------------------------------------------------------------


@pytest.mark.parametrize("thread_count", [1, 4])
def test_many_threads_through_one_tracker(collector: Collector, make: Make,
                                          thread_count: int) -> None:
    tracker, emitter = make(thread_count=thread_count, buffer_capacity=100_000, batch_size=50,
                            buffer_max_bytes=64 << 20, request_timeout=5)  # room for all
    per_thread, n_threads = 5000, 16
    ids: list[list[str]] = [[] for _ in range(n_threads)]

    def run(k: int) -> None:
        for i in range(per_thread):
            ids[k].append(tracker.track(StructuredEvent("c", "a", label=str(i))))

    Crew(run, n_threads, name="tracking", timeout=120).run()
    assert emitter.flush(timeout=30) is True
    got = eids(accepted_events(collector))
    expected = {eid for chunk in ids for eid in chunk}
    assert len(expected) == per_thread * n_threads
    assert len(got) == len(expected) and set(got) == expected
    stats = emitter.stats()
    assert stats.sent == 80_000 and stats.dropped == {} and stats.tracked == 80_000


# -- threads -----------------------------------------------------------------------------------


def test_no_thread_at_import() -> None:
    code = (
        "import threading, snowplow_threaded\n"
        "assert threading.active_count() == 1, threading.enumerate()\n"
        "e = snowplow_threaded.Emitter('http://127.0.0.1:9')\n"
        "t = snowplow_threaded.Tracker('ns', emitters=e)\n"
        "assert threading.active_count() == 1, threading.enumerate()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stderr


def test_no_thread_before_the_first_event(collector: Collector, make: Make) -> None:
    tracker, emitter = make(thread_count=3)

    def mine() -> list[threading.Thread]:
        return [t for t in snowplow_threads() if emitter.endpoint in t.name]

    assert mine() == []
    assert emitter.stats().tracked == 0
    track(tracker, 1)
    assert len(mine()) == 3
    assert emitter.flush(timeout=5) is True


def test_collector_is_healthy_again_after_reset(collector: Collector, make: Make) -> None:
    collector.faults(503)
    collector.faults.clear()
    tracker, emitter = make()
    sent = track(tracker, 1)
    assert emitter.flush(timeout=5) is True
    assert eids(accepted_events(collector)) == sent


def test_an_event_racing_close_is_never_left_in_the_buffer(collector: Collector) -> None:
    """close() running between track()'s closed-check and its (lock-free) put: the event
    must not sit in the buffer unsent and uncounted; it is dropped and counted 'closed'."""
    emitter = Emitter(collector.endpoint, batch_size=50, flush_interval=0.05)
    tracker = Tracker("race", emitter)
    tracker.track(StructuredEvent("c", "before"))
    store = emitter._dispatcher.store
    put = store.put

    def close_then_put(record: PayloadDict) -> int:
        store.put = put  # type: ignore[method-assign]
        assert emitter.close(timeout=5) is True  # the interleaving, made deterministic
        return put(record)

    store.put = close_then_put  # type: ignore[method-assign]
    tracker.track(StructuredEvent("c", "racing"))
    assert store.size() == 0
    assert emitter.stats().dropped == {"closed": 1}
    assert [e["se_ac"] for e in accepted_events(collector)] == ["before"]

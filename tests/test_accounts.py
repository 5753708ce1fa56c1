"""drops.DropReport (rate-limited warnings and on_drop calls, with a fake clock) and
drops.LossLedger (which flush() window lost what): no network."""

from __future__ import annotations

import logging
import threading

import pytest

from snowplow_threaded import accounts as drops
from snowplow_threaded.accounts import CALLBACK_INTERVAL, SUMMARY_INTERVAL, DropReport, LossLedger


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def fresh_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(drops, "_warned_pid", [0])


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_first_drop_warns_once_then_a_summary_at_most_once_a_minute(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    report = DropReport("e1", {"buffer_capacity": 100}, clock=clock)
    totals = {"buffer_full": 0}
    with caplog.at_level(logging.WARNING, logger="snowplow_threaded"):
        for _second in range(150):  # drops go on for 150 s, 10 a second
            for _ in range(10):
                totals["buffer_full"] += 1
                if report.due():
                    report.report(totals, None)
            clock.now += 1.0
    said = warnings_of(caplog)
    assert "dropped 1 event(s) (buffer_full)" in said[0] and "buffer_capacity=100" in said[0]
    # then one summary per SUMMARY_INTERVAL, each naming what was dropped since the last
    assert len(said) == 1 + int(150 // SUMMARY_INTERVAL)
    assert "dropped 600 more event(s) (buffer_full: 600); 601 since it started" in said[1]
    # not one report per drop: the dropping thread reports only when one is due
    report.report(totals, None, final=True)
    assert len(warnings_of(caplog)) == len(said)  # a final report does not log early


def test_a_second_emitter_in_the_same_process_logs_a_summary_not_a_first_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    with caplog.at_level(logging.WARNING, logger="snowplow_threaded"):
        DropReport("e1", {}, clock=clock).report({"closed": 1}, None)
        DropReport("e2", {}, clock=clock).report({"buffer_full": 3}, None)
    first, second = warnings_of(caplog)
    assert "e1 dropped 1 event(s) (closed)" in first
    assert "e2 dropped 3 more event(s) (buffer_full: 3)" in second


def test_on_drop_gets_the_counts_since_its_last_call_about_once_a_second() -> None:
    clock = Clock()
    calls: list[tuple[str, int]] = []
    report = DropReport("e", {}, clock=clock)
    totals: dict[str, int] = {}
    for step in range(40):  # 4 s of drops, 100 ms apart, two reasons
        totals["buffer_full"] = totals.get("buffer_full", 0) + 5
        if step % 4 == 0:
            totals["closed"] = totals.get("closed", 0) + 1
        if report.due():
            report.report(totals, lambda reason, n: calls.append((reason, n)))
        clock.now += 0.1
    # the first drop at once, then at most one call per reason per CALLBACK_INTERVAL
    assert calls[:2] == [("buffer_full", 5), ("closed", 1)]
    assert len(calls) <= 2 * (4 / CALLBACK_INTERVAL + 1)
    report.report(totals, lambda reason, n: calls.append((reason, n)), final=True)
    by_reason: dict[str, int] = {}
    for reason, n in calls:
        by_reason[reason] = by_reason.get(reason, 0) + n
    assert by_reason == totals  # every drop passed on exactly once


def test_a_broken_on_drop_is_logged_and_the_rest_goes_on(
        caplog: pytest.LogCaptureFixture) -> None:
    def boom(reason: str, count: int) -> None:
        raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR, logger="snowplow_threaded"):
        DropReport("e", {}, clock=Clock()).report({"buffer_full": 2}, boom)
    assert "on_drop callback raised" in caplog.text


def test_the_loss_ledger_answers_per_window() -> None:
    ledger = LossLedger()
    first = ledger.begin(10, 0, 0)  # flush(): events 0-9 tracked, none refused
    ledger.lost(3, 4)  # event 3 failed for good during the wait
    assert ledger.end(first, store_drops=0) is False
    second = ledger.begin(20, 0, 0)  # events 10-19
    ledger.lost(25, 26)  # an event tracked after this call: not its business
    assert ledger.end(second, store_drops=0) is True
    third = ledger.begin(30, 2, 0)  # two refused at admission since the previous call
    assert ledger.end(third, store_drops=0) is False
    fourth = ledger.begin(40, 2, 0)
    assert ledger.end(fourth, store_drops=1) is False  # an eviction meanwhile
    assert ledger.ranges == []  # what no window can ask about any more is forgotten


def test_the_loss_ledger_stays_small_and_errs_on_the_side_of_false() -> None:
    ledger = LossLedger()
    window = ledger.begin(10_000, 0, 0)
    for seq in range(0, 10_000, 10):
        ledger.lost(seq, seq + 1)
    assert len(ledger.ranges) <= LossLedger.MAX_RANGES
    assert ledger.end(window, store_drops=0) is False
    overlapping = LossLedger()
    overlapping.lost(5, 9)
    overlapping.lost(7, 12)
    overlapping.lost(1, 2)
    assert overlapping.ranges == [[1, 2], [5, 12]]


def test_an_on_drop_that_drops_again_reports_within(caplog: pytest.LogCaptureFixture) -> None:
    """A callback that tracks into the same full emitter (so drops again) must not hang:
    the report re-enters, sees what is new, and the outer one goes on."""
    clock = Clock()
    report = DropReport("e", {}, clock=clock)
    totals = {"buffer_full": 1}
    calls: list[int] = []

    def on_drop(reason: str, count: int) -> None:
        calls.append(count)
        if len(calls) == 1:
            totals["buffer_full"] += 1
            report.report(totals, on_drop, final=True)

    worker = threading.Thread(target=report.report, args=(totals, on_drop, True), daemon=True)
    worker.start()
    worker.join(10)  # a non-re-entrant lock would hang here: fail instead
    assert not worker.is_alive() and calls == [1, 1]

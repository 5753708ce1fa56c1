"""BatchTrigger: the size, byte, time and linger triggers (pure logic, clock passed in)."""

from __future__ import annotations

from snowplow_threaded.batching import LINGER, BatchTrigger


def test_size_and_time_triggers() -> None:
    t = BatchTrigger(batch_size=10, byte_limit=None, flush_interval=1.0,
                     max_events_per_request=500)
    assert not t.is_due(100.0, 0, False, last_attempt=0.0)
    assert t.wait(100.0, 0, last_attempt=0.0) == 1.0  # idle: re-checks once a second
    assert not t.is_due(100.0, 3, False, last_attempt=0.0)  # starts the interval
    assert t.due_at == 101.0
    assert t.wait(100.5, 3, last_attempt=0.0) == 0.5
    assert t.is_due(101.0, 3, False, last_attempt=0.0)  # the interval passed
    assert t.is_due(100.2, 10, False, last_attempt=0.0)  # a full batch
    assert t.is_due(100.2, 1, True, last_attempt=0.0)  # flush()/close()


def test_full_batch_lingers_only_right_after_a_request() -> None:
    t = BatchTrigger(batch_size=10, byte_limit=None, flush_interval=1.0,
                     max_events_per_request=500)
    now = 50.0
    assert not t.is_due(now, 12, False, last_attempt=now - LINGER / 2)
    assert abs(t.wait(now, 12, last_attempt=now - LINGER / 2) - LINGER / 2) < 1e-9  # type: ignore[operator]
    assert t.is_due(now, 12, False, last_attempt=now - LINGER)
    assert t.is_due(now, 500, False, last_attempt=now)  # a full request never waits
    assert t.is_due(now, 12, True, last_attempt=now)  # nor does a flush


def test_byte_trigger_from_estimate_and_refinement_and_no_linger() -> None:
    t = BatchTrigger(batch_size=100, byte_limit=1000, flush_interval=1.0,
                     max_events_per_request=500)
    t.estimate({"e": "se", "eid": "x" * 36, "aa": "y" * 150})
    assert 1 <= t.byte_due_count < 100
    t.refine(nbytes=5000, events=50)  # 100 bytes per event on the wire
    assert t.byte_due_count == 10
    assert t.is_wake_point(10) and t.is_wake_point(1) and t.is_wake_point(100)
    assert t.is_wake_point(13) and t.is_wake_point(102)  # bands: counts are approximate
    assert not t.is_wake_point(14) and not t.is_wake_point(50)
    assert t.is_due(7.0, 10, False, last_attempt=7.0)  # byte_limit set: no lingering

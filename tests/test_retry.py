"""Unit tests of the retry policy (no network): should_retry, Backoff, parse_retry_after."""

from __future__ import annotations

import email.utils
import itertools

import pytest

from snowplow_threaded.retry import (
    NO_RESPONSE,
    PROBE_INTERVAL,
    Backoff,
    Pacer,
    is_success,
    parse_retry_after,
    should_retry,
)


@pytest.mark.parametrize(
    ("status", "custom", "expected"),
    [
        (200, {}, False),
        (204, {}, False),
        (299, {}, False),
        (NO_RESPONSE, {}, True),
        (301, {}, True),
        (302, {}, True),
        (307, {}, True),
        (404, {}, True),
        (408, {}, True),
        (429, {}, True),
        (500, {}, True),
        (502, {}, True),
        (503, {}, True),
        (400, {}, False),
        (401, {}, False),
        (403, {}, False),
        (410, {}, False),
        (413, {}, False),
        (422, {}, False),
        (413, {413: True}, True),
        (400, {400: True}, True),
        (422, {422: True}, True),
        (503, {503: False}, False),
        (500, {503: False}, True),
        (401, {400: True}, False),
        (200, {200: True}, False),  # a 2xx is never retried whatever the map says
    ],
)
def test_should_retry_table(status: int, custom: dict[int, bool], expected: bool) -> None:
    assert should_retry(status, custom) is expected


def test_is_success() -> None:
    assert is_success(200) and is_success(299)
    assert not is_success(199) and not is_success(300) and not is_success(NO_RESPONSE)


@pytest.mark.parametrize("rand_value", [0.0, 0.5, 0.999999, 1.0])
def test_backoff_never_zero_after_the_first_failure_never_above_cap(rand_value: float) -> None:
    backoff = Backoff(base=0.5, cap=10.0, rand=lambda: rand_value)
    assert backoff.next_delay() == 0.0  # an isolated failure: retried at once
    for _ in range(100):
        delay = backoff.next_delay()
        assert 0 < delay <= 10.0


def test_backoff_grows_exponentially_until_the_cap() -> None:
    low = Backoff(base=0.5, cap=10.0, rand=lambda: 0.0)
    high = Backoff(base=0.5, cap=10.0, rand=lambda: 1.0)
    lows = [low.next_delay() for _ in range(9)]
    highs = [high.next_delay() for _ in range(9)]
    # n-th consecutive failure (n >= 2): uniform in [d/2, d], d = min(cap, base * 2**(n-2))
    assert highs[:6] == [0.0, 0.5, 1.0, 2.0, 4.0, 8.0]
    assert lows[:6] == [0.0, 0.25, 0.5, 1.0, 2.0, 4.0]
    assert highs[6:] == [10.0, 10.0, 10.0]
    assert lows[6:] == [5.0, 5.0, 5.0]
    for a, b in itertools.pairwise(highs[1:6]):
        assert b == 2 * a


def test_backoff_jitter_uses_rand_and_reset_restarts() -> None:
    values = iter([0.0, 1.0, 0.5])
    backoff = Backoff(base=1.0, cap=100.0, rand=lambda: next(values))
    assert backoff.next_delay() == 0.0  # isolated: no rand drawn
    assert backoff.next_delay() == 0.5  # d=1, rand 0 -> d/2
    assert backoff.next_delay() == 2.0  # d=2, rand 1 -> d
    assert backoff.failures == 3
    backoff.reset()
    assert backoff.failures == 0
    assert backoff.next_delay() == 0.0
    assert backoff.next_delay() == 0.75  # d=1 again, rand .5


@pytest.mark.parametrize("every", [2, 3, 10])
def test_isolated_failures_among_successes_never_pause(every: int) -> None:
    """One request in 2, 3 or 10 refused (a bad node behind a load balancer): each failure
    follows a success and at most half of the recent requests failed, so none waits."""
    backoff = Backoff(base=0.5, cap=60.0, rand=lambda: 1.0)
    delays = []
    for request in range(1, 200):
        if request % every == 0:
            delays.append(backoff.next_delay())
        else:
            backoff.success()
    assert delays and set(delays) == {0.0}


def test_a_high_failure_ratio_backs_off_even_between_successes() -> None:
    """Two requests in three refused: failures are not consecutive for long, but more than
    half of the recent requests failed, so every failure waits."""
    backoff = Backoff(base=0.5, cap=60.0, rand=lambda: 1.0)
    delays = []
    for request in range(1, 60):
        if request % 3:
            delays.append(backoff.next_delay())
        else:
            backoff.success()
    assert delays[:2] == [0.0, 0.5]  # at first: isolated, then the second in a row
    assert all(delay >= 0.5 for delay in delays[4:])


def test_backoff_many_failures_do_not_overflow() -> None:
    backoff = Backoff(base=0.5, cap=60.0, rand=lambda: 1.0)
    for _ in range(5000):
        delay = backoff.next_delay()
    assert delay == 60.0


def test_backoff_retry_after_replaces_the_delay_and_is_capped() -> None:
    backoff = Backoff(base=0.5, cap=5.0, rand=lambda: 1.0)
    assert backoff.next_delay(retry_after=3.0) == 3.0  # even for an isolated failure
    assert backoff.next_delay(retry_after=3600.0) == 5.0
    assert backoff.failures == 2


def test_backoff_retry_after_zero_is_not_a_hot_loop() -> None:
    backoff = Backoff(base=0.5, cap=5.0, rand=lambda: 0.0)
    for _ in range(10):
        assert backoff.next_delay(retry_after=0.0) > 0
        assert backoff.next_delay(retry_after=-5.0) > 0


def test_parse_retry_after_seconds() -> None:
    assert parse_retry_after("1") == 1.0
    assert parse_retry_after(" 120 ") == 120.0
    assert parse_retry_after("0") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-3") is None


def test_parse_retry_after_http_date_with_a_fake_clock() -> None:
    now = 1_700_000_000.0
    header = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(header, now=lambda: now) == pytest.approx(30.0)
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after(past, now=lambda: now) == 0.0


@pytest.mark.parametrize("value", ["\u00b2", "1\u00b2", "\u0663", "Wed, 99 Foo 2024 nonsense"])
def test_parse_retry_after_never_raises_on_garbage(value: str) -> None:
    # header values are latin-1 decoded: a superscript digit passes str.isdigit()
    parsed = parse_retry_after(value)
    assert parsed is None or parsed >= 0


def test_pacer_backs_off_and_allows_one_probe_before_a_waiting_deadline() -> None:
    pacer = Pacer(Backoff(base=10.0, cap=10.0, rand=lambda: 1.0))
    pacer.attempted(99.0)
    pacer.failed(99.0, None)  # an isolated failure: retried at once
    assert pacer.resume_at == 99.0
    pacer.attempted(100.0)
    pacer.failed(100.0, None)  # the second in a row: the 10 s backoff
    assert pacer.resume_at == 110.0
    pacer.probe_before(120.0, 100.2)  # the backoff ends before that deadline: no probe
    assert pacer.resume_at == 110.0
    pacer.probe_before(105.0, 100.2)  # it would outlast it: one probe, PROBE_INTERVAL on
    assert pacer.resume_at == 100.0 + PROBE_INTERVAL
    pacer.attempted(101.0)
    pacer.failed(101.0, 30.0, waiting_until=101.5)  # Retry-After, capped; no time to probe
    assert pacer.resume_at == 111.0
    pacer.failed(101.0, None, waiting_until=109.0)  # a flush() was waiting: it probes
    assert pacer.resume_at == 102.0
    pacer.answered()
    assert pacer.backoff.failures == 0
    pacer.failed(102.0, None)
    pacer.succeeded()  # given up: the next failure starts afresh, the ratio too
    assert pacer.backoff.failures == 0 and not pacer.backoff.failing_often
    pacer.reset()
    assert (pacer.resume_at, pacer.last_attempt) == (0.0, 0.0)

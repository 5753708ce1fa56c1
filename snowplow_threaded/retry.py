"""Retry policy: which responses are retried, and how long to wait before the next try.

Pure functions of their inputs (the random source and the clock are parameters), so the
backoff maths is tested without sleeping.
"""

from __future__ import annotations

import datetime
import email.utils
import random
import time
from collections import deque
from collections.abc import Callable, Mapping

#: Status codes that are never retried unless ``custom_retry_codes`` says otherwise: the
#: request's events are refused (the transport isolates the refused ones, see there).
NO_RETRY_CODES = frozenset({400, 401, 403, 410, 413, 422})
#: Status code used for a request that got no HTTP response (connection error, timeout).
NO_RESPONSE = -1


def is_success(status: int) -> bool:
    return 200 <= status < 300


def should_retry(status: int, custom_retry_codes: Mapping[int, bool]) -> bool:
    """Whether a batch answered with *status* is sent again.

    2xx: no. A code in *custom_retry_codes*: as it says. 400/401/403/410/413/422: no.
    Everything else, including no response, 3xx, 429 and 5xx: yes.
    """
    if is_success(status):
        return False
    if status in custom_retry_codes:
        return bool(custom_retry_codes[status])
    return status not in NO_RETRY_CODES


class Backoff:
    """When to try again after a failed request: at once after an isolated failure, with
    capped exponential backoff and jitter while the collector keeps failing.

    An isolated failure (the first since a success, while at most half of the last
    :data:`WINDOW` requests failed) is retried at once (delay 0): one refused request
    among successes (a bad node behind a load balancer, a collector shedding load) must
    not pause the sender, or a steady stream of events outgrows it. After that, the n-th
    consecutive failure (n >= 2; n counts from 2 when the failure is isolated but the
    recent failure ratio is high) waits a uniformly random time in ``[d/2, d]`` where
    ``d = min(cap, base * 2 ** (n - 2))``: never more than *cap*, and spread so that many
    processes recovering together do not hit the collector in step. A dead collector is
    thus tried twice, then backed off. ``Retry-After`` from the server replaces the delay
    (capped by *cap*, and at least ``base / 2``).

    Not thread-safe on its own: its owner (the emitter's dispatcher) calls it under its lock.
    """

    #: requests remembered for the failure ratio
    WINDOW = 10

    def __init__(
        self,
        base: float = 0.5,
        cap: float = 60.0,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.base = base
        self.cap = cap
        self._rand = rand
        self.failures = 0  # consecutive
        self._recent: deque[bool] = deque(maxlen=self.WINDOW)  # True: the request failed

    @property
    def failing_often(self) -> bool:
        """More than half of the last :data:`WINDOW` requests failed."""
        return 2 * sum(self._recent) > len(self._recent)

    def next_delay(self, retry_after: float | None = None) -> float:
        """Record one more failure and return the delay before the next attempt."""
        often = self.failing_often
        self.failures += 1
        self._recent.append(True)
        if retry_after is not None:
            # floored (a "Retry-After: 0" answered on every try must not be a hot loop)
            return min(max(retry_after, self.base / 2), self.cap)
        if self.failures == 1 and not often:
            return 0.0
        exponent = max(self.failures - 2, 0)
        ceiling: float = min(self.cap, self.base * (2 ** min(exponent, 32)))
        return ceiling / 2 + float(self._rand()) * ceiling / 2

    def success(self) -> None:
        """Record a request that the collector answered with a verdict (2xx, or a refusal
        of events that is not retried)."""
        self.failures = 0
        self._recent.append(False)

    def reset(self) -> None:
        self.failures = 0
        self._recent.clear()


#: Least time between two attempts that a flush()/close() may force during a backoff.
PROBE_INTERVAL = 1.0


class Pacer:
    """When the next attempt may start: not before the backoff after a failure ends
    (:class:`Backoff`), except for one early probe that a caller waiting for a deadline may
    ask for (at most one per :data:`PROBE_INTERVAL`, so that a ``flush()`` loop cannot
    hammer a dead collector). Times are ``time.monotonic()`` values passed in.

    Plain state, not thread-safe on its own: its owner (the dispatcher) uses it under its
    lock.
    """

    def __init__(self, backoff: Backoff) -> None:
        self.backoff = backoff
        self.reset()

    def reset(self) -> None:
        self.resume_at = 0.0  # nothing is sent before this
        self.last_attempt = 0.0
        self.backoff.reset()

    def attempted(self, now: float) -> None:
        self.last_attempt = now

    def settled(self, now: float, retried: bool, given_up: bool, answered: bool,
                retry_after: float | None, waiting_until: float = 0.0) -> None:
        """After an attempt: something is *retried* (:meth:`failed`), or was *given_up*
        after ``max_retries`` (:meth:`succeeded`), or the collector *answered* every
        request (:meth:`answered`)."""
        if retried:
            self.failed(now, retry_after, waiting_until)
        elif given_up:
            self.succeeded()
        elif answered:
            self.answered()

    def succeeded(self) -> None:
        """An attempt ended without anything to retry (given up): the next failure starts
        over."""
        self.backoff.reset()

    def answered(self) -> None:
        """The collector answered every request of an attempt with a verdict (2xx, or a
        refusal of events that is not retried)."""
        self.backoff.success()

    def failed(self, now: float, retry_after: float | None, waiting_until: float = 0.0,
               ) -> None:
        """An attempt failed and will be retried: back off. *waiting_until*: the deadline
        of a caller waiting for it, if any (see :meth:`probe_before`)."""
        self.resume_at = max(self.resume_at, now + self.backoff.next_delay(retry_after))
        if waiting_until > now:
            self.probe_before(waiting_until, now)

    def probe_before(self, deadline: float, now: float) -> None:
        """If the backoff outlasts *deadline*, allow one attempt before it."""
        probe_at = max(now, self.last_attempt + PROBE_INTERVAL)
        if self.resume_at > deadline and probe_at < deadline:
            self.resume_at = probe_at


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date); None if absent
    or unparsable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # "²".isdigit() is true, float("²") raises
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
        if when.tzinfo is None:  # "-0000": a UTC time (not the local time of this host)
            when = when.replace(tzinfo=datetime.timezone.utc)
        return max(0.0, when.timestamp() - now())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None

"""A worker: one sender's loop — lease a batch, send it, judge the outcome, run the
callbacks, settle — and the verdict on one attempt.

A :class:`Worker` runs on a sender thread of its dispatcher (or, for an inline drain, on
the caller's thread until a deadline) with no lock held; everything shared lives in the
dispatcher, behind :class:`Leases`. With a backlog, while the collector answers a POST the
worker leases and encodes its next batch (:meth:`Leases.lease_now`), so that it finds the
answer already there instead of blocking on it: the process then spends less CPU per event
on GIL hand-offs and wake-ups (``stress/results/lease_ahead.md``). A batch leased ahead
goes next, or back to the store if it may not go now (a backoff began, ``close()`` gave
up).

:func:`judge` is the one place where a batch's fate is decided from what the collector
said (delivered, retried or failed for good); the dispatcher applies the verdict. Callback
exceptions are logged, never raised: a broken ``on_success``/``on_failure`` must not end
the worker or lose events.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from .event_store import Lease
from .retry import NO_RESPONSE, should_retry
from .transport import Bodies, SendResult, Transport, sent_timestamp
from .typing import FailureCallback, PayloadDictList, SuccessCallback

logger = logging.getLogger("snowplow_threaded.worker")

#: the emitter's callbacks as they are now (the user may replace them at any time)
Callbacks = Callable[[], tuple[SuccessCallback | None, FailureCallback | None]]


@dataclass(frozen=True)
class Verdict:
    """What becomes of a leased batch after one attempt."""

    result: SendResult
    delivered: int  # the first `delivered` records were accepted
    retry: bool  # the rest go back for another attempt (else they failed for good)


def judge(lease: Lease, result: SendResult, retry_codes: Mapping[int, bool],
          max_retries: int | None) -> Verdict:
    """The verdict on *lease* after an attempt that gave *result*."""
    failed = result.failed or []
    retry = (bool(failed) and not result.unsendable
             and should_retry(result.status, retry_codes)
             and (max_retries is None or lease.attempts <= max_retries))
    return Verdict(result, len(lease.records) - len(failed), retry)


class Leases(Protocol):
    """What a worker asks of its dispatcher (:class:`~.dispatcher.Dispatcher`). Each call
    takes the dispatcher's lock briefly; none does I/O."""

    def next_lease(self, worker: Worker) -> Lease | None:
        """Wait until a batch is due and lease it; None when *worker* must stop."""

    def lease_now(self, worker: Worker) -> Lease | None:
        """The next batch if one is due right now, else None; never waits."""

    def may_send(self, worker: Worker, lease: Lease) -> bool:
        """Whether a batch leased ahead may go now; if not, it went back to the store."""

    def settle(self, worker: Worker, lease: Lease, verdict: Verdict) -> None:
        """Apply *verdict* to *lease*."""

    def return_unsent(self, worker: Worker, lease: Lease) -> None:
        """Put back a batch leased ahead and never sent."""


class Worker:
    """One sender. :attr:`generation` is the dispatcher's when the worker was made: a
    worker from before a fork (a thread that forked from a callback) is not the child's,
    and the dispatcher gives it nothing and takes nothing back from it."""

    def __init__(self, leases: Leases, transport: Transport, generation: int,
                 retry_codes: Mapping[int, bool], max_retries: int | None,
                 callbacks: Callbacks, until: float | None = None) -> None:
        self._leases = leases
        self._transport = transport
        self.generation = generation
        self._retry_codes = retry_codes
        self._max_retries = max_retries
        self._callbacks = callbacks
        #: a monotonic deadline for an inline drain (which never leases ahead), else None
        self.until = until

    def run(self) -> None:
        """Lease, send and settle batches until the dispatcher says stop. Closes the
        transport at the end."""
        try:
            self._loop()
        except BaseException:  # pragma: no cover - a bug; keep the process alive, say so
            logger.exception("snowplow worker died")
            raise

    def _loop(self) -> None:
        ahead: tuple[Lease, Bodies | None] | None = None
        leases = self._leases
        try:
            while True:
                if ahead is not None:
                    lease, bodies = ahead
                    ahead = None
                    if not leases.may_send(self, lease):
                        continue
                else:
                    leased = leases.next_lease(self)
                    if leased is None:
                        return
                    lease, bodies = leased, None
                verdict, ahead = self._attempt(lease, bodies)
                leases.settle(self, lease, verdict)
        finally:
            if ahead is not None:
                leases.return_unsent(self, ahead[0])
            self._transport.close()

    def _attempt(self, lease: Lease, bodies: Bodies | None,
                 ) -> tuple[Verdict, tuple[Lease, Bodies | None] | None]:
        """Send *lease* once (its *bodies* if encoded ahead), leasing the next batch while
        the collector answers; judge it and run the callbacks. Never raises."""
        lease.attempts += 1
        ahead = None
        try:
            exchange = self._transport.start(lease.records, sent_timestamp(), bodies)
            if exchange.waiting and self.until is None:
                ahead = self._lease_ahead()
            result = exchange.finish()
        except Exception as exc:  # pragma: no cover - the transport returns every outcome;
            # a bug here must not end the worker (every later event would wait forever)
            logger.exception("sending a batch of %d event(s) failed", len(lease.records))
            result = SendResult(NO_RESPONSE, failed=list(range(len(lease.records))),
                                error=f"{type(exc).__name__}: {exc}", requests=0,
                                unsendable=True)
        verdict = judge(lease, result, self._retry_codes, self._max_retries)
        self._report(lease, verdict)
        return verdict, ahead

    def _lease_ahead(self) -> tuple[Lease, Bodies | None] | None:
        """The next batch and its bodies, if one is due. Never raises: the answer to the
        request written must still be read (or the connection would hold it)."""
        try:
            lease = self._leases.lease_now(self)
        except Exception:  # pragma: no cover - a bug; the send goes on without it
            logger.exception("leasing a batch ahead failed")
            return None
        if lease is None:
            return None
        try:
            return lease, self._transport.encode(lease.records, sent_timestamp())
        except Exception:  # a user's store handed back a value no encoder can write: the
            # send encodes it again, fails it for good and reports it (once, there)
            logger.debug("encoding a batch ahead failed; it is encoded when sent",
                         exc_info=True)
            return lease, None

    def _report(self, lease: Lease, verdict: Verdict) -> None:
        """Log a failure (never per event) and run the callbacks."""
        result = verdict.result
        failed = result.failed or []
        if failed:
            level = (logging.WARNING if result.status == NO_RESPONSE or not verdict.retry
                     else logging.INFO)
            outcome = "will retry" if verdict.retry else "giving up"
            if result.maybe_received:
                outcome += " (the collector may have received them: a retry may duplicate them)"
            logger.log(level, "%d event(s) not delivered to %s (%s); %s", len(failed),
                       self._transport.uri, result.error, outcome)
        on_success, on_failure = self._callbacks()
        if on_success is not None and verdict.delivered:
            _call("on_success", on_success, _copies(lease.records[:verdict.delivered]))
        if on_failure is not None and failed:
            _call("on_failure", on_failure, verdict.delivered,
                  _copies([lease.records[i] for i in failed]))


def _copies(records: PayloadDictList) -> PayloadDictList:
    """The payloads handed to a callback: copies, so that it cannot change a record that
    may be sent again (anything a user's EventStore returned that is not a dict, as is)."""
    return [dict(r) if isinstance(r, dict) else r for r in records]


def report_given_up(on_failure: FailureCallback | None, records: PayloadDictList) -> None:
    """Events dropped unsent when ``close()`` ran out of time: ``on_failure(0, payloads)``,
    on the closing thread. Never raises."""
    if on_failure is not None and records:
        _call("on_failure", on_failure, 0, _copies(records))


def _call(name: str, callback: Callable[..., object], *args: object) -> None:
    try:
        callback(*args)
    except Exception:
        logger.exception("%s callback raised; the emitter goes on", name)

"""A worker: one sender's loop — lease a batch, send it, judge the outcome, run the
callbacks, settle — and the verdict on one attempt.

A :class:`Worker` runs on a sender thread of its dispatcher (or, for an inline drain, on
the caller's thread until a deadline) with no lock held; everything shared lives in the
dispatcher, behind :class:`Leases`. With a backlog, while the collector answers a POST the
worker leases and encodes its next batch (:meth:`Leases.lease_now`), so that it finds the
answer already there instead of blocking on it: the process then spends less CPU per event
on GIL hand-offs and wake-ups (``stress/results/lease_ahead.md``). A batch leased ahead
goes next, or back to the store if it may not go now (the batch before it failed and is
retried first, a backoff began, ``close()`` gave up).

:func:`judge` is the one place where a batch's fate is decided from what the collector
said (delivered, refused for good, retried, or given up); the dispatcher applies the
verdict. Callbacks get payload dicts decoded from the records (``stm`` included). Callback
exceptions are logged, never raised: a broken ``on_success``/``on_failure`` must not end
the worker or lose events.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .event_store import Lease
from .record import Record, get_fields, payload_of
from .retry import NO_RESPONSE
from .transport import Bodies, SendResult, Transport, sent_timestamp
from .typing import Callbacks as CallbackTuple
from .typing import FailureCallback, PayloadDictList

logger = logging.getLogger("snowplow_threaded.worker")

#: the emitter's callbacks as they are now (the user may replace them at any time)
Callbacks = Callable[[], CallbackTuple]
#: a batch's request bodies made ahead, and the ``stm`` they carry
Prepared = tuple[str, Bodies]


@dataclass(frozen=True)
class Verdict:
    """What becomes of a leased batch after one attempt."""

    result: SendResult
    done: int  # the first `done` records are settled (delivered, or refused for good)
    delivered: int  # of those, the ones the collector accepted
    retry: bool  # the rest go back for another attempt (else they failed for good)
    failed: int  # events failed for good: refused, the rest if not retried, unsendable


def judge(lease: Lease, result: SendResult, max_retries: int | None,
          crashed: bool = False) -> Verdict:
    """The verdict on *lease* after an attempt that gave *result*: the transport settled
    the first ``result.done`` records (refused events singled out); the rest are retried
    unless ``max_retries`` is reached (or the attempt *crashed*: a bug, not retried)."""
    rest = len(lease.records) - result.done
    retry = rest > 0 and not crashed and (max_retries is None
                                          or lease.attempts <= max_retries)
    failed = len(result.refused) + (0 if retry else rest) + len(lease.unsendable or ())
    return Verdict(result, result.done, result.delivered, retry, failed)


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
                 max_retries: int | None, callbacks: Callbacks,
                 until: float | None = None) -> None:
        self._leases = leases
        self._transport = transport
        self.generation = generation
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
        ahead: tuple[Lease, Prepared | None] | None = None
        leases = self._leases
        try:
            while True:
                if ahead is not None:
                    lease, prepared = ahead
                    ahead = None
                    if not leases.may_send(self, lease):
                        continue
                else:
                    leased = leases.next_lease(self)
                    if leased is None:
                        return
                    lease, prepared = leased, None
                verdict, ahead = self._attempt(lease, prepared)
                leases.settle(self, lease, verdict)
        finally:
            if ahead is not None:
                leases.return_unsent(self, ahead[0])
            self._transport.close()

    def _attempt(self, lease: Lease, prepared: Prepared | None,
                 ) -> tuple[Verdict, tuple[Lease, Prepared | None] | None]:
        """Send *lease* once (its bodies if *prepared* ahead), leasing the next batch while
        the collector answers; judge it and run the callbacks. Never raises."""
        lease.attempts += 1
        ahead = None
        stm, bodies = prepared if prepared is not None else (sent_timestamp(), None)
        crashed = False
        try:
            if lease.records:
                exchange = self._transport.start(lease.records, stm, bodies)
                if exchange.waiting and self.until is None:
                    ahead = self._lease_ahead()
                result = exchange.finish()
            else:  # only events a user's store handed back that cannot be sent
                result = SendResult()
        except Exception as exc:  # pragma: no cover - the transport returns every outcome;
            # a bug here must not end the worker (every later event would wait forever)
            logger.exception("sending a batch of %d event(s) failed", len(lease.records))
            result = SendResult(NO_RESPONSE, error=f"{type(exc).__name__}: {exc}")
            crashed = True
        verdict = judge(lease, result, self._max_retries, crashed)
        self._report(lease, verdict, stm)
        return verdict, ahead

    def _lease_ahead(self) -> tuple[Lease, Prepared | None] | None:
        """The next batch and its bodies, if one is due. Never raises: the answer to the
        request written must still be read (or the connection would hold it)."""
        try:
            lease = self._leases.lease_now(self)
            if lease is None:
                return None
        except Exception:  # pragma: no cover - a bug; the send goes on without it
            logger.exception("leasing a batch ahead failed")
            return None
        if not lease.records:
            return lease, None
        stm = sent_timestamp()
        return lease, (stm, self._transport.encode(lease.records, stm))

    def _report(self, lease: Lease, verdict: Verdict, stm: str) -> None:
        """Log what failed (never per event) and run the callbacks."""
        result, records = verdict.result, lease.records
        uri = self._transport.uri
        refused = result.refused
        rest = len(records) - verdict.done
        if refused:
            logger.warning("%d event(s) refused by %s with HTTP %s, not retried: dropped "
                           "(%d request(s) to single them out)", len(refused), uri,
                           result.refused_status, result.split_requests)
        if rest:
            level = (logging.WARNING if result.status == NO_RESPONSE or not verdict.retry
                     else logging.INFO)
            outcome = "will retry" if verdict.retry else "giving up"
            if result.maybe_received:
                outcome += " (the collector may have received them: a retry may duplicate them)"
            logger.log(level, "%d event(s) not delivered to %s (%s); %s", rest, uri,
                       result.error, outcome)
        unsendable = lease.unsendable or []
        if unsendable:
            logger.error("%d event(s) from the event store could not be encoded (a value "
                         "whose str() fails): dropped", len(unsendable))
        on_success, on_failure, _ = self._callbacks()
        if on_success is not None and verdict.delivered:
            skip = set(refused)
            _call("on_success", on_success,
                  [get_fields(records[i], stm) for i in range(verdict.done) if i not in skip])
        if on_failure is not None and (refused or rest or unsendable):
            failed = [get_fields(records[i], stm) for i in refused]
            failed += [get_fields(record, stm) for record in records[verdict.done:]]
            _call("on_failure", on_failure, verdict.delivered, failed + _copies(unsendable))


def _copies(payloads: PayloadDictList) -> PayloadDictList:
    """Payloads handed to a callback: copies (anything that is not a dict, as is)."""
    return [dict(p) if isinstance(p, dict) else p for p in payloads]


def report_given_up(on_failure: FailureCallback | None, records: list[Record]) -> None:
    """Events dropped unsent when ``close()`` ran out of time: ``on_failure(0, payloads)``,
    on the closing thread. Never raises."""
    if on_failure is not None and records:
        _call("on_failure", on_failure, 0, [payload_of(record) for record in records])


def _call(name: str, callback: Callable[..., object], *args: object) -> None:
    try:
        callback(*args)
    except Exception:
        logger.exception("%s callback raised; the emitter goes on", name)

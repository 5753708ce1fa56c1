"""A worker thread's loop (:func:`send_until`), and the delivery of one leased batch: the
request, the verdict, and the user callbacks.

Runs on a worker thread with no lock held. Callback exceptions are logged, never raised:
a broken ``on_success``/``on_failure`` must not kill the worker or lose events.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .event_store import Lease
from .record import Record, get_fields, payload_of
from .retry import NO_RESPONSE
from .transport import Bodies, SendResult, Transport, sent_timestamp
from .typing import FailureCallback, PayloadDictList, SuccessCallback

if TYPE_CHECKING:
    from .leasing import LeaseDesk

logger = logging.getLogger("snowplow_threaded.worker")

#: a batch's request bodies made ahead, and the ``stm`` they carry
Prepared = tuple[str, Bodies]


@dataclass
class Outcome:
    """What the dispatcher must do with a lease after one attempt."""

    result: SendResult
    done: int  # the first `done` records are settled (delivered, or refused for good)
    retry: bool  # the rest go back for another attempt (else they failed for good)
    delivered: int  # of the first `done`, those the collector accepted
    failed: int  # events failed for good: refused, the rest if not retried, unsendable


def deliver(
    lease: Lease,
    transport: Transport,
    max_retries: int | None,
    on_success: SuccessCallback | None,
    on_failure: FailureCallback | None,
    prepared: Prepared | None = None,
    meanwhile: Callable[[], object] | None = None,
) -> Outcome:
    """Send *lease* once (its *prepared* bodies if made ahead; *meanwhile* run while the
    collector answers, see :meth:`Transport.send`), log what failed and run the callbacks.
    Never raises."""
    stm, bodies = prepared if prepared is not None else (sent_timestamp(), None)
    lease.attempts += 1
    records = lease.records
    retry = True
    try:
        result = transport.send(records, stm, bodies, meanwhile) if records else SendResult()
    except Exception as exc:  # pragma: no cover - send() returns every outcome; a bug here
        # must not end the worker (every later event would wait forever), nor loop
        logger.exception("sending a batch of %d event(s) failed", len(records))
        result = SendResult(NO_RESPONSE, error=f"{type(exc).__name__}: {exc}")
        retry = False
    rest = len(records) - result.done
    if max_retries is not None and lease.attempts > max_retries:
        retry = False
    refused = result.refused
    if refused:
        logger.warning("%d event(s) refused by %s with HTTP %s, not retried: dropped "
                       "(%d request(s) to single them out)", len(refused), transport.uri,
                       result.refused_status, result.split_requests)
    if rest:
        level = logging.WARNING if result.status == NO_RESPONSE or not retry else logging.INFO
        verdict = "will retry" if retry else "giving up"
        if result.maybe_received:
            verdict += " (the collector may have received them: a retry may duplicate them)"
        logger.log(level, "%d event(s) not delivered to %s (%s); %s", rest, transport.uri,
                   result.error, verdict)
    unsendable = lease.unsendable or []
    if unsendable:
        logger.error("%d event(s) from the event store could not be encoded (a value whose "
                     "str() fails): dropped", len(unsendable))
    delivered = result.delivered
    if on_success is not None and delivered:
        skip = set(refused)
        _call("on_success", on_success,
              [get_fields(records[i], stm) for i in range(result.done) if i not in skip])
    if on_failure is not None and (refused or rest or unsendable):
        failed = [get_fields(records[i], stm) for i in (*refused, *range(result.done,
                                                                          len(records)))]
        _call("on_failure", on_failure, delivered, failed + _copies(unsendable))
    failed_count = len(refused) + (0 if retry else rest) + len(unsendable)
    return Outcome(result, result.done, retry and rest > 0, delivered, failed_count)


def _copies(payloads: PayloadDictList) -> PayloadDictList:
    """Payloads handed to a callback: copies (anything that is not a dict, as is)."""
    return [dict(p) if isinstance(p, dict) else p for p in payloads]


def report_given_up(on_failure: FailureCallback | None, records: list[Record]) -> None:
    """Events dropped unsent when ``close()`` ran out of time: ``on_failure(0, payloads)``,
    on the closing thread. Never raises."""
    if on_failure is not None and records:
        _call("on_failure", on_failure, 0, [payload_of(record) for record in records])


def _call(name: str, callback: object, *args: object) -> None:
    try:
        callback(*args)  # type: ignore[operator]
    except Exception:
        logger.exception("%s callback raised; the emitter goes on", name)


def send_until(dispatcher: LeaseDesk, transport: Transport, until: float | None) -> None:
    """Lease, send and settle batches until the dispatcher says stop (or *until*, a
    monotonic deadline: an inline drain). Closes *transport* at the end.

    A worker thread (no *until*) sending POSTs through its own connection leases and
    encodes its next batch while the collector answers the current one, when one is due
    (a backlog). It then finds that answer already there instead of blocking on it, and
    does not queue for the GIL behind the application's threads once per request. A batch
    leased ahead is sent next, or put back if it may not go now (a backoff began, close()
    gave up)."""
    ahead: list[tuple[Lease, Prepared | None]] = []

    def lease_ahead() -> None:
        lease = dispatcher.lease_now()
        if lease is None:
            return
        stm = sent_timestamp()
        ahead.append((lease, (stm, transport.prepare(lease.records, stm))
                      if lease.records else None))

    meanwhile = lease_ahead if until is None and transport.can_overlap else None
    try:
        while True:
            if ahead:
                lease, prepared = ahead.pop()
                if not dispatcher.may_send(lease):
                    continue
            else:
                leased = dispatcher.next_lease(until)
                if leased is None:
                    return
                lease, prepared = leased, None
            dispatcher.attempt(lease, transport, prepared, meanwhile)
    finally:
        for lease, _ in ahead:
            dispatcher.return_unsent(lease)
        transport.close()

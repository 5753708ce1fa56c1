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
from .retry import NO_RESPONSE, should_retry
from .transport import Bodies, SendResult, Transport, sent_timestamp
from .typing import FailureCallback, SuccessCallback

if TYPE_CHECKING:
    from .leasing import LeaseDesk

logger = logging.getLogger("snowplow_threaded.worker")


@dataclass
class Outcome:
    """What the dispatcher must do with a lease after one attempt."""

    result: SendResult
    delivered: int  # the first `delivered` records were accepted
    retry: bool  # the rest go back for another attempt (else they failed for good)


def deliver(
    lease: Lease,
    transport: Transport,
    custom_retry_codes: dict[int, bool],
    max_retries: int | None,
    on_success: SuccessCallback | None,
    on_failure: FailureCallback | None,
    bodies: Bodies | None = None,
    meanwhile: Callable[[], object] | None = None,
) -> Outcome:
    """Send *lease* once (its *bodies* if already encoded; *meanwhile* run while the
    collector answers, see :meth:`Transport.send`) and run the callbacks. Never raises."""
    stm = sent_timestamp()
    lease.attempts += 1
    try:
        result = transport.send(lease.records, stm, bodies, meanwhile)
    except Exception as exc:  # pragma: no cover - send() returns every outcome; a bug here
        # must not end the worker (every later event would wait forever)
        logger.exception("sending a batch of %d event(s) failed", len(lease.records))
        result = SendResult(NO_RESPONSE, failed=list(range(len(lease.records))),
                            error=f"{type(exc).__name__}: {exc}", requests=0,
                            unsendable=True)
    failed = result.failed or []
    delivered = len(lease.records) - len(failed)
    retry = bool(failed) and not result.unsendable and should_retry(result.status,
                                                                    custom_retry_codes)
    if retry and max_retries is not None and lease.attempts > max_retries:
        retry = False
    if failed:
        level = logging.WARNING if result.status == NO_RESPONSE or not retry else logging.INFO
        verdict = "will retry" if retry else "giving up"
        if result.maybe_received:
            verdict += " (the collector may have received them: a retry may duplicate them)"
        logger.log(level, "%d event(s) not delivered to %s (%s); %s", len(failed),
                   transport.uri, result.error, verdict)
    if on_success is not None and delivered:
        _call("on_success", on_success, _copies(lease.records[:delivered]))
    if on_failure is not None and failed:
        _call("on_failure", on_failure, delivered, _copies([lease.records[i] for i in failed]))
    return Outcome(result, delivered, retry)


def _copies(records: list[dict[str, str]]) -> list[dict[str, str]]:
    """The payloads handed to a callback: copies, so that it cannot change a record that
    may be sent again (anything a user's EventStore returned that is not a dict, as is)."""
    return [dict(r) if isinstance(r, dict) else r for r in records]


def report_given_up(on_failure: FailureCallback | None, records: list[dict[str, str]]) -> None:
    """Events dropped unsent when ``close()`` ran out of time: ``on_failure(0, payloads)``,
    on the closing thread. Never raises."""
    if on_failure is not None and records:
        _call("on_failure", on_failure, 0, _copies(records))


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
    ahead: list[tuple[Lease, Bodies | None]] = []

    def lease_ahead() -> None:
        lease = dispatcher.lease_now()
        if lease is None:
            return
        ahead.append((lease, None))
        try:
            ahead[-1] = (lease, transport.prepare(lease.records, sent_timestamp()))
        except Exception:  # a user's store handed back a value no encoder can write: the
            # send encodes it again, fails it for good and reports it (once, there)
            logger.debug("encoding a batch ahead failed; it is encoded when sent",
                         exc_info=True)

    meanwhile = lease_ahead if until is None and transport.can_overlap else None
    try:
        while True:
            if ahead:
                lease, bodies = ahead.pop()
                if not dispatcher.may_send(lease):
                    continue
            else:
                leased = dispatcher.next_lease(until)
                if leased is None:
                    return
                lease, bodies = leased, None
            dispatcher.attempt(lease, transport, bodies, meanwhile)
    finally:
        for lease, _ in ahead:
            dispatcher.return_unsent(lease)
        transport.close()

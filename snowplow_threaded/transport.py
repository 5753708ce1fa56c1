"""HTTP transport: turns a batch of records into requests to the collector.

One :class:`Transport` per worker thread, each with its own client (:mod:`.clients`):
one POST per body (a batch, or part of one over ``max_request_bytes``) or one GET per
event, and what came of them (:class:`SendResult`).

A refusal costs only what it must: when the collector refuses a request of several events
with a status that is not retried (400, 401, 403, 410, 413, 422, or as
``custom_retry_codes`` say), the request is split in halves and each is sent, recursively,
until the refused events are alone; only those fail for good. A 413 (body too large) is
always split first. That makes at most about ``2 * log2(n)`` more requests per refused
event of a request of *n* (counted in ``SendResult.split_requests``). With GET, a refused
event fails alone and the next ones are still sent. Any other failure (no response, 5xx,
429, ...) stops the attempt: what was not settled is retried later, in order.

Never raises: every outcome is a :class:`SendResult`. Not locked: a transport belongs to
one worker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import requests
import urllib3

from .clients import (
    DEFAULT_TIMEOUT,
    USER_AGENT,
    Client,
    ConnectFailed,
    ConnectionClient,
    new_client,
)
from .record import BODY_HEAD_SIZE, PAYLOAD_DATA_SCHEMA, STM_SIZE, Record, get_fields, post_body
from .retry import NO_RESPONSE, is_success, parse_retry_after, should_retry
from .typing import RequestTimeout

__all__ = ["PAYLOAD_DATA_SCHEMA", "USER_AGENT", "Bodies", "SendResult", "Transport",
           "post_bodies", "sent_timestamp"]

logger = logging.getLogger("snowplow_threaded.transport")
_time_ns = time.time_ns  # the clock of stm (snowplow_threaded.testing fixes it)

#: Payload Too Large: the request is split even when 413 is retried
TOO_LARGE = 413


@dataclass
class SendResult:
    """What one attempt at a batch achieved. The first ``done`` records are settled:
    delivered, or refused for good (their indexes in ``refused``); the rest were not sent,
    or failed in a way that is retried (``status``, ``error``, ``retry_after``:
    ``status`` is ``-1`` when no response came back)."""

    status: int = 200
    done: int = 0
    refused: list[int] = field(default_factory=list)
    refused_status: int | None = None  # the last status that refused an event for good
    retry_after: float | None = None
    error: str | None = None
    nbytes: int = 0
    requests: int = 0
    split_requests: int = 0  # requests made to isolate refused events (in ``requests``)
    # no response, but the request may have reached the collector (timeout or reset after
    # it was sent): a retry may deliver those events twice
    maybe_received: bool = False

    @property
    def delivered(self) -> int:
        return self.done - len(self.refused)


def sent_timestamp() -> str:
    """``stm``: the send time in milliseconds (the reference truncates it to seconds)."""
    return str(_time_ns() // 1_000_000)


#: ``(event_count, body)`` per request, in order
Bodies = list[tuple[int, bytes]]


def post_bodies(records: Sequence[Record], stm: str, max_bytes: int) -> Bodies:
    """The ``payload_data`` request bodies for *records*, as ``(event_count, body)`` in
    order, each at most about *max_bytes* unless it holds a single larger event."""
    bodies: Bodies = []
    start, size = 0, BODY_HEAD_SIZE
    for index, record in enumerate(records):
        grown = size + len(record) + STM_SIZE
        if grown > max_bytes and index > start:
            bodies.append((index - start, post_body(records[start:index], stm)))
            start, grown = index, BODY_HEAD_SIZE + len(record) + STM_SIZE
        size = grown
    bodies.append((len(records) - start, post_body(records[start:], stm)))
    return bodies


@dataclass
class _Reply:
    status: int
    retry_after: str | None = None
    error: str | None = None
    maybe_received: bool = False


class Transport:
    def __init__(
        self,
        uri: str,
        method: str,
        timeout: RequestTimeout | None,
        session: requests.Session | None = None,
        max_request_bytes: int = 1_000_000,
        custom_retry_codes: Mapping[int, bool] | None = None,
    ) -> None:
        self.uri = uri
        self.max_request_bytes = max_request_bytes
        self.method = method
        self.timeout = DEFAULT_TIMEOUT if timeout is None else timeout
        #: read at each refusal (the emitter's own dict: set_retry_code() applies at once)
        self.custom_retry_codes: Mapping[int, bool] = (
            {} if custom_retry_codes is None else custom_retry_codes)
        self._user_session = session
        self._client: Client | None = None

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = new_client(self.uri, self.timeout, self._user_session)
        return self._client

    def close(self) -> None:
        """Close our own connections (a user's session is left to its owner)."""
        if self._client is not None:
            try:
                self._client.close()
            except Exception:  # pragma: no cover - closing sockets should not fail
                logger.debug("closing the HTTP client failed", exc_info=True)
        self._client = None

    @property
    def can_overlap(self) -> bool:
        """Whether :meth:`send` can run other work while the collector answers (POST through
        our own connection)."""
        try:
            return self.method == "post" and isinstance(self.client, ConnectionClient)
        except Exception:  # reported by send(), where making the client fails again
            return False

    def prepare(self, records: Sequence[Record], stm: str) -> Bodies:
        """The request bodies of *records* sent at *stm*, for :meth:`send`."""
        return post_bodies(records, stm, self.max_request_bytes)

    def refuses(self, status: int) -> bool:
        """Whether *status* refuses the events of a request for good (not retried)."""
        return not is_success(status) and not should_retry(status, self.custom_retry_codes)

    def send(self, records: Sequence[Record], stm: str, bodies: Bodies | None = None,
             meanwhile: Callable[[], object] | None = None) -> SendResult:
        """Send *records* in order (one or more POSTs, or one GET each) until a failure
        that is retried; isolate refused events (see the module docstring). POST:
        *bodies* from :meth:`prepare` (``stm`` is then theirs), and *meanwhile* run while
        the collector answers the last of them (if :attr:`can_overlap`; it must not
        raise)."""
        result = SendResult()
        if self.method != "post":
            self._get_each(records, stm, result)
            return result
        if bodies is None:
            bodies = self.prepare(records, stm)
        own = meanwhile if meanwhile is not None and self.can_overlap else None
        start = 0
        for index, (count, body) in enumerate(bodies):
            last = index == len(bodies) - 1
            if not self._post_span(records, start, start + count, stm, result, body,
                                   own if last else None):
                break
            start += count
        return result

    def _post_span(self, records: Sequence[Record], lo: int, hi: int, stm: str,
                   result: SendResult, body: bytes | None = None,
                   meanwhile: Callable[[], object] | None = None) -> bool:
        """POST ``records[lo:hi]``, splitting it while refused; False when a failure that
        is retried stopped it (``result.done`` is then where it stopped)."""
        if body is None:
            body = post_body(records[lo:hi], stm)
        reply = self._request("POST", body, None, meanwhile)
        result.requests += 1
        result.nbytes += len(body)
        status = reply.status
        if is_success(status):
            result.done = hi
            return True
        if hi - lo > 1 and (status == TOO_LARGE or self.refuses(status)):
            mid = (lo + hi) // 2
            result.split_requests += 2
            return (self._post_span(records, lo, mid, stm, result)
                    and self._post_span(records, mid, hi, stm, result))
        return self._settle_failure(reply, lo, result)

    def _settle_failure(self, reply: _Reply, index: int, result: SendResult) -> bool:
        """A single event refused for good (True: go on), or a failure that is retried
        (False: stop at *index*)."""
        if reply.status != NO_RESPONSE and self.refuses(reply.status):
            result.refused.append(index)
            result.refused_status = reply.status
            result.done = index + 1
            return True
        result.status = reply.status
        result.error = reply.error if reply.error is not None else f"HTTP {reply.status}"
        result.retry_after = parse_retry_after(reply.retry_after)
        result.maybe_received = reply.maybe_received
        return False

    def _get_each(self, records: Sequence[Record], stm: str, result: SendResult) -> None:
        for index, record in enumerate(records):
            reply = self._request("GET", None, get_fields(record, stm), None)
            result.requests += 1
            if is_success(reply.status):
                result.done = index + 1
            elif not self._settle_failure(reply, index, result):
                return  # the collector is failing: do not hammer it with the rest

    def _request(self, method: str, body: bytes | None, query: dict[str, str] | None,
                 meanwhile: Callable[[], object] | None) -> _Reply:
        """One request; every error becomes a :class:`_Reply` with ``status`` -1."""
        try:
            client = self.client
        except Exception as exc:  # a client that cannot be made: nothing was sent
            return _Reply(NO_RESPONSE, error=_describe(exc))
        try:
            if meanwhile is not None and isinstance(client, ConnectionClient):
                status, retry_after = client.request(method, body, query, meanwhile)
            else:
                status, retry_after = client.request(method, body, query)
        except Exception as exc:  # urllib3/requests errors, or a user session's own
            return _Reply(NO_RESPONSE, error=_describe(exc), maybe_received=_maybe_received(exc))
        return _Reply(status, retry_after)


def _maybe_received(exc: BaseException) -> bool:
    """False when the request surely never reached the collector (the connection could not
    be made: refused, unresolvable, connect timeout)."""
    if isinstance(exc, (ConnectFailed, requests.exceptions.ConnectTimeout,
                        requests.exceptions.SSLError,  # a refused handshake sends nothing
                        urllib3.exceptions.ConnectTimeoutError)):  # + NewConnectionError
        return False
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)  # requests wraps urllib3's MaxRetryError
    return not isinstance(reason, urllib3.exceptions.ConnectTimeoutError)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, (ConnectFailed, urllib3.exceptions.NewConnectionError)):
        return f"ConnectionError: {exc}"  # the name requests gives it
    return f"{type(exc).__name__}: {exc}"

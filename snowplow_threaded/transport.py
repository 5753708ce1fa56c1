"""HTTP transport: turns a batch of records into requests to the collector.

One :class:`Transport` per worker, each with its own client (:mod:`.clients`), made by the
emitter's :class:`TransportFactory`: the batch bodies (``payload_data``, joined from the
records), one POST per body or one GET per event, and what came of them. It knows nothing
of the store or the engine.

An attempt is :meth:`Transport.send`, or in two steps :meth:`Transport.start` (the
requests written, the last one's answer not read yet when the client allows it) and
:meth:`Exchange.finish`: the worker may do other work while the collector answers.

A refusal costs only what it must: when the collector refuses a request of several events
with a status that is not retried (400, 401, 403, 410, 413, 422, or as
``custom_retry_codes`` say), the request is split in halves and each is sent, recursively,
until the refused events are alone; only those fail for good. A 413 (body too large) is
always split first. That makes at most about ``2 * log2(n)`` more requests per refused
event of a request of *n* (counted in ``SendResult.split_requests``). With GET, a refused
event fails alone and the next ones are still sent. Any other failure (no response, 5xx,
429, ...) stops the attempt: what was not settled is retried later, in order.

Never raises: every outcome is a :class:`SendResult`. Not locked: a transport belongs to
one worker; a factory is immutable and shared.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import requests
import urllib3

from .clients import (
    DEFAULT_TIMEOUT,
    USER_AGENT,
    Client,
    ConnectFailed,
    ConnectionClient,
    fresh_pools,
    new_client,
)
from .record import BODY_HEAD_SIZE, PAYLOAD_DATA_SCHEMA, STM_SIZE, Record, get_fields, post_body
from .retry import NO_RESPONSE, is_success, parse_retry_after, should_retry
from .settings import EmitterSettings
from .typing import RequestTimeout

__all__ = ["PAYLOAD_DATA_SCHEMA", "USER_AGENT", "Bodies", "Exchange", "SendResult",
           "Transport", "TransportFactory", "post_bodies", "sent_timestamp"]

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
    split_requests: int = 0  # requests made to single out refused events (in ``requests``)
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
    order, each at most about *max_bytes* unless it holds a single larger event (a lease
    is sized to one request by the store already: this splits only what a user's store
    or a change of settings made larger)."""
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


@dataclass(frozen=True)
class TransportFactory:
    """How an emitter's workers send: :meth:`open` makes each worker its own
    :class:`Transport`. POST bodies are capped at :attr:`request_bytes`."""

    uri: str
    method: str
    settings: EmitterSettings

    @property
    def request_bytes(self) -> int:
        """``max_request_bytes``, and ``byte_limit`` if set: the most bytes in a POST."""
        settings = self.settings
        cap = settings.max_request_bytes
        return cap if settings.byte_limit is None else min(cap, settings.byte_limit)

    def open(self) -> Transport:
        settings = self.settings
        return Transport(self.uri, self.method, settings.request_timeout, settings.session,
                         self.request_bytes, settings.custom_retry_codes)

    def after_fork(self) -> None:
        """In a forked child: a user's session gets fresh connection pools, so that the
        child never writes on a keep-alive socket it shares with its parent."""
        if self.settings.session is not None:
            fresh_pools(self.settings.session)


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

    def encode(self, records: Sequence[Record], stm: str) -> Bodies:
        """The POST bodies of *records* sent at *stm*, for :meth:`start`."""
        return post_bodies(records, stm, self.max_request_bytes)

    def refuses(self, status: int) -> bool:
        """Whether *status* refuses the events of a request for good (not retried)."""
        return not is_success(status) and not should_retry(status, self.custom_retry_codes)

    def send(self, records: Sequence[Record], stm: str) -> SendResult:
        """Send *records* in order (one or more POSTs, or one GET each) until a failure
        that is retried; isolate refused events (see the module docstring)."""
        return self.start(records, stm).finish()

    def start(self, records: Sequence[Record], stm: str, bodies: Bodies | None = None,
              ) -> Exchange:
        """:meth:`send`, up to the last answer: with our own connection, a POST's last
        request is written and its answer left for :meth:`Exchange.finish` to read
        (:attr:`Exchange.waiting`); otherwise everything is done here. *bodies*: from
        :meth:`encode` (``stm`` is then theirs)."""
        result = SendResult()
        if self.method != "post":
            self._get_each(records, stm, result)
            return Exchange(self, result)
        if bodies is None:
            bodies = self.encode(records, stm)
        try:
            own = self.client if isinstance(self.client, ConnectionClient) else None
        except Exception as exc:  # a client that cannot be made: nothing was sent
            self._stopped(_Reply(NO_RESPONSE, error=_describe(exc)), result)
            return Exchange(self, result)
        start = 0
        for index, (count, body) in enumerate(bodies):
            span = (records, start, start + count, stm)
            if own is not None and index == len(bodies) - 1:
                result.requests += 1
                result.nbytes += len(body)
                try:
                    own.write("POST", body, None)
                except Exception as exc:
                    self._stopped(_no_response(exc), result)
                    return Exchange(self, result)
                return Exchange(self, result, own, span)
            if not self._post_span(*span, result, body):
                break
            start += count
        return Exchange(self, result)

    def _post_span(self, records: Sequence[Record], lo: int, hi: int, stm: str,
                   result: SendResult, body: bytes | None = None) -> bool:
        """POST ``records[lo:hi]`` and settle what it says; False when a failure that is
        retried stopped it (``result.done`` is then where it stopped)."""
        if body is None:
            body = post_body(records[lo:hi], stm)
        result.requests += 1
        result.nbytes += len(body)
        return self._answered(self._request("POST", body, None), records, lo, hi, stm, result)

    def _answered(self, reply: _Reply, records: Sequence[Record], lo: int, hi: int, stm: str,
                  result: SendResult) -> bool:
        """Settle ``records[lo:hi]`` by *reply* to their POST: delivered, split in halves
        (a refusal of several, or 413), refused for good (one), or stopped (False)."""
        status = reply.status
        if is_success(status):
            result.done = hi
            return True
        if hi - lo > 1 and status != NO_RESPONSE and (status == TOO_LARGE
                                                       or self.refuses(status)):
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
        self._stopped(reply, result)
        return False

    @staticmethod
    def _stopped(reply: _Reply, result: SendResult) -> None:
        result.status = reply.status
        result.error = reply.error if reply.error is not None else f"HTTP {reply.status}"
        result.retry_after = parse_retry_after(reply.retry_after)
        result.maybe_received = reply.maybe_received

    def _get_each(self, records: Sequence[Record], stm: str, result: SendResult) -> None:
        for index, record in enumerate(records):
            reply = self._request("GET", None, get_fields(record, stm))
            result.requests += 1
            if is_success(reply.status):
                result.done = index + 1
            elif not self._settle_failure(reply, index, result):
                return  # the collector is failing: do not hammer it with the rest

    def _request(self, method: str, body: bytes | None,
                 query: dict[str, str] | None) -> _Reply:
        """One request; every error becomes a :class:`_Reply` with ``status`` -1."""
        try:
            status, retry_after = self.client.request(method, body, query)
        except Exception as exc:  # urllib3/requests errors, or a user session's own
            return _no_response(exc)
        return _Reply(status, retry_after)


class Exchange:
    """One attempt under way (:meth:`Transport.start`): :attr:`waiting` while the answer to
    its last request is still to be read by :meth:`finish`. Finish it exactly once."""

    __slots__ = ("_client", "_result", "_span", "_transport")

    def __init__(self, transport: Transport, result: SendResult,
                 client: ConnectionClient | None = None,
                 span: tuple[Sequence[Record], int, int, str] | None = None) -> None:
        self._transport = transport
        self._result = result
        self._client = client
        self._span = span  # (records, lo, hi, stm) of the request whose answer is awaited

    @property
    def waiting(self) -> bool:
        """Whether the collector's answer to the last request is still to be read."""
        return self._client is not None

    def finish(self) -> SendResult:
        """Read the last answer if one is awaited (blocks up to the read timeout), settle
        it (splitting a refused request: more requests), and return what the attempt
        achieved. Never raises."""
        client, span = self._client, self._span
        if client is None or span is None:
            return self._result
        self._client = None
        try:
            status, retry_after = client.read()
        except Exception as exc:
            reply = _no_response(exc)
        else:
            reply = _Reply(status, retry_after)
        self._transport._answered(reply, *span, self._result)
        return self._result


def _no_response(exc: Exception) -> _Reply:
    return _Reply(NO_RESPONSE, error=_describe(exc), maybe_received=_maybe_received(exc))


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

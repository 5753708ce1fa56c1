"""HTTP transport: turns a batch of records into requests to the collector.

One :class:`Transport` per worker, each with its own client (:mod:`.clients`), made by the
emitter's :class:`TransportFactory`: the batch bodies (``payload_data``), one POST per body
or one GET per event, and what came of them. It knows nothing of the store or the engine.

An attempt is :meth:`Transport.send`, or in two steps :meth:`Transport.start` (every
request written, the last one's answer not read yet when the client allows it) and
:meth:`Exchange.finish`: the worker may do other work while the collector answers.

Never raises: every outcome is a :class:`SendResult`. Not locked: a transport belongs to
one worker; a factory is immutable and shared.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import requests
import urllib3

from .batch_json import records_json, wire_record
from .clients import (
    DEFAULT_TIMEOUT,
    USER_AGENT,
    Client,
    ConnectFailed,
    ConnectionClient,
    fresh_pools,
    new_client,
)
from .retry import NO_RESPONSE, is_success, parse_retry_after
from .settings import EmitterSettings
from .typing import PayloadDictList, RequestTimeout

__all__ = ["PAYLOAD_DATA_SCHEMA", "USER_AGENT", "Exchange", "SendResult", "Transport",
           "TransportFactory", "post_bodies", "sent_timestamp"]

logger = logging.getLogger("snowplow_threaded.transport")
_time_ns = time.time_ns  # the clock of stm (snowplow_threaded.testing fixes it)

PAYLOAD_DATA_SCHEMA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
_BODY_PREFIX = ('{"schema":"' + PAYLOAD_DATA_SCHEMA + '","data":').encode()


@dataclass
class SendResult:
    """What one request achieved. ``status`` is ``-1`` when no response came back."""

    status: int
    sent: int = 0  # events in requests answered 2xx
    failed: list[int] | None = None  # indexes of records not delivered (GET: per event)
    retry_after: float | None = None
    error: str | None = None
    nbytes: int = 0
    requests: int = 1
    # no response, but the request may have reached the collector (timeout or reset after
    # it was sent): a retry may deliver those events twice
    maybe_received: bool = False
    # the failed records were never sent: one of them cannot be encoded, so a retry would
    # fail the same way (they fail for good)
    unsendable: bool = False


def sent_timestamp() -> str:
    """``stm``: the send time in milliseconds (the reference truncates it to seconds)."""
    return str(_time_ns() // 1_000_000)


#: ``(event_count, body)`` per request, in order
Bodies = list[tuple[int, bytes]]


def post_bodies(records: PayloadDictList, stm: str, max_bytes: int) -> Bodies:
    """The ``payload_data`` request bodies for *records*, as ``(event_count, body)`` in
    order, each at most *max_bytes* unless it holds a single larger event. Sets ``stm``
    on each record (the send time of this attempt)."""
    for record in records:
        record["stm"] = stm
    data = _BODY_PREFIX + records_json(records) + b"}"
    if len(data) <= max_bytes or len(records) == 1:
        return [(len(records), data)]
    half = len(records) // 2
    return (post_bodies(records[:half], stm, max_bytes)
            + post_bodies(records[half:], stm, max_bytes))


@dataclass(frozen=True)
class TransportFactory:
    """How an emitter's workers send: :meth:`open` makes each worker its own
    :class:`Transport`. POST bodies are capped at ``max_request_bytes`` (and at
    ``byte_limit`` if set)."""

    uri: str
    method: str
    settings: EmitterSettings

    def open(self) -> Transport:
        settings = self.settings
        cap = settings.max_request_bytes
        if settings.byte_limit is not None:
            cap = min(cap, settings.byte_limit)
        return Transport(self.uri, self.method, settings.request_timeout, settings.session, cap)

    def after_fork(self) -> None:
        """In a forked child: a user's session gets fresh connection pools, so that the
        child never writes on a keep-alive socket it shares with its parent."""
        if self.settings.session is not None:
            fresh_pools(self.settings.session)


class Transport:
    def __init__(
        self,
        uri: str,
        method: str,
        timeout: RequestTimeout | None,
        session: requests.Session | None = None,
        max_request_bytes: int = 1_000_000,
    ) -> None:
        self.uri = uri
        self.max_request_bytes = max_request_bytes
        self.method = method
        self.timeout = DEFAULT_TIMEOUT if timeout is None else timeout
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

    def encode(self, records: PayloadDictList, stm: str) -> Bodies:
        """The POST bodies of *records* (sets their ``stm``), for :meth:`start`. Raises
        what the encoding raises (a value whose ``str()`` raises, from a user's store)."""
        return post_bodies(records, stm, self.max_request_bytes)

    def send(self, records: PayloadDictList, stm: str) -> SendResult:
        """Send *records* in order (one or more POSTs, or one GET each), stopping at the
        first failure: ``result.sent`` records from the start were delivered."""
        return self.start(records, stm).finish()

    def start(self, records: PayloadDictList, stm: str, bodies: Bodies | None = None,
              ) -> Exchange:
        """:meth:`send`, up to the last answer: with our own connection, a POST's last
        request is written and its answer left for :meth:`Exchange.finish` to read
        (:attr:`Exchange.waiting`); otherwise everything is done here. *bodies*: from
        :meth:`encode` (``stm`` is then theirs)."""
        if self.method != "post":
            return Exchange(self._get_each(records, stm))
        result = SendResult(200, requests=0)
        if bodies is None:
            try:
                bodies = self.encode(records, stm)
            except Exception as exc:
                return Exchange(self._unsendable(result, records, 0, exc))
        try:
            client = self.client
        except Exception as exc:  # a client that cannot be made: nothing was sent
            return Exchange(_failed(result, records, NO_RESPONSE, _describe(exc), None))
        own = client if isinstance(client, ConnectionClient) else None
        for index, (count, body) in enumerate(bodies):
            result.requests += 1
            result.nbytes += len(body)
            try:
                if own is not None and index == len(bodies) - 1:
                    own.write("POST", body, None)
                    return Exchange(result, records, own, count)
                status, retry_after = client.request("POST", body, None)
            except Exception as exc:  # urllib3/requests errors, or a user session's own
                return Exchange(_no_response(result, records, exc))
            if not _answered(result, records, count, status, retry_after):
                break
        return Exchange(result)

    @staticmethod
    def _unsendable(result: SendResult, records: PayloadDictList, index: int,
                    exc: Exception) -> SendResult:
        """*records* from *index* on fail for good: one of them cannot be encoded (say a
        user's EventStore handed back a value whose ``str()`` raises)."""
        logger.error("a batch of %d event(s) could not be encoded", len(records) - index,
                     exc_info=exc)
        result.status = NO_RESPONSE
        result.error = _describe(exc)
        result.failed = list(range(index, len(records)))
        result.unsendable = True
        return result

    def _get_each(self, records: PayloadDictList, stm: str) -> SendResult:
        result = SendResult(200, requests=0)
        failed: list[int] = []
        for index, record in enumerate(records):
            try:
                record["stm"] = stm
                query = wire_record(record)
            except Exception as exc:
                return self._unsendable(result, records, index, exc)
            result.requests += 1
            retry_after: str | None = None
            try:
                status, retry_after = self.client.request("GET", None, query)
            except Exception as exc:
                status = NO_RESPONSE
                result.error = _describe(exc)
                result.maybe_received = _maybe_received(exc)
            if 200 <= status < 300:
                result.sent += 1
            else:
                failed.append(index)
                result.status = status
                if status != NO_RESPONSE:
                    result.error = f"HTTP {status}"
                    after = parse_retry_after(retry_after)
                    if after is not None:
                        result.retry_after = after
                # the collector is failing: do not hammer it with the rest of the batch
                failed.extend(range(index + 1, len(records)))
                break
        if failed:
            result.failed = failed
        return result



class Exchange:
    """One attempt under way (:meth:`Transport.start`): :attr:`waiting` while the answer to
    its last request is still to be read by :meth:`finish`. Finish it exactly once."""

    __slots__ = ("_client", "_count", "_records", "_result")

    def __init__(self, result: SendResult, records: PayloadDictList | None = None,
                 client: ConnectionClient | None = None, count: int = 0) -> None:
        self._result = result
        self._records = records
        self._client = client
        self._count = count  # the events in the request whose answer is awaited

    @property
    def waiting(self) -> bool:
        """Whether the collector's answer to the last request is still to be read."""
        return self._client is not None

    def finish(self) -> SendResult:
        """Read the last answer if one is awaited (blocks up to the read timeout), and
        return what the attempt achieved. Never raises."""
        client, records = self._client, self._records
        if client is None or records is None:
            return self._result
        self._client = None
        try:
            status, retry_after = client.read()
        except Exception as exc:
            return _no_response(self._result, records, exc)
        _answered(self._result, records, self._count, status, retry_after)
        return self._result


def _answered(result: SendResult, records: PayloadDictList, count: int, status: int,
              retry_after: str | None) -> bool:
    """Record one POST's answer in *result*; False if it failed (the rest is not sent)."""
    if not is_success(status):
        _failed(result, records, status, f"HTTP {status}", parse_retry_after(retry_after))
        return False
    result.sent += count
    return True


def _no_response(result: SendResult, records: PayloadDictList, exc: Exception) -> SendResult:
    result.maybe_received = _maybe_received(exc)
    return _failed(result, records, NO_RESPONSE, _describe(exc), None)


def _failed(result: SendResult, records: PayloadDictList, status: int, error: str,
            retry_after: float | None) -> SendResult:
    """The records from the first one not sent on fail, with *status* and *error*."""
    result.status = status
    result.error = error
    result.retry_after = retry_after
    result.failed = list(range(result.sent, len(records)))
    return result


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

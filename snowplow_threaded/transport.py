"""HTTP transport: turns a batch of encoded events into requests to the collector.

One :class:`Transport` per worker thread, each with its own client
(:mod:`.clients`): the batch bodies (``payload_data``), one POST per body or one GET per
event, and what came of them.

Never raises: every outcome is a :class:`SendResult`. Not locked: a transport belongs to
one worker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
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
    new_client,
)
from .retry import NO_RESPONSE, is_success, parse_retry_after
from .typing import PayloadDictList, RequestTimeout

__all__ = ["PAYLOAD_DATA_SCHEMA", "USER_AGENT", "SendResult", "Transport", "post_bodies",
           "sent_timestamp"]

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

    @property
    def can_overlap(self) -> bool:
        """Whether :meth:`send` can run other work while the collector answers (POST through
        our own connection)."""
        try:
            return self.method == "post" and isinstance(self.client, ConnectionClient)
        except Exception:  # reported by send(), where making the client fails again
            return False

    def prepare(self, records: PayloadDictList, stm: str) -> Bodies:
        """The request bodies of *records* (sets their ``stm``), for :meth:`send`."""
        return post_bodies(records, stm, self.max_request_bytes)

    def send(self, records: PayloadDictList, stm: str, bodies: Bodies | None = None,
             meanwhile: Callable[[], object] | None = None) -> SendResult:
        """Send *records* in order (one or more POSTs, or one GET each), stopping at the
        first failure: ``result.sent`` records from the start were delivered. POST:
        *bodies* from :meth:`prepare` (``stm`` is then theirs), and *meanwhile* run while
        the collector answers the last request (if :attr:`can_overlap`; it must not
        raise)."""
        if self.method == "post":
            if bodies is None:
                try:
                    bodies = self.prepare(records, stm)
                except Exception as exc:
                    return self._unsendable(SendResult(NO_RESPONSE, requests=0), records, 0, exc)
            return self._post_all(records, bodies, meanwhile)
        return self._get_each(records, stm)

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

    def _post_all(self, records: PayloadDictList, bodies: Bodies,
                  meanwhile: Callable[[], object] | None) -> SendResult:
        result = SendResult(200, requests=0)
        try:
            client = self.client
        except Exception as exc:  # a client that cannot be made: nothing was sent
            return self._failed(result, records, NO_RESPONSE, _describe(exc), None)
        own = client if meanwhile is not None and isinstance(client, ConnectionClient) else None
        for index, (count, body) in enumerate(bodies):
            result.requests += 1
            result.nbytes += len(body)
            try:
                if own is not None and index == len(bodies) - 1:
                    status, retry_after = own.request("POST", body, None, meanwhile)
                else:
                    status, retry_after = client.request("POST", body, None)
            except Exception as exc:  # urllib3/requests errors, or a user session's own
                result.maybe_received = _maybe_received(exc)
                return self._failed(result, records, NO_RESPONSE, _describe(exc), None)
            if not is_success(status):
                return self._failed(result, records, status, f"HTTP {status}",
                                    parse_retry_after(retry_after))
            result.sent += count
        return result

    @staticmethod
    def _failed(result: SendResult, records: PayloadDictList, status: int, error: str,
                retry_after: float | None) -> SendResult:
        result.status = status
        result.error = error
        result.retry_after = retry_after
        result.failed = list(range(result.sent, len(records)))
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

"""HTTP transport: turns a batch of encoded events into requests to the collector.

One :class:`Transport` per worker thread (each with its own ``requests.Session`` and
keep-alive connection) unless the user passed a ``session``, which the workers then share
(``requests`` sessions are safe to share for sending). Never raises: every outcome is a
:class:`SendResult`. Not locked: a transport belongs to one worker.
"""

from __future__ import annotations

import http.cookiejar
import json
import logging
import os
import time
from dataclasses import dataclass

import requests
import urllib3
from requests.adapters import HTTPAdapter

from ._version import __version__
from .retry import NO_RESPONSE, is_success, parse_retry_after
from .typing import PayloadDictList, RequestTimeout

logger = logging.getLogger("snowplow_threaded.transport")

PAYLOAD_DATA_SCHEMA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
_BODY_PREFIX = '{"schema":"' + PAYLOAD_DATA_SCHEMA + '","data":'
# compact ASCII JSON: len() of the text is its size in bytes
_encode = json.JSONEncoder(separators=(",", ":")).encode
DEFAULT_TIMEOUT: tuple[float, float] = (5.0, 10.0)
USER_AGENT = f"snowplow-threaded/{__version__} python-requests/{requests.__version__}"
POST_HEADERS = {"Content-Type": "application/json; charset=utf-8"}


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


def new_session(uri: str = "") -> requests.Session:
    """A session for one worker: keep-alive pool of one, no retries inside urllib3, and a
    cookie jar that stores nothing (a collector cookie must never be shared by users).

    Proxy (``HTTP(S)_PROXY``/``NO_PROXY``) and CA-bundle (``REQUESTS_CA_BUNDLE``,
    ``CURL_CA_BUNDLE``) settings are read from the environment once, here, instead of on
    every request (``trust_env`` costs several ``stat`` calls and environment scans per
    request); ``~/.netrc`` is not consulted."""
    session = requests.Session()
    session.trust_env = False
    if uri:
        session.proxies.update(requests.utils.get_environ_proxies(uri))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=1, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    return session


def sent_timestamp() -> str:
    """``stm``: the send time in milliseconds (the reference truncates it to seconds)."""
    return str(time.time_ns() // 1_000_000)


def post_bodies(records: PayloadDictList, stm: str, max_bytes: int) -> list[tuple[int, bytes]]:
    """The ``payload_data`` request bodies for *records*, as ``(event_count, body)`` in
    order, each at most *max_bytes* unless it holds a single larger event. Sets ``stm``
    on each record (the send time of this attempt)."""
    for record in records:
        record["stm"] = stm
    body = _BODY_PREFIX + _encode(records) + "}"
    if len(body) <= max_bytes or len(records) == 1:
        return [(len(records), body.encode("ascii"))]
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
        self._session: requests.Session | None = session

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            self._session = new_session(self.uri)
        return self._session

    def close(self) -> None:
        """Close our own session (a user's session is left to its owner)."""
        if self._session is not None and self._session is not self._user_session:
            try:
                self._session.close()
            except Exception:  # pragma: no cover - closing sockets should not fail
                logger.debug("closing session failed", exc_info=True)
        self._session = None if self._user_session is None else self._user_session

    def send(self, records: PayloadDictList, stm: str) -> SendResult:
        """Send *records* in order (one or more POSTs, or one GET each), stopping at the
        first failure: ``result.sent`` records from the start were delivered."""
        if self.method == "post":
            return self._post_all(records, stm)
        return self._get_each(records, stm)

    def _post_all(self, records: PayloadDictList, stm: str) -> SendResult:
        result = SendResult(200, requests=0)
        headers = POST_HEADERS
        if self._user_session is not None:
            headers = {**POST_HEADERS, "User-Agent": USER_AGENT}
        for count, body in post_bodies(records, stm, self.max_request_bytes):
            result.requests += 1
            result.nbytes += len(body)
            try:
                resp = self.session.post(self.uri, data=body, headers=headers,
                                         timeout=self.timeout, allow_redirects=False)
            except Exception as exc:  # requests.RequestException, or a user session's own
                result.maybe_received = _maybe_received(exc)
                return self._failed(result, records, NO_RESPONSE, _describe(exc), None)
            status = resp.status_code
            resp.close()
            if not is_success(status):
                return self._failed(result, records, status, f"HTTP {status}",
                                    parse_retry_after(resp.headers.get("Retry-After")))
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
            record["stm"] = stm
            params = record
            result.requests += 1
            try:
                resp = self.session.get(self.uri, params=params, timeout=self.timeout,
                                        allow_redirects=False,
                                        headers={"User-Agent": USER_AGENT})
                status = resp.status_code
                resp.close()
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
                    after = parse_retry_after(resp.headers.get("Retry-After"))
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
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return False
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)  # requests wraps urllib3's MaxRetryError
    return not isinstance(reason, urllib3.exceptions.ConnectTimeoutError)  # + NewConnection


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"

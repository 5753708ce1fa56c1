"""HTTP clients: one connection's worth of requests to the collector.

* :class:`ConnectionClient` (the default): one keep-alive HTTP/1.1 socket, TLS verified
  against the CA bundle ``requests`` would use. It earns its place over a bare
  ``urllib3.HTTPConnectionPool``: the senders spend less CPU per delivered event, and a
  send next to tracking threads takes less time, because it makes fewer socket calls
  (each one hands the GIL over; ``python -m stress.ab``, ``stress/results/hand_written.md``).
  Its ``write``/``read`` halves let a worker work while the collector answers.
* :class:`SessionClient`: a ``requests.Session``, the user's (shared by the workers:
  sessions are safe to share for sending) or ours when a proxy from the environment
  applies.

A client raises on transport errors (no response) and returns ``(status, Retry-After)``
otherwise. Not locked: a client belongs to one worker's :class:`~.transport.Transport`.
"""

from __future__ import annotations

import http.client
import http.cookiejar
import os
import select
import socket
import ssl
import time
from typing import Any, Protocol
from urllib.parse import quote, urlencode, urlsplit

import requests
from requests.adapters import HTTPAdapter

from ._version import __version__
from .typing import RequestTimeout

DEFAULT_TIMEOUT: tuple[float, float] = (5.0, 10.0)
USER_AGENT = f"snowplow-threaded/{__version__} python-requests/{requests.__version__}"
POST_HEADERS = {"Content-Type": "application/json; charset=utf-8"}


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


class Client(Protocol):
    """One connection's worth of HTTP: ``request`` returns ``(status, Retry-After)`` and
    raises on transport errors (no response)."""

    def request(self, method: str, body: bytes | None, query: dict[str, str] | None,
                ) -> tuple[int, str | None]: ...

    def close(self) -> None: ...


def _timeouts(timeout: RequestTimeout) -> tuple[float, float]:
    if isinstance(timeout, tuple):
        return float(timeout[0]), float(timeout[1])
    return float(timeout), float(timeout)


def ca_bundle() -> str:
    """The CA bundle ``requests`` would verify with: ``REQUESTS_CA_BUNDLE`` or
    ``CURL_CA_BUNDLE`` if set, else certifi's."""
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    return bundle or str(requests.utils.DEFAULT_CA_BUNDLE_PATH)


class ConnectionClient:
    """One keep-alive HTTP/1.1 connection to the collector: no retries, no redirects, no
    cookies, TLS verified against ``ca_bundle()`` with host-name checks.

    Each request is written with one ``sendall`` (head and body together) and its answer
    parsed by ``http.client.HTTPResponse``. Every socket call hands the GIL over, and
    under load each hand-back can cost the sender a switch interval (5 ms by default) behind busy
    application threads, so a request makes as few socket calls as possible: one send,
    and one receive for a typical answer (``http.client.HTTPConnection`` sends head and
    body separately).

    A connection idle in the keep-alive state that the collector has closed is detected
    before reuse and replaced, as urllib3's pool does: after a second or more of idleness
    by a zero-timeout poll (a closed socket, or bytes nobody asked for, such as a 408 sent
    before closing); between back-to-back requests, on Linux, from the TCP state (a
    ``getsockopt``, which keeps the GIL). The request is never re-sent after it was
    written.
    """

    def __init__(self, uri: str, timeout: RequestTimeout) -> None:
        parts = urlsplit(uri)
        # non-ASCII path characters percent-encoded as UTF-8, as requests does
        self._path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
        self._connect_timeout, self._read_timeout = _timeouts(timeout)
        host = parts.hostname or ""
        self._host = host
        self._https = parts.scheme == "https"
        self._port = parts.port or (443 if self._https else 80)
        self._sock: socket.socket | None = None
        self._method = "POST"  # of the request written last
        self._last_used = 0.0  # time.monotonic() at the end of the last exchange
        self._context: ssl.SSLContext | None = None
        authority = f"[{host}]" if ":" in host else host
        if parts.port is not None and parts.port != (443 if self._https else 80):
            authority += f":{parts.port}"
        try:
            authority.encode("ascii")
        except UnicodeEncodeError:
            authority = authority.encode("idna").decode("ascii")
        common = (f"Host: {authority}\r\nUser-Agent: {USER_AGENT}\r\n"
                  "Accept-Encoding: identity\r\n")
        self._post_head = (f"POST {self._path} HTTP/1.1\r\n{common}"
                           "Content-Type: application/json; charset=utf-8\r\n"
                           "Content-Length: ").encode("ascii")
        self._get_common = common.encode("ascii")

    def _connection(self) -> socket.socket:
        sock = self._sock
        if sock is not None and _dropped(sock, time.monotonic() - self._last_used > _IDLE):
            self.close()
            sock = None
        if sock is None:
            sock = socket.create_connection((self._host, self._port),
                                            timeout=self._connect_timeout)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                # room for a whole request, so that sendall() is one send() call (one GIL
                # hand-back) instead of one per default-sized buffer's worth
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SEND_BUFFER)
                if self._https:
                    if self._context is None:
                        self._context = ssl.create_default_context(cafile=ca_bundle())
                    sock = self._context.wrap_socket(sock, server_hostname=self._host)
                sock.settimeout(self._read_timeout)
            except BaseException:
                sock.close()
                raise
            self._sock = sock
        return sock

    def request(self, method: str, body: bytes | None, query: dict[str, str] | None,
                ) -> tuple[int, str | None]:
        """Send one request and read its answer."""
        self.write(method, body, query)
        return self.read()

    def write(self, method: str, body: bytes | None, query: dict[str, str] | None) -> None:
        """Send one request; its answer is for :meth:`read`, which must come next.
        Raises :class:`ConnectFailed` if no connection could be made (nothing was sent)."""
        try:
            sock = self._connection()
        except OSError as exc:
            raise ConnectFailed(exc) from exc
        try:
            if method == "POST":
                payload = body or b""
                sock.sendall(b"".join((self._post_head, str(len(payload)).encode("ascii"),
                                       b"\r\n\r\n", payload)))
            else:
                target = self._path + "?" + urlencode(query or {})
                sock.sendall(f"GET {target} HTTP/1.1\r\n".encode("ascii")
                             + self._get_common + b"\r\n")
            self._method = method
        except BaseException:
            self.close()  # never reuse a connection in an unknown state
            raise

    def read(self) -> tuple[int, str | None]:
        """Read the answer to the request :meth:`write` sent: ``(status, Retry-After)``."""
        sock = self._sock
        if sock is None:
            raise ConnectionError("no request is waiting for an answer")
        try:
            resp = http.client.HTTPResponse(sock, method=self._method)
            try:
                resp.begin()
                resp.read()  # the body, so the connection can be reused
            finally:
                resp.close()
            if resp.will_close:
                self.close()
            self._last_used = time.monotonic()
            return resp.status, resp.getheader("Retry-After")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._sock is not None:
            sock, self._sock = self._sock, None
            sock.close()


class ConnectFailed(OSError):
    """The connection to the collector could not be made: nothing was sent."""

    def __init__(self, cause: OSError) -> None:
        super().__init__(f"cannot connect to the collector: {cause}")
        self.cause = cause


_SEND_BUFFER = 1 << 20  # bytes (Linux doubles it, within net.core.wmem_max)
_IDLE = 1.0  # seconds without a request after which reuse is checked by a poll
_TCP_INFO = getattr(socket, "TCP_INFO", None)  # Linux
_TCP_ESTABLISHED = 1  # tcp_info.tcpi_state (linux/tcp_states.h)


def _dropped(sock: socket.socket, idle: bool) -> bool:
    """True if a keep-alive socket must not be reused. *idle* (or where Linux's TCP_INFO is
    missing): a zero-timeout poll says whether it is readable (closed by the peer, or
    carrying bytes nobody asked for). Otherwise any TCP state but ESTABLISHED (e.g.
    CLOSE_WAIT after the peer's FIN), read by a ``getsockopt`` that keeps the GIL."""
    try:
        if not idle and _TCP_INFO is not None:
            return sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 1)[0] != _TCP_ESTABLISHED
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class SessionClient:
    """Requests through a ``requests.Session`` (the user's, or one of ours when a proxy
    applies): redirects not followed."""

    def __init__(self, uri: str, timeout: RequestTimeout, session: requests.Session,
                 owned: bool) -> None:
        self._uri = uri
        self._timeout = timeout
        self._session = session
        self._owned = owned
        # a user's session may carry its own User-Agent: ours names this library
        self._post_headers = {**POST_HEADERS, "User-Agent": USER_AGENT}

    def request(self, method: str, body: bytes | None, query: dict[str, str] | None,
                ) -> tuple[int, str | None]:
        # verify= passed explicitly: requests otherwise lets REQUESTS_CA_BUNDLE from the
        # environment override the session's own CA setting (psf/requests#3829)
        verify = self._session.verify
        if method == "POST":
            resp = self._session.post(self._uri, data=body, headers=self._post_headers,
                                      timeout=self._timeout, allow_redirects=False,
                                      verify=verify)
        else:
            resp = self._session.get(self._uri, params=query, timeout=self._timeout,
                                     allow_redirects=False, verify=verify,
                                     headers={"User-Agent": USER_AGENT})
        status = resp.status_code
        retry_after = resp.headers.get("Retry-After")
        resp.close()
        return status, retry_after

    def close(self) -> None:
        if self._owned:
            self._session.close()


def new_client(uri: str, timeout: RequestTimeout, session: requests.Session | None,
               ) -> Client:
    """The client a worker sends with: the user's session, a session of ours when the
    environment sets a proxy for *uri*, else our own keep-alive socket
    (:class:`ConnectionClient`)."""
    if session is not None:
        return SessionClient(uri, timeout, session, owned=False)
    if requests.utils.get_environ_proxies(uri):
        return SessionClient(uri, timeout, new_session(uri), owned=True)
    return ConnectionClient(uri, timeout)


def fresh_pools(session: requests.Session) -> None:
    """Give a user's session fresh connection pools (in a forked child, so that it never
    writes on a keep-alive socket it shares with its parent). The old pools are dropped
    unclosed: closing them could disturb the parent's connections."""
    for adapter in list(session.adapters.values()):
        if isinstance(adapter, HTTPAdapter):
            adapter.proxy_manager = {}
            settings: Any = adapter  # private settings, stable since requests 2.0
            adapter.init_poolmanager(
                settings._pool_connections, settings._pool_maxsize, block=settings._pool_block
            )

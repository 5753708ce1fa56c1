"""The libraries a hand-written part of the sender would be replaced by, for
:mod:`stress.ab` (``--b tree+urllib3_pool``, ``--b tree+json_dumps``).

* ``urllib3_pool``: every worker sends through a bare ``urllib3.HTTPConnectionPool`` of one
  kept-alive connection (what Sentry's transport sends with; ``urllib3`` is already a
  dependency) instead of :class:`snowplow_threaded.clients.ConnectionClient`: no retries, no
  redirects, the same headers, TLS verified against the same CA bundle.
* ``no_lease_ahead``: a worker never leases and encodes its next batch while the collector
  answers (so that the two above, which cannot, are compared with the same engine).
* ``json_dumps``: each POST body's ``data`` array is ``json.dumps`` of the records (compact
  separators, non-ASCII kept as text: the same bytes) instead of the templates of
  ``snowplow_threaded.batch_json.records_json`` (revisions before records were made on
  the caller's thread as JSON, ``snowplow_threaded.record``: there is no sender-side
  encoding left to swap).

:func:`apply` patches the library in a measurement child (:mod:`stress.child`) before it
builds a tracker. Nothing here is used by the library itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import urllib3


class PoolClient:
    """One connection's worth of requests through a bare ``urllib3`` pool (``maxsize=1``):
    the :class:`snowplow_threaded.clients.Client` protocol."""

    def __init__(self, uri: str, timeout: Any) -> None:
        from snowplow_threaded.clients import USER_AGENT, ca_bundle

        parts = urlsplit(uri)
        self._path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
        connect, read = (timeout if isinstance(timeout, tuple) else (timeout, timeout))
        https = parts.scheme == "https"
        settings: dict[str, Any] = {
            "maxsize": 1, "block": False, "retries": False,
            "timeout": urllib3.Timeout(connect=float(connect), read=float(read)),
            "headers": {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
        }
        host, port = parts.hostname or "", parts.port or (443 if https else 80)
        self._pool: urllib3.HTTPConnectionPool = (
            urllib3.HTTPSConnectionPool(host, port, cert_reqs="CERT_REQUIRED",
                                        ca_certs=ca_bundle(), **settings)
            if https else urllib3.HTTPConnectionPool(host, port, **settings))

    def request(self, method: str, body: bytes | None, query: dict[str, str] | None,
                ) -> tuple[int, str | None]:
        if method == "POST":
            resp = self._pool.urlopen(
                "POST", self._path, body=body, redirect=False, retries=False,
                headers={**self._pool.headers,
                         "Content-Type": "application/json; charset=utf-8"})
        else:
            resp = self._pool.urlopen("GET", self._path + "?" + urlencode(query or {}),
                                      redirect=False, retries=False)
        return resp.status, resp.headers.get("Retry-After")

    def close(self) -> None:
        self._pool.close()


_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def dumps_records(records: Sequence[dict[str, str]]) -> bytes:
    """The ``data`` array of a POST body by ``json.dumps`` (compact, non-ASCII as text)."""
    return _dumps(records).encode("utf-8")


def _use_pool() -> None:
    import snowplow_threaded.transport as transport

    made: Callable[..., Any] = transport.new_client

    def new_client(uri: str, timeout: Any, session: Any) -> Any:
        if session is not None:  # a user's session is sent with as before
            return made(uri, timeout, session)
        return PoolClient(uri, timeout)

    transport.new_client = new_client  # type: ignore[assignment]


def _use_dumps() -> None:
    import snowplow_threaded.transport as transport

    if not hasattr(transport, "records_json"):
        raise RuntimeError("json_dumps: this revision has no sender-side encoding to swap")
    transport.records_json = dumps_records  # type: ignore[attr-defined]


def _no_lease_ahead() -> None:
    try:
        from snowplow_threaded.dispatcher import Dispatcher
    except ImportError:  # before f845239: the worker leased ahead where this said so
        import snowplow_threaded.transport as transport

        transport.Transport.can_overlap = property(  # type: ignore[attr-defined]
            lambda self: False)
        return
    Dispatcher.lease_now = lambda self, worker: None  # type: ignore[method-assign]


VARIANTS: dict[str, Callable[[], None]] = {"urllib3_pool": _use_pool,
                                           "json_dumps": _use_dumps,
                                           "no_lease_ahead": _no_lease_ahead}


def apply(names: str) -> None:
    """Apply each variant of *names* (``+``-separated) to the library imported here."""
    for name in filter(None, names.split("+")):
        VARIANTS[name]()

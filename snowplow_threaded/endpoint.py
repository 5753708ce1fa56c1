"""Collector endpoint parsing: every accepted form, and a ``ValueError`` for the rest."""

from __future__ import annotations

import ipaddress
import os
import re
import sys
import warnings
from urllib.parse import urlsplit

from .contracts import one_of

POST_PATH = "/com.snowplowanalytics.snowplow/tp2"
GET_PATH = "/i"
PROTOCOLS = ("http", "https")
METHODS = ("get", "post")

_BAD_CHARS = re.compile(r"[\s\x00-\x1f\x7f]")
_HOST = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.\-]+)$")
_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def collector_uri(
    endpoint: str,
    protocol: str = "https",
    port: int | None = None,
    method: str = "post",
) -> str:
    """The full collector URI for *endpoint*.

    Accepted: a bare host (``collector.example.com``), ``host:port``, and
    ``http(s)://host[:port][/path]``; *protocol* applies to the bare forms and *port*
    overrides the URL's port. A path is a prefix: ``https://h/x`` posts to
    ``https://h/x/com.snowplowanalytics.snowplow/tp2``.

    Raises ``ValueError`` for an empty endpoint, another scheme, whitespace or control
    characters (CR/LF), user info, a query or fragment, a bad host or port.
    """
    one_of(protocol, PROTOCOLS, "protocol")
    one_of(method, METHODS, "method")
    if not isinstance(endpoint, str):
        raise TypeError(f"endpoint must be a string, got {type(endpoint).__name__}")
    if not endpoint:
        raise ValueError("endpoint must not be empty")
    if _BAD_CHARS.search(endpoint):
        raise ValueError(f"endpoint contains whitespace or control characters: {endpoint!r}")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int)
                             or not 0 < port < 65536):
        raise ValueError(f"port must be an int from 1 to 65535, got {port!r}")
    text = endpoint
    if "://" in text:
        scheme = text.split("://", 1)[0].lower()
        if scheme not in PROTOCOLS:
            raise ValueError(f"endpoint scheme must be http or https, got {endpoint!r}")
        protocol = scheme
    else:
        text = f"{protocol}://{text}"
    try:
        parts = urlsplit(text)
        url_port = parts.port
    except ValueError as exc:
        raise ValueError(f"invalid endpoint {endpoint!r}: {exc}") from exc
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ValueError(f"endpoint must not contain user info: {endpoint!r}")
    if parts.query or parts.fragment or "?" in text or "#" in text:
        raise ValueError(f"endpoint must not contain a query or fragment: {endpoint!r}")
    host = parts.netloc.rsplit(":", 1)[0] if url_port is not None else parts.netloc
    if not host or not _HOST.match(host) or host.startswith((".", "-")):
        raise ValueError(f"endpoint has no valid host: {endpoint!r}")
    if url_port is not None and url_port == 0:
        raise ValueError(f"endpoint port must be from 1 to 65535: {endpoint!r}")
    effective_port = port if port is not None else url_port
    netloc = host if effective_port is None else f"{host}:{effective_port}"
    prefix = parts.path.rstrip("/")
    return f"{protocol}://{netloc}{prefix}{GET_PATH if method == 'get' else POST_PATH}"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` (and ``*.localhost``) and loopback addresses (127.0.0.0/8,
    ``::1``, bracketed or not)."""
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def warn_if_https_by_default(endpoint: str) -> None:
    """Warn (``UserWarning``) when *endpoint* has no scheme and names this machine.

    Without a scheme an endpoint is sent over HTTPS, as in the reference, and a collector
    on this machine (the embedded one, Snowplow Micro) usually serves plain HTTP: every
    send would then fail the TLS handshake. The warning is attributed to the first caller
    outside this package (the line that built the emitter or the tracker).
    """
    if not isinstance(endpoint, str) or "://" in endpoint:
        return
    try:
        host = urlsplit(f"https://{endpoint}").hostname
    except ValueError:
        return
    if host is None or not is_loopback(host):
        return
    frame, level = sys._getframe(0), 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    warnings.warn(f"endpoint {endpoint!r} has no scheme, so events go to "
                  f"https://{endpoint}; a collector on this machine usually serves plain "
                  f"HTTP: write 'http://{endpoint}' (or 'https://{endpoint}' to keep HTTPS "
                  "without this warning)", UserWarning, stacklevel=level)

"""Who may use the Micro API (``/micro/...``): a policy against other web sites.

The tracker routes take events from any site, as a collector must. The Micro API is for
the developer and their tests, and a page on another site must neither read it nor reset
it through the user's browser:

* **Host check** (against DNS rebinding, where a hostile name is made to resolve to
  127.0.0.1 so that the browser treats the collector as that site): the ``Host`` of a
  ``/micro`` request must be an IP address, ``localhost`` (or a name under
  ``.localhost``), the address the collector listens on, or a name allowed with
  ``allowed_hosts`` (``--allow-host``; ``*`` allows any, for remote use behind a name).
  A rebinding attack can only send a name it controls, never an IP address. Requests
  without ``Host`` (HTTP/1.0) are not from a browser and pass.
* **Cross-site check** for the routes that change state (``/micro/reset``): refused when
  the browser says the request comes from another site (``Sec-Fetch-Site: cross-site``) or
  its ``Origin`` names another host (``null`` included). Loopback names count as one site,
  so a page of your own app on ``localhost:3000`` may reset a collector on
  ``127.0.0.1:9090``. Clients that are not browsers send neither header and pass.

Refusals are ``403`` with the reason. Pure functions; safe from any thread.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from .http_types import Request, Response

__all__ = ["AccessPolicy"]

_STATE_CHANGING = frozenset({"/micro/reset"})


class AccessPolicy:
    """The policy for a collector listening on *listen_host*, with the extra host names
    *allowed_hosts* (``"*"``: any)."""

    def __init__(self, listen_host: str, allowed_hosts: Iterable[str] = ()) -> None:
        names = {_normal(name) for name in allowed_hosts}
        self.any_host = "*" in names
        self.allowed = frozenset(names | {_normal(listen_host)})

    def refusal(self, request: Request) -> Response | None:
        """A 403 for a ``/micro`` request the policy refuses, else None."""
        host = request.headers.get("host")
        if host is not None and not self.host_allowed(_host_of(host)):
            return _refuse(f"Host {host[:100]!r} is not this collector's address; to serve "
                           f"the Micro API under that name, start the collector with "
                           f"--allow-host {_host_of(host)[:100] or 'NAME'} "
                           f"(allowed_hosts=[...] from Python)")
        if request.path.rstrip("/") in _STATE_CHANGING:
            reason = self.cross_site(request, _host_of(host) if host is not None else None)
            if reason is not None:
                return _refuse(f"{request.path} changes the collector's state and is refused "
                               f"to other web sites ({reason})")
        return None

    def host_allowed(self, host: str) -> bool:
        if self.any_host or host in self.allowed or _loopback_name(host):
            return True
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return False
        return True

    def cross_site(self, request: Request, host: str | None) -> str | None:
        """Why *request* comes from another site, or None."""
        headers = request.headers
        origin = headers.get("origin")
        if origin is not None:
            try:
                origin_host = _normal(urlsplit(origin).hostname or "")
            except ValueError:
                origin_host = ""
            if origin == "null" or not origin_host:
                return f"Origin {origin[:100]!r}"
            if not _same_site(origin_host, host):
                return f"Origin {origin[:100]!r}"
            return None
        if headers.get("sec-fetch-site", "").lower() == "cross-site":
            return "Sec-Fetch-Site: cross-site"
        return None


def _refuse(reason: str) -> Response:
    return Response(403, (reason + "\n").encode("utf-8"), "text/plain; charset=utf-8")


def _normal(host: str) -> str:
    return host.strip().lower().rstrip(".").strip("[]")


def _host_of(host_header: str) -> str:
    """The host of a ``Host`` value, without its port (and without the brackets of an IPv6
    address)."""
    value = host_header.strip()
    if value.startswith("["):
        return _normal(value.partition("]")[0])
    name, _, port = value.rpartition(":")
    return _normal(name if name and port.isdigit() else value)


def _loopback_name(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _same_site(origin_host: str, host: str | None) -> bool:
    return origin_host == host or (_loopback_name(origin_host)
                                   and (host is None or _loopback_name(host)))

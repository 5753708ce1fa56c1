"""Framework-independent pieces of the web integrations (Flask, Django).

* :class:`TrustedProxies` — which ``X-Forwarded-For`` entries to believe, and the client
  IP that follows from them.
* :func:`request_subject` / :func:`with_subject` — the per-request :class:`Subject`, applied
  as an *event* subject: request-local, never a change to the tracker's shared subject.
* :func:`request_event` / :func:`page_view_event` — the automatic per-request events.
"""

from __future__ import annotations

import copy
import functools
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from ..events import Event, PageView, SelfDescribing
from ..self_describing_json import SelfDescribingJson
from ..subject import Subject
from . import schemas

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Longest path sent in a request event (the schema's ``maxLength``).
MAX_PATH = 2048
_MAX_METHOD = 16
_BRACKETED = re.compile(r"^\[([0-9A-Fa-f:.]+)\](?::\d+)?$")
_V4_WITH_PORT = re.compile(r"^(\d{1,3}(?:\.\d{1,3}){3}):\d+$")

E = TypeVar("E", bound=Event)


def parse_ip(text: str | None) -> IPAddress | None:
    """*text* as an IP address, or None if it is not one. Accepts the forms proxies write:
    ``1.2.3.4``, ``1.2.3.4:5678``, ``::1``, ``[::1]:80``; IPv4-mapped IPv6 addresses
    (``::ffff:1.2.3.4``) are returned as IPv4. Results are cached (bounded LRU): the same
    clients and proxies come back request after request."""
    if not text:
        return None
    return _parse_ip(text)


@functools.lru_cache(maxsize=4096)
def _parse_ip(text: str) -> IPAddress | None:
    text = text.strip()
    match = _BRACKETED.match(text) or _V4_WITH_PORT.match(text)
    if match:
        text = match.group(1)
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True)
class TrustedProxies:
    """How far to believe ``X-Forwarded-For`` (XFF).

    Each proxy appends the address it received the request from to XFF, so only the
    entries appended by *your* proxies can be trusted; anything to their left may have been
    sent by the client. Two ways to say which are yours:

    * ``hops=N``: exactly N proxies stand in front of the application. The client is the
      N-th entry from the right. If XFF has fewer than N entries the header is ignored and
      the peer address (``REMOTE_ADDR``) is used: a request that did not come through the
      proxies cannot be trusted.
    * ``networks``: the peer and XFF entries are walked from the right while they lie in
      one of these networks; the first address outside them is the client. An untrusted
      peer means XFF is ignored. Use this when the number of hops varies.

    With neither (the default) XFF is ignored. An entry that is not an IP address stops the
    walk at the last valid address to its right. Results are normalised IP strings.
    """

    hops: int = 0
    networks: tuple[IPNetwork, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.hops, bool) or not isinstance(self.hops, int) or self.hops < 0:
            raise ValueError(f"proxy hops must be an int >= 0, got {self.hops!r}")
        if self.hops and self.networks:
            raise ValueError("give either a number of proxy hops or trusted networks, not both")

    @classmethod
    def parse(cls, value: object) -> TrustedProxies:
        """From a setting: None/0 (trust nothing), an int or a string of ASCII digits
        (hops: ``"1"``, as read from an environment variable), or a string (comma-separated)
        or sequence of strings, each an IP address or CIDR network (``"10.0.0.0/8"``).
        Raises ``TypeError``/``ValueError`` for anything else."""
        if value is None:
            return cls()
        if isinstance(value, TrustedProxies):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return cls(hops=value)
        items: Sequence[object]
        if isinstance(value, str):
            digits = value.strip()
            if digits.isascii() and digits.isdigit():  # never an address: "1" is hops
                return cls(hops=int(digits))
            items = [part for part in value.split(",") if part.strip()]
        elif isinstance(value, (list, tuple, set, frozenset)):
            items = list(value)
        else:
            raise TypeError("trusted proxies must be a number of hops or a list of networks, "
                            f"got {type(value).__name__}")
        networks = []
        for item in items:
            if not isinstance(item, str):
                raise TypeError(f"trusted proxy network must be a string, got {item!r}")
            try:
                networks.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError as exc:
                raise ValueError(f"not an IP address or network: {item!r} (trusted proxies "
                                 "are a number of proxy hops, such as 1 or '1', or IP "
                                 "addresses and networks)") from exc
        return cls(networks=tuple(networks))

    def trusts(self, address: IPAddress) -> bool:
        return any(address.version == net.version and address in net for net in self.networks)

    def client_ip(self, remote_addr: str | None, forwarded_for: str | None) -> str | None:
        """The client's IP address from the peer address and the XFF header value (several
        XFF headers joined by commas, as WSGI servers do); None if neither gives one."""
        peer = parse_ip(remote_addr)
        if not forwarded_for or (not self.hops and not self.networks):
            return None if peer is None else str(peer)
        entries = [part.strip() for part in forwarded_for.split(",")]
        if self.hops:
            if len(entries) < self.hops:
                return None if peer is None else str(peer)
            # chain = entries + [peer]; the client is chain[-(hops + 1)]
            start = len(entries) - self.hops
            for text in entries[start:]:
                address = parse_ip(text)
                if address is not None:
                    return str(address)
            return None if peer is None else str(peer)
        current = peer
        for text in reversed(entries):
            if current is None or not self.trusts(current):
                break
            address = parse_ip(text)
            if address is None:
                break
            current = address
        return None if current is None else str(current)


def request_subject(ip: str | None, useragent: str | None, user_id: str | None) -> Subject:
    """A new :class:`Subject` with the fields that are known (empty values are left unset)."""
    subject = Subject()
    if ip:
        subject.set_ip_address(ip)
    if useragent:
        subject.set_useragent(useragent)
    if user_id:
        subject.set_user_id(user_id)
    return subject


def with_subject(event: E, subject: Subject | None) -> E:
    """A shallow copy of *event* whose event subject is *subject* overridden by what the
    event's own event subject set. *event* is not modified; with no *subject*, *event*
    itself is returned."""
    if subject is None:
        return event
    own = event.event_subject
    merged = subject if own is None else subject.merged(own)
    clone = copy.copy(event)
    clone.event_subject = merged
    return clone


def request_event(
    method: str,
    path: str,
    status: int,
    duration_ms: float,
    route: str | None = None,
    subject: Subject | None = None,
    vendor: str = schemas.DEFAULT_VENDOR,
) -> SelfDescribing:
    """The self-describing ``request`` event (schema :data:`schemas.REQUEST` under *vendor*).
    The path is truncated to :data:`MAX_PATH` characters, the duration rounded to µs."""
    data: dict[str, object] = {
        "method": method[:_MAX_METHOD] or "GET",
        "path": path[:MAX_PATH],
        "status": int(status),
        "duration_ms": round(max(0.0, duration_ms), 3),
    }
    if route is not None:
        data["route"] = route[:MAX_PATH]
    return SelfDescribing(
        SelfDescribingJson(schemas.schema_uri(schemas.REQUEST, vendor), data),
        event_subject=subject,
    )


def page_view_event(url: str, referrer: str | None, subject: Subject | None) -> PageView:
    """A :class:`PageView` of *url* (the full request URL) with its referrer."""
    return PageView(url, referrer=referrer or None, event_subject=subject)


def path_ignored(path: str, prefixes: Sequence[str]) -> bool:
    """True if *path* starts with one of *prefixes*."""
    return any(path.startswith(prefix) for prefix in prefixes)

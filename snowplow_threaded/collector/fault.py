"""A :class:`Fault`: what the collector does to one tracker request instead of, or to, its
own answer (the rules that hand faults out are in :mod:`.faults`; the request record that
notes the fault applied is in :mod:`.traffic`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from .http_types import Response

__all__ = ["Close", "Fault", "Reset"]

Reset = Literal["before", "mid-response"]
Close = Literal["after-head", "after-response"]


@dataclass(frozen=True)
class Fault:
    """What to do to one tracker request (every field optional; see the module doc).

    * ``status``: answer this status instead of the collector's own answer; 3xx to 5xx
      means the events are not taken.
    * ``retry_after``: add ``Retry-After`` (seconds: an integral float is sent as an
      integer; a string is sent as it is, e.g. an HTTP date).
    * ``headers``: more response headers; ``body``: the response body instead.
    * ``delay``: seconds to wait before answering (the connection reads nothing else).
    * ``reset``: ``"before"``: read the request, then reset the connection (TCP RST)
      without answering; ``"mid-response"``: send the head and half the body, then reset.
    * ``close``: ``"after-head"``: send the head alone, then close the connection (FIN);
      ``"after-response"``: answer with ``Connection: close``, then close.
    """

    status: int | None = None
    retry_after: float | str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    delay: float = 0.0
    reset: Reset | None = None
    close: Close | None = None

    def __post_init__(self) -> None:
        if self.status is not None and (isinstance(self.status, bool)
                                        or not isinstance(self.status, int)
                                        or not 200 <= self.status <= 599):
            raise ValueError(f"status must be an int from 200 to 599, got {self.status!r}")
        if isinstance(self.delay, bool) or not isinstance(self.delay, (int, float)) \
                or not 0 <= self.delay <= 3600:
            raise ValueError(f"delay must be 0 to 3600 seconds, got {self.delay!r}")
        if self.reset not in (None, "before", "mid-response"):
            raise ValueError(f"reset must be 'before' or 'mid-response', got {self.reset!r}")
        if self.close not in (None, "after-head", "after-response"):
            raise ValueError(f"close must be 'after-head' or 'after-response', "
                             f"got {self.close!r}")
        if self.reset is not None and self.close is not None:
            raise ValueError("a fault resets or closes the connection, not both")
        if self.reset == "before" and (self.status is not None or self.body is not None):
            raise ValueError("reset='before' answers nothing: give no status nor body")
        if isinstance(self.retry_after, (int, float)) and (
                isinstance(self.retry_after, bool) or self.retry_after < 0):
            raise ValueError(f"retry_after must be >= 0, got {self.retry_after!r}")
        for name, value in self.headers:
            if not name or any(c in f"{name}{value}" for c in "\r\n\0"):
                raise ValueError(f"bad response header {name!r}: {value!r}")

    @property
    def keeps_events(self) -> bool:
        """The collector takes the request's events (see the module doc)."""
        return self.reset != "before" and (self.status is None or self.status < 300)

    def _headers(self) -> tuple[tuple[str, str], ...]:
        if self.retry_after is None:
            return self.headers
        value = self.retry_after
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return (*self.headers, ("Retry-After", str(value)))

    def apply(self, answer: Callable[[], Response],
              extra_headers: tuple[tuple[str, str], ...] = ()) -> Response:
        """The response to send: the collector's *answer* (called only if the events are
        kept) changed as this fault says."""
        cut = {"before": "reset", "mid-response": "reset-mid-response"}.get(self.reset or "")
        if self.close == "after-head":
            cut = "close-after-head"
        if self.keeps_events:
            response = answer()
            if self.status is not None:
                response.status = self.status
        else:
            response = Response(self.status or 503, b"", "text/plain", extra_headers)
        if self.body is not None:
            response.body = self.body
        response.headers = response.headers + self._headers()
        response.cut = cut
        response.close = response.close or self.close == "after-response"
        return response

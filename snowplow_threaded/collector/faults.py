"""Fault rules: make the collector misbehave on purpose, to test a tracker (or an app)
through an outage.

Each rule gives a :class:`Fault` to some of the tracker requests (``POST .../tp2``,
``GET .../i``; never the REST API or ``/health``)::

    collector.faults(503, times=3)                 # the next 3 requests get 503
    collector.faults(429, retry_after=2, times=1)  # one 429 with Retry-After: 2
    collector.faults(500, every=4)                 # every 4th request, from now on
    collector.faults(delay=1.5, times=1)           # answer the next one 1.5 s late
    collector.faults(reset="before", times=1)      # reset the connection, answer nothing
    collector.faults(reset="mid-response")         # events kept, answer cut by a reset
    collector.faults(close="after-head", after=2)  # from the 3rd request: head only, FIN
    collector.faults(400, carrying={"eid": eid})   # any request carrying that event
    collector.faults.clear()                       # healthy again

What a fault does to the events: they are kept (good or bad, as without the fault) when
the status answered, or announced by a broken answer, is 2xx — the collector's own
answer (no ``status`` given) or a 2xx ``status`` — and the connection is not reset before
the answer. Otherwise (``status`` 3xx to 5xx, ``reset="before"``) the collector does not
take them, as a collector that is down. A delayed answer takes the events when the delay
ends (if they are kept), just before answering; if the collector stops or goes down
first, they are not taken.

Which rule applies: every rule counts each tracker request from when it is added; a rule
is due on its ``after + every``-th, ``after + 2 * every``-th, ... request, until it has
applied ``times`` times (then it is dropped). A rule with ``carrying`` (a poison event:
a WAF, a body rule) counts only the requests that carry an event with all those fields.
Of the rules due, the first added applies; the others do not use up a time. Thread-safe
(one lock).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

from .fault import Close, Fault, Reset
from .http_types import Deferred, Request, Response
from .traffic import TrackerRequest, Traffic

__all__ = ["Fault", "FaultRule", "Faults", "parse_fault", "serve_tracker"]

class FaultRule:
    """One rule: *fault* on the due tracker requests (see the module doc). ``applied``
    counts the requests it was given to; a rule whose ``times`` are used up is done."""

    def __init__(self, fault: Fault, times: int | None, every: int, after: int,
                 carrying: Mapping[str, str] | None = None) -> None:
        for name, value, least in (("every", every, 1), ("after", after, 0),
                                   ("times", 1 if times is None else times, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be an int >= {least}, got {value!r}")
        if carrying is not None and (not carrying or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in carrying.items())):
            raise ValueError(f"carrying must be a non-empty dict of str fields, "
                             f"got {carrying!r}")
        self.fault, self.times, self.every, self.after = fault, times, every, after
        self.carrying = dict(carrying) if carrying is not None else None
        self.seen = 0
        self.applied = 0

    @property
    def done(self) -> bool:
        return self.times is not None and self.applied >= self.times

    def _count(self, events: Callable[[], list[dict[str, object]]]) -> bool:
        """Count one request (*events*: its events, parsed on demand); True if this rule
        is due on it."""
        if self.carrying is not None:
            wanted = self.carrying.items()
            if not any(wanted <= event.items() for event in events()):
                return False
        self.seen += 1
        beyond = self.seen - self.after
        return not self.done and beyond > 0 and beyond % self.every == 0

    def __repr__(self) -> str:
        return (f"FaultRule({self.fault!r}, times={self.times}, every={self.every}, "
                f"after={self.after}, applied={self.applied})")


class Faults:
    """The collector's fault rules. Call it to add one (see :meth:`add`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []

    def __call__(self, status: int | None = None, *, retry_after: float | str | None = None,
                 headers: Mapping[str, str] | None = None, body: bytes | None = None,
                 delay: float = 0.0, reset: Reset | None = None, close: Close | None = None,
                 times: int | None = None, every: int = 1, after: int = 0,
                 carrying: Mapping[str, str] | None = None) -> FaultRule:
        """Add a rule: the :class:`Fault` made of the first arguments, on the next *times*
        tracker requests (``None``: for ever), or on every *every*-th one, starting after
        the next *after*; with *carrying*, only requests that carry an event with those
        fields count. Returns the rule (see :meth:`remove`). Raises ``ValueError`` for a
        fault or a schedule that makes no sense."""
        fault = Fault(status, retry_after, tuple((headers or {}).items()), body, delay,
                      reset, close)
        return self.add(fault, times=times, every=every, after=after, carrying=carrying)

    def add(self, fault: Fault, *, times: int | None = None, every: int = 1,
            after: int = 0, carrying: Mapping[str, str] | None = None) -> FaultRule:
        """Add a rule for a :class:`Fault` made beforehand."""
        rule = FaultRule(fault, times, every, after, carrying)
        with self._lock:
            self._rules.append(rule)
        return rule

    def remove(self, rule: FaultRule) -> None:
        """Drop *rule* (no-op if it is gone)."""
        with self._lock:
            if rule in self._rules:
                self._rules.remove(rule)

    def clear(self) -> None:
        """Drop every rule: the collector answers normally again."""
        with self._lock:
            self._rules.clear()

    @property
    def rules(self) -> list[FaultRule]:
        """The rules still active, in the order added."""
        with self._lock:
            return list(self._rules)

    def next_fault(self, request: TrackerRequest | None = None) -> Fault | None:
        """Count one tracker request against every rule; the fault it gets, if any."""
        parsed: list[list[dict[str, object]]] = []

        def events() -> list[dict[str, object]]:
            if not parsed:
                parsed.append(request.events if request is not None else [])
            return parsed[0]

        with self._lock:
            chosen: FaultRule | None = None
            for rule in self._rules:
                if rule._count(events) and chosen is None:
                    chosen = rule
            if chosen is None:
                return None
            chosen.applied += 1
            if chosen.done:
                self._rules.remove(chosen)
            return chosen.fault


def serve_tracker(request: Request, answer: Callable[[], Response], faults: Faults,
                  traffic: Traffic, extra_headers: tuple[tuple[str, str], ...] = ()
                  ) -> Response | Deferred:
    """Answer a tracker request: the collector's *answer*, through the fault due, if any,
    with the request recorded in *traffic*. On the server's loop thread."""
    record = traffic.arrive(request)
    fault = faults.next_fault(record)

    def respond() -> Response:
        with traffic.lock:  # a reader sees the events taken and their record together
            response = answer() if fault is None else fault.apply(answer, extra_headers)
            traffic.settle(record, None if response.cut == "reset" else response.status,
                           response.cut or "answered", fault)
        return response

    if fault is None or not fault.delay:
        return respond()
    return Deferred(fault.delay, respond,
                    lambda: traffic.settle(record, None, "aborted", fault))


_KEYS = {"status": int, "retry-after": str, "delay": float, "reset": str, "close": str,
         "times": int, "every": int, "after": int, "body": str}


def parse_fault(spec: str) -> dict[str, object]:
    """The keyword arguments of :class:`Faults` from a command-line *spec* such as
    ``status=503,times=3`` or ``delay=2,every=5`` or ``reset=mid-response``
    (keys: ``status``, ``retry-after``, ``delay``, ``reset``, ``close``, ``body``,
    ``times``, ``every``, ``after``). Raises ``ValueError`` with what is wrong."""
    out: dict[str, object] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        key, sep, text = item.partition("=")
        key = key.strip().lower().replace("_", "-")
        if not sep or key not in _KEYS:
            raise ValueError(f"bad fault item {item!r}: expected KEY=VALUE with KEY one of "
                             f"{', '.join(_KEYS)}")
        try:
            value: object = _KEYS[key](text.strip())
        except ValueError:
            raise ValueError(f"bad value for {key}: {text!r}") from None
        if key == "retry-after":
            value = _number_or_text(str(value))
        if key == "body":
            value = str(value).encode("utf-8")
        out[key.replace("-", "_")] = value
    if not out:
        raise ValueError("an empty fault rule")
    Faults()(**out)  # type: ignore[arg-type]  # checks the whole rule now
    return out


def _number_or_text(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


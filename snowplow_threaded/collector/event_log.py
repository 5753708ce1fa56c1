"""The collector's event log: good and bad events in bounded memory.

:class:`EventLog` holds at most ``max_events`` good and ``max_events`` bad events, and
about ``max_bytes`` of each; beyond that, the oldest are evicted and counted. Every method
is thread-safe (one lock); the server adds, any thread reads. The events are held as plain
tuples (see ``_Packed``) and made into :mod:`.store` records for each read.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import fields
from itertools import chain
from typing import Any, Literal, TypeVar

from .store import BadEvent, GoodEvent, RequestInfo, Summary

__all__ = ["EventLog"]

T = TypeVar("T")


def _request_size(info: RequestInfo) -> int:
    """About the memory one request's record takes: its headers and query string too
    (a request with 60 KB of headers can carry a single tiny event)."""
    return (600 + 56 * len(info.headers) + sum(map(len, info.headers)) + len(info.path)
            + len(info.query) + len(info.body or "") + len(info.content_type or "")
            + len(info.useragent or "") + len(info.referer or "") + len(info.hostname or ""))


def _json_size(value: Any) -> int:
    """About the memory a decoded JSON value takes (walked in Python: a huge value costs
    time, not a long hold on the interpreter as ``repr()`` would)."""
    size = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            size += 50 + len(item)
        elif isinstance(item, dict):
            size += 100 + 60 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, frozenset)):
            size += 56 + 8 * len(item)
            stack.extend(item)
        else:
            size += 32
    return size


def _event_size(event: GoodEvent | BadEvent) -> int:
    """About the memory *event* takes on its own (its request is counted apart)."""
    if isinstance(event, GoodEvent):  # every key and value a string, held as one tuple:
        params = event.parameters  # per field two slots and two strings (keys unshared)
        return (250 + 115 * len(params) + sum(map(len, params)) + sum(map(len, params.values()))
                + sum(50 + len(c) for c in event.contexts) + len(event.schema or ""))
    return (300 + sum(50 + len(e) for e in event.errors) + _json_size(event.messages)
            + (_json_size(event.parameters) if event.parameters is not None else 0))


#: How an event is held: an exact tuple of its fields (its request's fields as a tuple, its
#: parameters as one flat tuple), then its estimated size. The garbage collector stops
#: tracking tuples of untracked items, so the events held cost a full collection nothing;
#: as dataclass instances, 300 000 of them made each full collection take 50 ms and more,
#: stalling every thread.
_Packed = tuple[Any, ...]
_REQUEST_FIELDS = tuple(f.name for f in fields(RequestInfo))


def _pack(events: list[Any], charge: bool) -> list[_Packed]:
    if not events:
        return []
    return _pack_some(events, charge)


def _pack_some(events: list[Any], charge: bool) -> list[_Packed]:
    """*events* as held. When *charge*, each request's size is charged to its last event
    (the last one of its request to be evicted), so a request is counted once, while it
    is held."""
    last: dict[int, int] = {}
    for index, event in enumerate(events):
        last[id(event.request)] = index if charge else -1
    packed_requests: dict[int, tuple[Any, ...]] = {}
    packed: list[_Packed] = []
    for index, event in enumerate(events):
        request = event.request
        key = id(request)
        fields_of_request = packed_requests.get(key)
        if fields_of_request is None:
            fields_of_request = packed_requests[key] = tuple(
                getattr(request, name) for name in _REQUEST_FIELDS)
        size = _event_size(event) + (_request_size(request) if last[key] == index else 0)
        if type(event) is GoodEvent and _GOOD_ORDER:  # the common case, spelled out
            packed.append((_flat(event.parameters), event.event_type, event.schema,
                           event.contexts, fields_of_request, size))
            continue
        packed.append((*(_PACKERS.get(name, _same)(getattr(event, name))
                         if name != "request" else fields_of_request
                         for name in _FIELDS[type(event)]), size))
    return packed


def _unpack(kind: type[T], held: Iterable[_Packed]) -> Iterator[T]:
    """The events *held* as :class:`GoodEvent` or :class:`BadEvent` records (one
    :class:`RequestInfo` per request), lazily."""
    names = _FIELDS[kind]
    at, params = names.index("request"), names.index("parameters")
    requests: dict[int, RequestInfo] = {}
    for item in held:
        packed_request = item[at]
        request = requests.get(id(packed_request))
        if request is None:
            request = requests[id(packed_request)] = RequestInfo(*packed_request)
        values = list(item[:-1])
        values[at] = request
        flat = values[params]
        if flat is not None:
            values[params] = dict(zip(flat[::2], flat[1::2], strict=True))
        yield kind(*values)


def _same(value: Any) -> Any:
    return value


def _flat(value: dict[str, Any] | None) -> tuple[Any, ...] | None:
    """A dict as one tuple, keys and values in turn: a tuple holding a dict is always
    tracked by the garbage collector (and one tuple is smaller than a tuple of pairs)."""
    return tuple(chain.from_iterable(value.items())) if value is not None else None


_PACKERS: dict[str, Callable[[Any], Any]] = {"parameters": _flat}


class EventLog:
    """Bounded, thread-safe store of good and bad events (in arrival order).

    :param max_events: most good events kept, and most bad events kept (each >= 1)
    :param max_bytes: about the most memory the good events take, and the bad events,
        their requests' headers, query strings and kept bodies included (estimated); the
        oldest are evicted beyond it

    One lock (a condition) guards the deques and counters; it is never held while
    events are built, sized, unpacked or freed.
    """

    def __init__(self, max_events: int = 100_000, max_bytes: int = 512 * 1024 * 1024) -> None:
        for name, value in (("max_events", max_events), ("max_bytes", max_bytes)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._cond = threading.Condition()
        self._held: dict[str, deque[_Packed]] = {"good": deque(), "bad": deque()}
        self._bytes = {"good": 0, "bad": 0}
        self._received = {"good": 0, "bad": 0}
        self._evicted = {"good": 0, "bad": 0}

    def add(self, good: Iterable[GoodEvent] = (), bad: Iterable[BadEvent] = (), *,
            last_of_request: bool = True) -> None:
        """Keep *good* and *bad*, evicting the oldest beyond ``max_events`` or
        ``max_bytes``; wakes :meth:`wait_for`. A request's events may come in several
        calls: the memory of the request itself is counted with the last
        (*last_of_request*)."""
        packed_good = _pack(list(good), last_of_request)
        packed_bad = _pack(list(bad), last_of_request)
        if not packed_good and not packed_bad:
            return
        evicted: list[_Packed] = []
        with self._cond:
            self._keep("good", packed_good, evicted)
            self._keep("bad", packed_bad, evicted)
            self._cond.notify_all()
        _drop(evicted)

    def _keep(self, kind: str, events: list[_Packed], evicted: list[_Packed]) -> None:
        if not events:
            return
        held = self._held[kind]
        held.extend(events)
        self._bytes[kind] += sum(event[-1] for event in events)
        self._received[kind] += len(events)
        while len(held) > self.max_events or (self._bytes[kind] > self.max_bytes
                                              and len(held) > 1):
            oldest = held.popleft()
            self._bytes[kind] -= oldest[-1]
            self._evicted[kind] += 1
            evicted.append(oldest)  # freed after the lock is released

    def good(self) -> list[GoodEvent]:
        """The good events held, oldest first."""
        return list(self.iter_good())

    def bad(self) -> list[BadEvent]:
        """The bad events held, oldest first."""
        return list(self.iter_bad())

    def iter_good(self, newest_first: bool = False) -> Iterator[GoodEvent]:
        """The good events held when called, made into records one at a time."""
        with self._cond:
            held = list(self._held["good"])
        return _unpack(GoodEvent, reversed(held) if newest_first else held)

    def iter_bad(self, newest_first: bool = False) -> Iterator[BadEvent]:
        """The bad events held when called, made into records one at a time."""
        with self._cond:
            held = list(self._held["bad"])
        return _unpack(BadEvent, reversed(held) if newest_first else held)

    def held_bytes(self) -> tuple[int, int]:
        """The estimated memory of the good events held and of the bad events held."""
        with self._cond:
            return self._bytes["good"], self._bytes["bad"]

    def summary(self) -> Summary:
        with self._cond:
            return Summary(len(self._held["good"]), len(self._held["bad"]),
                           self._received["good"],
                           self._received["bad"], self._evicted["good"], self._evicted["bad"])

    def reset(self) -> None:
        """Forget every event and zero the counters. The events are freed after the lock
        is released, one at a time (freeing 100 000 at once held the interpreter)."""
        with self._cond:
            old = self._held
            self._held = {"good": deque(), "bad": deque()}
            self._bytes = {"good": 0, "bad": 0}
            self._received = {"good": 0, "bad": 0}
            self._evicted = {"good": 0, "bad": 0}
            self._cond.notify_all()
        for events in old.values():
            _drop(events)

    def wait_for(self, count: int, timeout: float,
                 kind: Literal["all", "good", "bad"] = "all") -> bool:
        """Block until at least *count* events of *kind* were received since the last reset
        (evicted ones count), or *timeout* seconds pass. True if they were."""
        if kind not in ("all", "good", "bad"):
            raise ValueError(f"kind must be 'all', 'good' or 'bad', got {kind!r}")
        deadline = time.monotonic() + timeout

        def reached() -> bool:
            if kind == "all":
                return self._received["good"] + self._received["bad"] >= count
            return self._received[kind] >= count

        with self._cond:
            while not reached():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True


def _drop(events: deque[_Packed] | list[_Packed]) -> None:
    """Free *events* one at a time: each step is short, so other threads run between."""
    while events:
        events.pop()


_FIELDS: dict[type[Any], tuple[str, ...]] = {
    kind: tuple(f.name for f in fields(kind)) for kind in (GoodEvent, BadEvent)}
_GOOD_ORDER = _FIELDS[GoodEvent] == ("parameters", "event_type", "schema", "contexts",
                                     "request")

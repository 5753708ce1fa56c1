"""Tracker: builds each event's payload on the caller's thread and hands it to emitters.

``track()`` does the CPU work of an event (payload, JSON of its parts, one encoding of the
whole event, an id) and a non-blocking enqueue per emitter; it raises at the call site for
bad input and never for emitter faults. A Tracker is thread-safe for tracking; changing
its subject or emitters while other threads track is allowed (they see the old or the new
value).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

from ._version import TRACKER_VERSION
from .contracts import non_empty_string
from .emitters import Emitter
from .events import Event
from .legacy import LegacyTracking
from .payload import Payload
from .stats import EmitterStats
from .subject import Subject
from .typing import EmitterProtocol, JsonEncoderFunction

VERSION = TRACKER_VERSION


class _IdPool(threading.local):
    """Per-thread event ids, formatted 1024 at a time from one ``os.urandom`` call."""

    def __init__(self) -> None:
        self.pid = -1
        self.ids: list[str] = []


_POOL_IDS = 1024  # ids per refill (16 KiB of random bytes)
# the variant nibble (RFC 4122: binary 10xx) from any random hex digit
_VARIANT = {d: "89ab"[int(d, 16) & 3] for d in "0123456789abcdef"}
_pool = _IdPool()


def _fresh_ids() -> list[str]:
    h = os.urandom(_POOL_IDS * 16).hex()
    v = _VARIANT
    return [f"{h[i:i + 8]}-{h[i + 8:i + 12]}-4{h[i + 13:i + 16]}-{v[h[i + 16]]}"
            f"{h[i + 17:i + 20]}-{h[i + 20:i + 32]}" for i in range(0, _POOL_IDS * 32, 32)]


def new_event_id() -> str:
    """A random (version 4) UUID from the OS's CSPRNG, as text.

    Bytes come from ``os.urandom`` 16 KiB at a time into a per-thread pool of formatted
    ids: one system call (which releases the GIL, and may wait milliseconds to get it
    back under load) per 1024 ids instead of one per ``track()``. The pool is dropped when
    the process id changes, so a forked child never repeats its parent's ids.
    """
    pool = _pool
    ids = pool.ids
    if not ids or pool.pid != os.getpid():
        ids = pool.ids = _fresh_ids()
        pool.pid = os.getpid()
    return ids.pop()


class Tracker(LegacyTracking):
    """:param namespace: the tracker's name, sent as ``tna``
    :param emitters: one emitter or a list (``emitter=`` is accepted too)
    :param subject: the default :class:`Subject` (a new ``Subject()``, platform ``pc``)
    :param app_id: sent as ``aid``
    :param encode_base64: base64-encode JSON parts (default True)
    :param json_encoder: ``default=`` for ``json.dumps`` of event data and contexts
    """

    def __init__(
        self,
        namespace: str,
        emitters: EmitterProtocol | Sequence[EmitterProtocol] | None = None,
        subject: Subject | None = None,
        app_id: str | None = None,
        encode_base64: bool = True,
        json_encoder: JsonEncoderFunction | None = None,
        *,
        emitter: EmitterProtocol | None = None,
    ) -> None:
        non_empty_string(namespace, "namespace")
        if emitters is not None and emitter is not None:
            raise TypeError("pass emitters= or emitter=, not both")
        chosen = emitters if emitters is not None else emitter
        if chosen is None:
            raise TypeError("Tracker needs an emitter: Tracker(namespace, emitters=Emitter(...))")
        items: list[EmitterProtocol] = (
            list(chosen) if isinstance(chosen, (list, tuple)) else [chosen]  # type: ignore[list-item]
        )
        if not items:
            raise ValueError("emitters must not be empty")
        if app_id is not None and not isinstance(app_id, str):
            raise TypeError(f"app_id must be a string or None, got {app_id!r}")
        if not isinstance(encode_base64, bool):
            raise TypeError(f"encode_base64 must be a bool, got {encode_base64!r}")
        if json_encoder is not None and not callable(json_encoder):
            raise TypeError("json_encoder must be callable or None")
        self.emitters: list[EmitterProtocol] = []
        self._ours: tuple[Emitter, ...] = ()
        self._foreign: tuple[EmitterProtocol, ...] = ()
        for item in items:
            self.add_emitter(item)
        self.subject: Subject | None = Subject() if subject is None else subject
        self.encode_base64 = encode_base64
        self.json_encoder = json_encoder
        self.standard_nv_pairs: dict[str, Any] = {"tv": VERSION, "tna": namespace, "aid": app_id}
        self._tail = {k: v for k, v in self.standard_nv_pairs.items() if v}

    @staticmethod
    def get_uuid() -> str:
        return str(uuid.uuid4())

    @staticmethod
    def get_timestamp(tstamp: float | None = None) -> int:
        if isinstance(tstamp, (int, float)) and not isinstance(tstamp, bool):
            return int(tstamp)
        return time.time_ns() // 1_000_000

    def complete_payload(self, event: Event) -> Payload:
        """The full payload of *event* as it would be sent (without ``stm``)."""
        result = Payload()
        result.nv_pairs = dict(self._complete(event))
        return result

    def _complete(self, event: Event) -> dict[str, str]:
        if not isinstance(event, Event):
            raise TypeError(f"track() takes an Event, got {type(event).__name__}")
        nv = event._build(self.encode_base64, self.json_encoder, self.subject)
        nv["eid"] = new_event_id()
        nv["dtm"] = str(time.time_ns() // 1_000_000)
        nv.update(self._tail)
        return nv

    def track(self, event: Event) -> str:
        """Build *event*'s payload and buffer it in every emitter; return its ``eid``.

        Raises ``TypeError``/``ValueError`` for bad input (non-serialisable data without a
        ``json_encoder``, NaN, a non-Event). Never blocks on the network and never raises
        for collector problems.
        """
        nv = self._complete(event)
        eid = nv["eid"]
        ours = self._ours
        if ours:
            ours[0].admit_record(nv)
            for emitter in ours[1:]:
                emitter.admit_record(dict(nv))  # each emitter owns its record (stm)
        for other in self._foreign:
            other.input(dict(nv))
        return eid

    def flush(self, is_async: bool = False, timeout: float | None = None) -> bool:
        """Flush every emitter. Blocking (default): wait until everything tracked before the
        call is delivered or failed for good (True) or *timeout* passes (False; default
        each emitter's ``flush_timeout``). ``is_async=True``: trigger and return.

        Unlike the reference, this returns a bool, not the tracker.
        """
        ok = True
        for emitter in self.emitters:
            if isinstance(emitter, Emitter):
                if is_async:
                    emitter.async_flush()
                else:
                    ok = emitter.flush(timeout) and ok
            else:
                emitter.flush()
        return ok

    def close(self, timeout: float | None = None) -> bool:
        """Close every emitter of this tracker (see :meth:`Emitter.close`)."""
        ok = True
        for emitter in self._ours:
            ok = emitter.close(timeout) and ok
        return ok

    def stats(self) -> EmitterStats:
        """The summed counters of this tracker's emitters."""
        total = EmitterStats()
        for emitter in self._ours:
            total = total + emitter.stats()
        return total

    def set_subject(self, subject: Subject | None) -> Tracker:
        if subject is not None and not isinstance(subject, Subject):
            raise TypeError(f"subject must be a Subject or None, got {type(subject).__name__}")
        self.subject = subject
        return self

    def add_emitter(self, emitter: EmitterProtocol) -> Tracker:
        if not callable(getattr(emitter, "input", None)):
            raise TypeError(f"an emitter needs an input() method, got {type(emitter).__name__}")
        self.emitters.append(emitter)
        if isinstance(emitter, Emitter):
            self._ours = (*self._ours, emitter)
        else:
            self._foreign = (*self._foreign, emitter)
        return self

    def get_namespace(self) -> str:
        return str(self.standard_nv_pairs["tna"])

    def __repr__(self) -> str:
        return f"Tracker({self.get_namespace()!r}, emitters={self.emitters!r})"

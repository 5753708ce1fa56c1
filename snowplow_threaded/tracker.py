"""Tracker: builds each event's payload on the caller's thread and hands it to emitters.

``track()`` does the CPU work of an event (payload, JSON of its parts, an id) and a
non-blocking enqueue per emitter; it raises at the call site for
bad input and never for emitter faults. A Tracker is thread-safe for tracking; changing
its subject or emitters while other threads track is allowed (they see the old or the new
value).
"""

from __future__ import annotations

import os
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from ._version import TRACKER_VERSION
from .contracts import non_empty_string
from .emitters import Emitter
from .events import Event
from .events.event import all_text
from .legacy import LegacyTracking
from .payload import Payload, PayloadPairs
from .process_id import FORK_MARK, KNOWN_PID, current_pid, pid_now
from .record import CommonFields, Record, payload_of, record_of
from .stats import EmitterStats
from .subject import Subject
from .typing import EmitterProtocol, JsonEncoderFunction

VERSION = TRACKER_VERSION
_time_ns = time.time_ns
#: the last ``dtm`` made: (milliseconds, its text), shared by the events of that millisecond;
#: no lock: the tuple is replaced as a whole, so a reader sees an old or a new pair
_last_dtm: tuple[int, str] = (0, "0")


def _dtm() -> str:
    """The current time in milliseconds since the epoch, as text (``dtm``)."""
    ms = _time_ns() // 1_000_000
    last = _last_dtm
    return last[1] if last[0] == ms else _dtm_of(ms)


def _dtm_of(ms: int) -> str:
    global _last_dtm
    text = str(ms)
    _last_dtm = (ms, text)
    return text


class _IdPool:
    """Event ids made ahead, shared by all threads: ``list.pop`` is atomic, so no two
    calls get the same id, and two threads refilling at once just make one list each."""

    __slots__ = ("ids", "pid")

    def __init__(self) -> None:
        self.pid = -1
        self.ids: list[str] = []


try:  # OpenSSL's CSPRNG, which reseeds itself in a forked child
    from ssl import RAND_bytes as _random_bytes
except ImportError:  # pragma: no cover - Python built without ssl
    _random_bytes = os.urandom

#: Where event ids' random bits come from: any CSPRNG does, as long as ids are made in
#: bulk. What matters is how often a tracking thread hands the GIL over: every hand-back
#: restarts the switch interval of a sender waiting for it, so a call that releases the GIL
#: (``os.urandom``, a system call) made for a few ids at a time starves the sender. Made
#: :data:`_POOL_IDS` at a time, ``os.urandom`` and ``ssl.RAND_bytes`` cost a POST next to a
#: tracking thread the same (``python -m stress.sender_gil``,
#: ``stress/results/sender_gil.md``).
random_bytes: Callable[[int], bytes] = _random_bytes
_POOL_IDS = 1024  # ids per refill: a refill in bulk every 1 024 track() calls
# RFC 4122 version 4: byte 6 is 0100xxxx, byte 8 is 10xxxxxx
_VERSION = bytes(0x40 | (b & 0x0F) for b in range(256))
_VARIANT = bytes(0x80 | (b & 0x3F) for b in range(256))
_pool = _IdPool()
_NO_SUBJECT = object()  # no subject fields merged yet (see Tracker._record_base)


def _fresh_ids(count: int = _POOL_IDS) -> list[str]:
    """*count* random version-4 UUIDs as text, formatted by C-speed bulk operations (no
    per-id Python loop): set the version and variant bits of every 16-byte group by
    strided ``translate``, hex-encode with a dash after every 2 bytes (``xxxx-`` x 8 per
    id), and delete the three dashes a UUID does not have (after groups 1, 6 and 7) with
    strided deletes."""
    raw = bytearray(random_bytes(count * 16))
    raw[6::16] = raw[6::16].translate(_VERSION)
    raw[8::16] = raw[8::16].translate(_VARIANT)
    text = bytearray(raw.hex("-", 2).encode("ascii"))
    text.append(0x2D)  # the last group's dash: every id is now 40 characters
    del text[4::40]  # -> 39 per id
    del text[28::39]  # -> 38
    del text[32::38]  # -> 37: the 36-character id and its trailing dash
    text[36::37] = b" " * count
    return text.decode("ascii").split()


def new_event_id(pid: int = 0) -> str:
    """A random (version 4) UUID from a CSPRNG (see :data:`random_bytes`), as text.

    Ids are made 1024 at a time into a pool shared by all threads. The pool is dropped
    when the process id changes, so a forked child never repeats its parent's ids.
    *pid*: the caller's :func:`~.process_id.current_pid`, if it has it.
    """
    pool = _pool
    pid = pid or current_pid()
    if pool.pid == pid:
        try:
            return pool.ids.pop()
        except IndexError:
            pass
    ids = _fresh_ids()
    eid = ids.pop()
    pool.ids = ids
    pool.pid = pid
    return eid


def _admit_of(emitter: Emitter) -> Callable[[Record, int], bool]:
    """*emitter*'s admission, skipping one call level unless a subclass overrides it."""
    if type(emitter).admit_record is Emitter.admit_record:
        return emitter._dispatcher.admit
    return emitter.admit_record


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
        #: this library's emitters: each is handed its record (admit_record)
        self._engine_emitters: tuple[Emitter, ...] = ()
        #: any other emitter: given a copy of the payload through input()
        self._input_emitters: tuple[EmitterProtocol, ...] = ()
        #: the admission of the tracker's one emitter, when it has one and it is ours
        self._single_admit: Callable[[Record, int], bool] | None = None
        for item in items:
            self.add_emitter(item)
        self.subject: Subject | None = Subject() if subject is None else subject
        self.encode_base64 = encode_base64
        self.json_encoder = json_encoder
        self.standard_nv_pairs: dict[str, Any] = {"tv": VERSION, "tna": namespace, "aid": app_id}
        #: the tracker's own fields (tv, tna, aid), as sent
        self._tracker_fields: dict[str, str] = {
            k: v for k, v in self.standard_nv_pairs.items() if v}
        #: what every event's record starts from: the subject's fields (its
        #: ``_cached_wire()``) and _tracker_fields, encoded: rebuilt when the subject or
        #: its fields change; replaced as a whole (thread-safe to read)
        self._record_base = CommonFields(_NO_SUBJECT, self._tracker_fields)

    @staticmethod
    def get_uuid() -> str:
        return str(uuid.uuid4())

    @staticmethod
    def get_timestamp(tstamp: float | None = None) -> int:
        if isinstance(tstamp, (int, float)) and not isinstance(tstamp, bool):
            return int(tstamp)
        return _time_ns() // 1_000_000

    def complete_payload(self, event: Event) -> Payload:
        """The full payload of *event* as it would be sent (without ``stm``)."""
        nv = self._complete(event)
        nv["eid"] = new_event_id()
        nv["dtm"] = _dtm()
        result = Payload()
        result.nv_pairs = nv
        return result

    def _record_base_for(self, subject: Subject) -> CommonFields:
        """*subject*'s fields merged with the tracker's, encoded (cached in
        ``_record_base`` until the subject changes)."""
        common = self._record_base
        wire = subject._cached_wire()  # never None: so track() cannot match a cleared cache
        if common.source is not wire:
            common = self._record_base = CommonFields(wire, {**wire[0], **self._tracker_fields})
        return common

    def _complete(self, event: Event) -> dict[str, str]:
        """*event*'s payload without ``eid`` and ``dtm`` (every case; see :meth:`track`
        for the common one)."""
        try:
            nv = event._build_body(self.encode_base64, self.json_encoder)
        except AttributeError:
            if not isinstance(event, Event):
                raise TypeError(f"track() takes an Event, got {type(event).__name__}") from None
            raise
        subject = self.subject
        if event._event_subject is not None or subject is None:
            event._add_subject(nv, subject)
            nv.update(self._tracker_fields)
        else:
            nv.update(self._record_base_for(subject).fields)
        return nv

    def track(self, event: Event) -> str:
        """Build *event*'s payload and buffer it in every emitter; return its ``eid``.

        Raises ``TypeError``/``ValueError`` for bad input (non-serialisable data without a
        ``json_encoder``, NaN, a non-Event). Never blocks on the network and never raises
        for collector problems.
        """
        # once: the id pool and each emitter check it (fork safety); a memory read
        # unless this process forked since (process_id.current_pid, inlined)
        pid = KNOWN_PID[0] if FORK_MARK[0] else pid_now()
        subject = self.subject
        common = self._record_base
        # the common case: no event subject, the tracker's subject unchanged since the
        # last event, only emitters of ours: the record is made from the event's own
        # fields and the tracker's, encoded once (record.CommonFields)
        try:
            fast = (event._event_subject is None and subject is not None
                    and common.source is subject._wire and not self._input_emitters)
            pairs = event.payload.nv_pairs
        except AttributeError:
            fast = False  # _complete() says what is wrong
        parts: dict[str, str] | None = None
        if fast and (type(pairs) is PayloadPairs or all_text(pairs)):
            if event._has_json or event._context or event._true_timestamp is not None:
                parts = {}  # what this library encodes (the event is never changed)
                event._add_parts(parts, self.encode_base64, self.json_encoder)
                if "e" in parts and parts["e"] == pairs.get("e"):
                    del parts["e"]  # a self-describing event says "ue" itself already
            nv = None
        else:
            nv = self._complete(event)
        pool = _pool
        if pool.pid == pid:
            try:
                eid = pool.ids.pop()
            except IndexError:
                eid = new_event_id(pid)
        else:
            eid = new_event_id(pid)
        ms = _time_ns() // 1_000_000
        last = _last_dtm
        dtm = last[1] if last[0] == ms else _dtm_of(ms)
        if nv is None:
            record = common.record(pairs, eid, dtm, parts)
        else:
            nv["eid"] = eid
            nv["dtm"] = dtm
            record = record_of(nv)
        only = self._single_admit
        if only is not None:  # the common case: one emitter, one of ours
            only(record, pid)
            return eid
        for emitter in self._engine_emitters:
            emitter.admit_record(record, pid)  # bytes: shared, never changed
        if self._input_emitters:
            payload = nv if nv is not None else payload_of(record)  # (an emitter added meanwhile)
            for other in self._input_emitters:
                other.input(dict(payload))
        return eid

    def flush(self, is_async: bool = False, timeout: float | None = None) -> bool:
        """Flush every emitter. Blocking (default): wait until everything tracked before the
        call is delivered or failed for good (True) or *timeout* passes (False; default
        each emitter's ``flush_timeout``). ``is_async=True``: trigger and return.

        Unlike the reference, this returns a bool, not the tracker. A number as the first
        argument (``flush(5)``) is ``is_async`` as in the reference, so it does not wait: a
        ``UserWarning`` says to pass ``timeout=`` instead.

        An emitter that is not ours is flushed as the reference does, by the methods it
        has: ``sync_flush()`` (blocking; ``flush()`` if it has only that, where the
        reference skips it) or ``flush()`` (``is_async``); one with neither is skipped.
        What they return is ignored, and what they raise is raised.
        """
        if type(is_async) in (int, float):  # not bool: its type is bool
            warnings.warn(f"Tracker.flush({is_async!r}) does not wait: its first argument "
                          f"is is_async, as in the reference; pass timeout={is_async!r} to "
                          "wait up to that many seconds", UserWarning, stacklevel=2)
        ok = True
        for emitter in self.emitters:
            if isinstance(emitter, Emitter):
                if is_async:
                    emitter.async_flush()
                else:
                    ok = emitter.flush(timeout) and ok
            elif not is_async and hasattr(emitter, "sync_flush"):
                emitter.sync_flush()
            elif hasattr(emitter, "flush"):
                emitter.flush()
        return ok

    def close(self, timeout: float | None = None) -> bool:
        """Close every emitter of this tracker (see :meth:`Emitter.close`)."""
        ok = True
        for emitter in self._engine_emitters:
            ok = emitter.close(timeout) and ok
        return ok

    def stats(self) -> EmitterStats:
        """The summed counters of this tracker's emitters."""
        total = EmitterStats()
        for emitter in self._engine_emitters:
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
            self._engine_emitters = (*self._engine_emitters, emitter)
        else:
            self._input_emitters = (*self._input_emitters, emitter)
        self._single_admit = (_admit_of(self._engine_emitters[0])
                      if len(self._engine_emitters) == 1 and not self._input_emitters else None)
        return self

    def get_namespace(self) -> str:
        return str(self.standard_nv_pairs["tna"])

    def __repr__(self) -> str:
        return f"Tracker({self.get_namespace()!r}, emitters={self.emitters!r})"

"""Every emitter setting, declared once: its default, its check and what it does.

:class:`EmitterSettings` is the one place a setting lives. ``Emitter``, ``AsyncEmitter``
and :class:`~snowplow_threaded.EmitterConfiguration` take each field by name (the
reference's settings also by position, in the reference's order), the web integrations
accept the same names (``contrib/config.py``), and ``docs/settings.md`` holds
:func:`markdown_table` (a test keeps them equal). Adding a setting is one field here, plus
its use in the engine.

An instance is validated once, when it is made (``TypeError``/``ValueError`` naming the
field), and never changes afterwards: an emitter's engine is handed one whole.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import sys
import warnings
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

import requests

from .contracts import positive_int, positive_number
from .event_store import (
    DEFAULT_BUFFER_CAPACITY,
    DEFAULT_BUFFER_MAX_BYTES,
    DROP_NEWEST,
    WHEN_FULL,
    BatchStore,
    EventStore,
)
from .typing import DropCallback, FailureCallback, RequestTimeout, SuccessCallback

Check = Callable[[Any, str], None]

#: The batch size for POST when ``batch_size`` is not set (GET sends one event a request).
DEFAULT_BATCH_SIZE = 10


# -- checks: each raises TypeError/ValueError naming the setting -------------------------------
def _optional(check: Check) -> Check:
    def run(value: Any, name: str) -> None:
        if value is not None:
            check(value, name)
    return run


def _callable(value: Any, name: str) -> None:
    if not callable(value):
        raise TypeError(f"{name} must be callable, got {type(value).__name__}")


def _timeout(value: Any, name: str) -> None:
    if isinstance(value, tuple):
        if len(value) != 2:
            raise ValueError(f"{name} must be a number or a (connect, read) pair")
        for part in value:
            positive_number(part, name)
    else:
        positive_number(value, name)


def _retry_codes(value: Any, name: str) -> None:
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a dict of int status code -> bool")
    for code, retry in value.items():
        check_retry_code(code, retry, name)


def check_retry_code(code: Any, retry: Any, name: str = "custom_retry_codes") -> None:
    """Raise unless *code* is a non-2xx HTTP status code and *retry* a bool."""
    if isinstance(code, bool) or not isinstance(code, int):
        raise TypeError(f"{name}: status code must be an int, got {code!r}")
    if not 100 <= code <= 599:
        raise ValueError(f"{name}: {code} is not an HTTP status code")
    if 200 <= code < 300:
        raise ValueError(f"{name}: 2xx codes are successes and cannot be retried ({code})")
    if not isinstance(retry, bool):
        raise TypeError(f"{name}: retry must be a bool, got {retry!r}")


def _event_store(value: Any, name: str) -> None:
    needed = ("add_event", "get_events_batch", "cleanup", "size")
    ours = ("put", "take", "settle", "oldest_seq")
    if not (all(hasattr(value, m) for m in ours) or all(hasattr(value, m) for m in needed)):
        raise TypeError(f"{name} must implement the EventStore protocol ({', '.join(needed)})")


def _session(value: Any, name: str) -> None:
    if not isinstance(value, requests.Session):
        raise TypeError(f"{name} must be a requests.Session, got {type(value).__name__}")


def _when_full(value: Any, name: str) -> None:
    if value not in WHEN_FULL:
        raise ValueError(f"{name} must be one of {WHEN_FULL}, got {value!r}")


def _drop_policy(value: Any, name: str) -> None:
    if value not in WHEN_FULL[:2]:
        raise ValueError(f"{name} must be one of {WHEN_FULL[:2]}, got {value!r}")


def _non_negative(value: Any, name: str) -> None:
    positive_number(value, name, allow_zero=True)


def _non_negative_int(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value!r}")


def about(check: Check, doc: str, shown: str | None = None) -> dict[str, Any]:
    """The metadata of a field of :class:`EmitterSettings`: the *check* a value must pass,
    one line of *doc*, and (*shown*) the default as the docs table writes it."""
    return {"check": check, "doc": doc, "shown": shown}


@dataclass(frozen=True)
class EmitterSettings:
    """Every setting of an emitter, checked when made. The reference's settings come
    first, in the order of its ``EmitterConfiguration``; the rest are keyword-only."""

    batch_size: int | None = field(default=None, metadata=about(
        _optional(positive_int), "a batch is due when this many events wait",
        f"{DEFAULT_BATCH_SIZE} (POST), 1 (GET)"))
    on_success: SuccessCallback | None = field(default=None, metadata=about(
        _optional(_callable),
        "`f(sent_payloads)` after each delivered request, on a worker thread", "none"))
    on_failure: FailureCallback | None = field(default=None, metadata=about(
        _optional(_callable), "`f(success_count, failed_payloads)` after each failed "
        "attempt (and for events given up at close), on a worker thread", "none"))
    byte_limit: int | None = field(default=None, metadata=about(
        _optional(positive_int),
        "a batch is also due at about this many bytes; caps a POST body (the reference "
        "sends once this many bytes wait, so its bodies may be larger: "
        "[porting.md](porting.md))", "none"))
    request_timeout: RequestTimeout | None = field(default=None, metadata=about(
        _optional(_timeout), "seconds, or `(connect, read)`, for one request",
        "(5, 10) s"))
    buffer_capacity: int | None = field(default=None, metadata=about(
        _optional(positive_int),
        "most events held (waiting, retrying and in flight) by the default store; "
        "`buffer_max_bytes` bounds its memory", f"{DEFAULT_BUFFER_CAPACITY:,}".replace(",", " ")))
    custom_retry_codes: dict[int, bool] = field(default_factory=dict, metadata=about(
        _optional(_retry_codes), "`{status: retry?}`; by default 400, 401, 403, 410, "
        "413 and 422 are not retried (the events refused are singled out: "
        "[design.md](design.md)), every other failure is", "{}"))
    event_store: EventStore | BatchStore | None = field(default=None, metadata=about(
        _optional(_event_store),
        "where events wait: `DiskEventStore(directory)` keeps them on disk through "
        "crashes and outages ([disk-buffer.md](disk-buffer.md)); any store with the "
        "reference's 4 methods also works",
        "`InMemoryEventStore`"))
    session: requests.Session | None = field(default=None, metadata=about(
        _optional(_session), "a `requests.Session` to send with instead, shared by "
        "the workers (its cookie policy, proxies and `verify` are yours; in a forked child "
        "it gets fresh connection pools)", "none: one keep-alive socket per worker"))
    _: KW_ONLY
    max_retry_delay_seconds: float = field(default=60.0, metadata=about(
        positive_number, "cap of the backoff and of `Retry-After`", "60 s"))
    thread_count: int = field(default=1, metadata=about(
        positive_int, "sender threads, each with its own keep-alive connection", "1"))
    flush_interval: float = field(default=1.0, metadata=about(
        positive_number, "most seconds an event waits for a full batch", "1.0 s"))
    flush_timeout: float = field(default=10.0, metadata=about(
        _non_negative, "default deadline of `flush()`", "10 s"))
    shutdown_timeout: float = field(default=5.0, metadata=about(
        _non_negative, "default deadline of `close()` and of the flush at exit", "5 s"))
    buffer_max_bytes: int = field(default=DEFAULT_BUFFER_MAX_BYTES, metadata=about(
        positive_int, "most memory the default store's events take (each counted as its "
        "JSON plus 48 bytes); see below for the default", "12 MiB"))
    when_full: str = field(default=DROP_NEWEST, metadata=about(
        _when_full, 'a new event when the buffer is full: `"drop_newest"` drops it, '
        '`"drop_oldest"` drops the oldest waiting ones, `"block"` makes `track()` wait for '
        "room up to `block_timeout` (never while the collector is failing); see below",
        '`"drop_newest"`'))
    block_timeout: float = field(default=1.0, metadata=about(
        _non_negative, 'most seconds a `track()` waits for room with `when_full="block"` '
        "(then it drops the event)", "1.0 s"))
    on_drop: DropCallback | None = field(default=None, metadata=about(
        _optional(_callable), "`f(reason, count)` when events are dropped (reasons as in "
        "`stats().dropped`), at most about once a second while drops go on, and at "
        "`flush()`/`close()`", "none"))
    max_events_per_request: int | None = field(default=None, metadata=about(
        _optional(positive_int), "a backlog is coalesced into POSTs of up to this many "
        "events (never fewer than `batch_size`); `max_request_bytes` caps them anyway",
        "none: the bytes decide"))
    max_request_bytes: int = field(default=1_000_000, metadata=about(
        positive_int, "most bytes in one POST body (an event larger than that goes alone)",
        "1 000 000"))
    max_retries: int | None = field(default=None, metadata=about(
        _optional(_non_negative_int), "give a batch up after this many retries",
        "none (retry until delivered or closed)"))
    drop_policy: str | None = field(default=None, metadata=about(
        _optional(_drop_policy), "deprecated: the name `when_full` had before "
        "(`\"drop_newest\"` or `\"drop_oldest\"`)", "none"))

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            item.metadata["check"](getattr(self, item.name), item.name)
        # a private copy: the caller's dict may change, this one never does
        object.__setattr__(self, "custom_retry_codes", dict(self.custom_retry_codes or {}))
        if self.drop_policy is not None:
            if self.when_full not in (DROP_NEWEST, self.drop_policy):
                raise ValueError(f"when_full={self.when_full!r} and drop_policy="
                                 f"{self.drop_policy!r} disagree; pass when_full only")
            warnings.warn("drop_policy is deprecated: use when_full (the same values, and "
                          "'block')", DeprecationWarning, stacklevel=_caller_level())
            object.__setattr__(self, "when_full", self.drop_policy)
            object.__setattr__(self, "drop_policy", None)  # said once, as when_full

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> EmitterSettings:
        """Settings from a mapping of names to values; an unknown name raises
        ``TypeError`` naming it and every known one."""
        unknown = [name for name in values if name not in NAMES]
        if unknown:
            raise TypeError(f"unknown emitter setting {unknown[0]!r}; known: {', '.join(NAMES)}")
        return cls(**values)

    def changed(self) -> dict[str, Any]:
        """The settings that differ from their defaults, by name."""
        return {name: value for name, value in self.as_dict().items()
                if value != DEFAULTS[name]}

    def as_dict(self) -> dict[str, Any]:
        """Every setting by name (values as they are, not copied)."""
        return {name: getattr(self, name) for name in NAMES}

    def batch_size_for(self, method: str) -> int:
        """The batch size in effect: ``batch_size``, else 10 for POST and 1 for GET; never
        more than ``buffer_capacity``."""
        size = self.batch_size or (DEFAULT_BATCH_SIZE if method == "post" else 1)
        return min(size, self.capacity)

    @property
    def capacity(self) -> int:
        """``buffer_capacity``, or the default store's capacity."""
        return DEFAULT_BUFFER_CAPACITY if self.buffer_capacity is None else self.buffer_capacity


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _caller_level() -> int:
    """The stack level, for ``warnings.warn`` in the caller of this function, of the first
    frame outside this package (and outside the code ``dataclasses`` generates)."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and (frame.f_code.co_filename.startswith(_PACKAGE)
                                        or frame.f_code.co_filename.startswith("<")):
        frame, level = frame.f_back, level + 1
    return level


#: every setting's name, in declaration order
NAMES: tuple[str, ...] = tuple(item.name for item in dataclasses.fields(EmitterSettings))


def _default(item: dataclasses.Field[Any]) -> Any:
    factory = item.default_factory
    return item.default if factory is dataclasses.MISSING else factory()


#: every setting's default
DEFAULTS: dict[str, Any] = {item.name: _default(item)
                            for item in dataclasses.fields(EmitterSettings)}
#: the settings the reference's ``EmitterConfiguration`` takes by position, in its order
POSITIONAL: tuple[str, ...] = tuple(
    name for name, param in inspect.signature(EmitterSettings).parameters.items()
    if param.kind is param.POSITIONAL_OR_KEYWORD)


def keyword_signature(function: Callable[..., Any]) -> inspect.Signature:
    """*function*'s signature with its ``**settings`` spelt out: every setting it does not
    name itself, keyword-only, with its default (for ``help()`` and ``inspect``)."""
    signature = inspect.signature(function)
    params = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    taken = {p.name for p in params}
    params += [inspect.Parameter(item.name, inspect.Parameter.KEYWORD_ONLY,
                                 default=_default(item), annotation=item.type)
               for item in dataclasses.fields(EmitterSettings) if item.name not in taken]
    return signature.replace(parameters=params)


def markdown_table() -> str:
    """The settings table of ``docs/settings.md``: name, default, what it does."""
    rows = ["| setting | default | meaning |", "| --- | --- | --- |"]
    rows += [f"| `{item.name}` | {item.metadata['shown'] or f'`{item.default!r}`'} | "
             f"{item.metadata['doc']} |" for item in dataclasses.fields(EmitterSettings)]
    return "\n".join(rows) + "\n"

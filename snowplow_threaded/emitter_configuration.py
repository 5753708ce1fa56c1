"""EmitterConfiguration: every emitter setting, checked when it is set.

The same checks run when an :class:`~snowplow_threaded.Emitter` is built directly, so a bad
value always fails at the call site with ``TypeError``/``ValueError`` naming the field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import requests

from .contracts import positive_int, positive_number
from .event_store import DEFAULT_BUFFER_MAX_BYTES, DROP_NEWEST, WHEN_FULL, EventStore
from .typing import DropCallback, FailureCallback, RequestTimeout, SuccessCallback

#: Defaults of the engine settings (the reference's settings keep the reference defaults).
DEFAULTS: dict[str, Any] = {
    "batch_size": None,  # 10 for POST, 1 for GET
    "on_success": None,
    "on_failure": None,
    "byte_limit": None,
    "request_timeout": None,  # (5 s connect, 10 s read)
    "buffer_capacity": None,  # 100 000
    "custom_retry_codes": None,
    "event_store": None,
    "session": None,
    "max_retry_delay_seconds": 60.0,
    "thread_count": 1,
    "flush_interval": 1.0,
    "flush_timeout": 10.0,
    "shutdown_timeout": 5.0,
    "buffer_max_bytes": DEFAULT_BUFFER_MAX_BYTES,
    "when_full": DROP_NEWEST,
    "block_timeout": 1.0,
    "on_drop": None,
    "drop_policy": None,  # deprecated: when_full
    "max_events_per_request": None,  # no count limit: max_request_bytes decides
    "max_request_bytes": 1_000_000,
    "max_retries": None,
}


def _optional(check: Callable[[Any, str], None]) -> Callable[[Any, str], None]:
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
        _retry_code(code, retry, name)


def _retry_code(code: Any, retry: Any, name: str) -> None:
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


CHECKS: dict[str, Callable[[Any, str], None]] = {
    "batch_size": _optional(positive_int),
    "on_success": _optional(_callable),
    "on_failure": _optional(_callable),
    "byte_limit": _optional(positive_int),
    "request_timeout": _optional(_timeout),
    "buffer_capacity": _optional(positive_int),
    "custom_retry_codes": _optional(_retry_codes),
    "event_store": _optional(_event_store),
    "session": _optional(_session),
    "max_retry_delay_seconds": positive_number,
    "thread_count": positive_int,
    "flush_interval": positive_number,
    "flush_timeout": _non_negative,
    "shutdown_timeout": _non_negative,
    "buffer_max_bytes": positive_int,
    "when_full": _when_full,
    "block_timeout": _non_negative,
    "on_drop": _optional(_callable),
    "drop_policy": _optional(_drop_policy),
    "max_events_per_request": _optional(positive_int),
    "max_request_bytes": positive_int,
    "max_retries": _optional(_non_negative_int),
}


def check_setting(name: str, value: Any) -> None:
    """Raise ``TypeError``/``ValueError`` naming *name* if *value* is not allowed."""
    CHECKS[name](value, name)


class EmitterConfiguration:
    """Settings for the emitter built by :meth:`Snowplow.create_tracker`.

    The reference's fields (``batch_size``, ``on_success``, ``on_failure``, ``byte_limit``,
    ``request_timeout``, ``buffer_capacity``, ``custom_retry_codes``, ``event_store``,
    ``session``) plus the engine's (``max_retry_delay_seconds``, ``thread_count``,
    ``flush_interval``, ``flush_timeout``, ``shutdown_timeout``, ``buffer_max_bytes``,
    ``when_full``, ``block_timeout``, ``on_drop``, ``max_events_per_request``,
    ``max_request_bytes``, ``max_retries``; ``drop_policy``, deprecated: ``when_full``); see
    :class:`~snowplow_threaded.Emitter` for what each does. Every field is honoured, and
    each instance has its own ``custom_retry_codes`` dict (no shared mutable default).
    """

    batch_size: int | None
    on_success: SuccessCallback | None
    on_failure: FailureCallback | None
    byte_limit: int | None
    request_timeout: RequestTimeout | None
    buffer_capacity: int | None
    custom_retry_codes: dict[int, bool]
    event_store: EventStore | None
    session: requests.Session | None
    max_retry_delay_seconds: float
    thread_count: int
    flush_interval: float
    flush_timeout: float
    shutdown_timeout: float
    buffer_max_bytes: int
    when_full: str
    block_timeout: float
    on_drop: DropCallback | None
    drop_policy: str | None
    max_events_per_request: int | None
    max_request_bytes: int
    max_retries: int | None

    def __init__(
        self,
        batch_size: int | None = None,
        on_success: SuccessCallback | None = None,
        on_failure: FailureCallback | None = None,
        byte_limit: int | None = None,
        request_timeout: RequestTimeout | None = None,
        buffer_capacity: int | None = None,
        custom_retry_codes: dict[int, bool] | None = None,
        event_store: EventStore | None = None,
        session: requests.Session | None = None,
        *,
        max_retry_delay_seconds: float = DEFAULTS["max_retry_delay_seconds"],
        thread_count: int = DEFAULTS["thread_count"],
        flush_interval: float = DEFAULTS["flush_interval"],
        flush_timeout: float = DEFAULTS["flush_timeout"],
        shutdown_timeout: float = DEFAULTS["shutdown_timeout"],
        buffer_max_bytes: int = DEFAULTS["buffer_max_bytes"],
        when_full: str = DEFAULTS["when_full"],
        block_timeout: float = DEFAULTS["block_timeout"],
        on_drop: DropCallback | None = DEFAULTS["on_drop"],
        drop_policy: str | None = DEFAULTS["drop_policy"],
        max_events_per_request: int | None = DEFAULTS["max_events_per_request"],
        max_request_bytes: int = DEFAULTS["max_request_bytes"],
        max_retries: int | None = DEFAULTS["max_retries"],
    ) -> None:
        values = dict(locals())
        del values["self"]
        for name in DEFAULTS:
            setattr(self, name, values[name])

    def __setattr__(self, name: str, value: Any) -> None:
        if name in CHECKS:
            check_setting(name, value)
            if name == "custom_retry_codes":
                value = dict(value or {})
        object.__setattr__(self, name, value)

    def set_retry_code(self, status_code: int, retry: bool = True) -> bool:
        """Retry (or never retry) batches answered with *status_code*.

        Raises ``TypeError``/``ValueError`` for a non-int code, a 2xx code or a non-bool
        *retry* (the reference prints and returns False). Returns True.
        """
        _retry_code(status_code, retry, "custom_retry_codes")
        self.custom_retry_codes[status_code] = retry
        return True

    def as_kwargs(self) -> dict[str, Any]:
        """The settings as keyword arguments of :class:`~snowplow_threaded.Emitter`."""
        return {name: getattr(self, name) for name in DEFAULTS}

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={v!r}" for k, v in self.as_kwargs().items() if v != DEFAULTS[k])
        return f"EmitterConfiguration({body})"

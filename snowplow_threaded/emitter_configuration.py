"""EmitterConfiguration: the reference's mutable settings object, over
:class:`~.settings.EmitterSettings`.

Every field of :class:`~.settings.EmitterSettings` is an attribute, checked when it is set,
so a bad value always fails at the call site with ``TypeError``/``ValueError`` naming it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import requests

from .event_store import EventStore
from .settings import NAMES, EmitterSettings, check_retry_code, keyword_signature
from .typing import FailureCallback, RequestTimeout, SuccessCallback


class EmitterConfiguration:
    """Settings for the emitter built by :meth:`Snowplow.create_tracker`.

    The reference's fields, by position in its order (``batch_size``, ``on_success``,
    ``on_failure``, ``byte_limit``, ``request_timeout``, ``buffer_capacity``,
    ``custom_retry_codes``, ``event_store``, ``session``), and every other setting of
    :class:`~.settings.EmitterSettings` by keyword; ``docs/settings.md`` says what each
    does. Every field is honoured, and each instance has its own ``custom_retry_codes``
    dict (no shared mutable default). :attr:`settings` is the current value as a whole.
    """

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
        **settings: Any,
    ) -> None:
        given = {k: v for k, v in locals().items() if k in NAMES}
        object.__setattr__(self, "_settings", EmitterSettings.of({**given, **settings}))

    @property
    def settings(self) -> EmitterSettings:
        """Every setting as it is now (a frozen value: later changes here make a new one)."""
        value: EmitterSettings = self.__dict__["_settings"]
        return value

    def __getattr__(self, name: str) -> Any:
        if name in NAMES:
            return getattr(self.settings, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in NAMES:
            object.__setattr__(self, "_settings",
                               dataclasses.replace(self.settings, **{name: value}))
        else:
            object.__setattr__(self, name, value)

    def set_retry_code(self, status_code: int, retry: bool = True) -> bool:
        """Retry (or never retry) batches answered with *status_code*.

        Raises ``TypeError``/``ValueError`` for a non-int code, a 2xx code or a non-bool
        *retry* (the reference prints and returns False). Returns True.
        """
        check_retry_code(status_code, retry)
        self.custom_retry_codes = {**self.settings.custom_retry_codes, status_code: retry}
        return True

    def as_kwargs(self) -> dict[str, Any]:
        """The settings as keyword arguments of :class:`~snowplow_threaded.Emitter`."""
        return self.settings.as_dict()

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={v!r}" for k, v in self.settings.changed().items())
        return f"EmitterConfiguration({body})"


EmitterConfiguration.__init__.__signature__ = keyword_signature(  # type: ignore[attr-defined]
    EmitterConfiguration.__init__)

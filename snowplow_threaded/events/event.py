"""Event: the fields every event type shares (context, true timestamp, event subject)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

from ..contracts import optional_timestamp
from ..payload import (
    Payload,
    PayloadPairs,
    as_text,
    b64encode_text,
    encode_json,
    encoder_for,
)
from ..self_describing_json import SelfDescribingJson
from ..subject import Subject
from ..typing import JsonEncoderFunction, PayloadDict

CONTEXT_SCHEMA = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1"
UNSTRUCT_EVENT_SCHEMA = "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0"


# The envelopes are written as text around each entity's encoded data: the same bytes as
# json.dumps of the nested dicts (schema URIs are validated Iglu URIs: no character in
# them needs escaping), with one encoder call per entity's data instead of a full dump.
_UE_HEAD = '{"schema": "' + UNSTRUCT_EVENT_SCHEMA + '", "data": '
_CO_HEAD = '{"schema": "' + CONTEXT_SCHEMA + '", "data": ['
#: ``map(isinstance, entities, _SDJ)``: the context check without a Python-level loop.
#: Shared by every thread without a lock: an endless ``repeat`` has no state to change.
_SDJ = itertools.repeat(SelfDescribingJson)


def _checked(json_encoder: JsonEncoderFunction | None) -> Callable[[Any, str], str]:
    def encode(value: Any, what: str) -> str:
        return encode_json(value, what, json_encoder)

    return encode


class Event:
    """Base of all events; ``Event(dict_=...)`` tracks raw tracker-protocol fields.

    :param dict_: extra name/value pairs (tracker-protocol keys) for the payload
    :param event_subject: a :class:`Subject` whose *set* fields override the tracker's
    :param context: context entities (:class:`SelfDescribingJson`) sent in ``co``/``cx``
    :param true_timestamp: the event's true time, in milliseconds since the epoch (``ttm``)

    Tracking never changes the event object: every ``track()`` builds a fresh payload, so
    one event object can be tracked many times and each gets its own ``eid``.
    """

    #: whether this class overrides :meth:`self_describing_json` (set for each subclass)
    _has_json = False
    #: whether this class keeps the property setters ``__init__`` may skip (else a
    #: subclass's own setters run on every construction)
    _own_setters = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._has_json = cls.self_describing_json is not Event.self_describing_json
        cls._own_setters = all(getattr(cls, name) is getattr(Event, name)
                               for name in ("event_subject", "context", "true_timestamp"))

    def __init__(
        self,
        dict_: PayloadDict | None = None,
        event_subject: Subject | None = None,
        context: list[SelfDescribingJson] | None = None,
        true_timestamp: float | None = None,
    ) -> None:
        self.payload = Payload(dict_=dict_)
        if event_subject is None and true_timestamp is None and self._own_setters:
            # common case: no setter calls (context checked inline, as its setter does)
            self._event_subject: Subject | None = None
            self._true_timestamp: float | None = None
            if context is None:
                self._context: list[SelfDescribingJson] = []
                return
            if type(context) is list and all(map(isinstance, context, _SDJ)):
                self._context = context.copy()
                return
        self.event_subject = event_subject
        self.context = context
        self.true_timestamp = true_timestamp

    @property
    def context(self) -> list[SelfDescribingJson]:
        return self._context

    @context.setter
    def context(self, value: Sequence[SelfDescribingJson] | None) -> None:
        if value is None:
            self._context = []
            return
        if type(value) is list and all(map(isinstance, value, _SDJ)):
            self._context = value.copy()
            return
        if isinstance(value, (str, bytes, dict)) or not isinstance(value, Sequence):
            raise TypeError(f"context must be a list of SelfDescribingJson, got {value!r}")
        for entity in value:
            if not isinstance(entity, SelfDescribingJson):
                raise TypeError(
                    f"context entities must be SelfDescribingJson, got {type(entity).__name__}"
                )
        self._context = list(value)

    @property
    def true_timestamp(self) -> float | None:
        return self._true_timestamp

    @true_timestamp.setter
    def true_timestamp(self, value: float | None) -> None:
        optional_timestamp(value, "true_timestamp")
        self._true_timestamp = value

    @property
    def event_subject(self) -> Subject | None:
        return self._event_subject

    @event_subject.setter
    def event_subject(self, value: Subject | None) -> None:
        if value is not None and not isinstance(value, Subject):
            raise TypeError(f"event_subject must be a Subject, got {type(value).__name__}")
        self._event_subject = value

    def _add_json(self, nv: dict[str, Any], sdj: SelfDescribingJson | None,
                  encode: Callable[[Any, str], str], encode_base64: bool) -> None:
        if sdj is not None:
            nv["e"] = "ue"
            text = (_UE_HEAD + '{"schema": "' + sdj.schema + '", "data": '
                    + encode(sdj.data, "self-describing event data") + "}}")
            if encode_base64:
                nv["ue_px"] = b64encode_text(text)
            else:
                nv["ue_pr"] = text
        if self._context:
            text = _CO_HEAD + ", ".join([
                '{"schema": "' + c.schema + '", "data": ' + encode(c.data, "context") + "}"
                for c in self._context
            ]) + "]}"
            if encode_base64:
                nv["cx"] = b64encode_text(text)
            else:
                nv["co"] = text

    def self_describing_json(self) -> SelfDescribingJson | None:
        """The self-describing JSON sent in ``ue_pr``/``ue_px``; ``None`` for other events."""
        return None

    def build_payload(
        self,
        encode_base64: bool,
        json_encoder: JsonEncoderFunction | None,
        subject: Subject | None = None,
    ) -> Payload:
        """A new :class:`Payload` of this event's fields (the event is not modified).

        Raises ``TypeError`` if a JSON part is not serialisable, ``ValueError`` for NaN.
        """
        result = Payload()
        result.nv_pairs = self._build(encode_base64, json_encoder, subject)
        return result

    def _build(
        self,
        encode_base64: bool,
        json_encoder: JsonEncoderFunction | None,
        subject: Subject | None,
    ) -> dict[str, Any]:
        nv = self._build_body(encode_base64, json_encoder)
        self._add_subject(nv, subject)
        return nv

    def _add_subject(self, nv: dict[str, Any], subject: Subject | None) -> None:
        """Add the subject fields to *nv*: the tracker's *subject*, overridden by what this
        event's own subject set."""
        if self._event_subject is not None:
            if subject is not None:
                nv.update(subject.wire_pairs())
                nv.update(self._event_subject.explicit_wire_pairs())
            else:
                nv.update(self._event_subject.wire_pairs())
        elif subject is not None:
            nv.update(subject.wire_pairs())

    def _build_body(
        self, encode_base64: bool, json_encoder: JsonEncoderFunction | None
    ) -> dict[str, Any]:
        """This event's own fields (no subject): a fresh dict of strings, as sent, so the
        event object is never modified."""
        pairs = self.payload.nv_pairs
        if type(pairs) is PayloadPairs or all_text(pairs):
            nv = pairs.copy()
        else:  # a plain dict assigned to payload.nv_pairs, holding a number, say
            nv = {name: as_text(value) for name, value in pairs.items()}
        self._add_parts(nv, encode_base64, json_encoder)
        return nv

    def _add_parts(
        self, nv: dict[str, Any], encode_base64: bool, json_encoder: JsonEncoderFunction | None
    ) -> None:
        """Add the parts of this event that are not plain fields: the JSON of the
        self-describing event and of the context entities, and ``ttm``."""
        sdj = self.self_describing_json() if self._has_json else None
        if sdj is not None or self._context:
            try:
                self._add_json(nv, sdj, encoder_for(json_encoder), encode_base64)
            except (TypeError, ValueError, RecursionError):
                # encode again part by part, for an error that names the failing part
                self._add_json(nv, sdj, _checked(json_encoder), encode_base64)
                raise
        if self._true_timestamp is not None:
            nv["ttm"] = str(int(self._true_timestamp))


def all_text(pairs: dict[str, Any]) -> bool:
    """Whether every value of *pairs* is an exact ``str`` (a subclass is converted by
    ``as_text``: its ``str()`` may not be its text). For a plain dict assigned to
    ``nv_pairs``; a ``PayloadPairs`` holds exact strings already."""
    return all(type(value) is str for value in pairs.values())

"""SelfDescribing (``e=ue``): an event defined by its own Iglu schema."""

from __future__ import annotations

from typing import Any

from ..payload import put_text
from ..self_describing_json import SelfDescribingJson
from ..subject import Subject
from .event import Event


class SelfDescribing(Event):
    """A self-describing event; ``event_json`` is sent wrapped in ``unstruct_event/1-0-0``."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._own_setters = cls._own_setters and cls.event_json is SelfDescribing.event_json

    def __init__(
        self,
        event_json: SelfDescribingJson,
        event_subject: Subject | None = None,
        context: list[SelfDescribingJson] | None = None,
        true_timestamp: float | None = None,
    ) -> None:
        super().__init__(event_subject=event_subject, context=context,
                         true_timestamp=true_timestamp)
        put_text(self.payload.nv_pairs, "e", "ue")
        if type(event_json) is SelfDescribingJson and self._own_setters:
            self._event_json = event_json
        else:
            self.event_json = event_json  # the setter's check, or a subclass's own setter

    @property
    def event_json(self) -> SelfDescribingJson:
        return self._event_json

    @event_json.setter
    def event_json(self, value: SelfDescribingJson) -> None:
        if not isinstance(value, SelfDescribingJson):
            raise TypeError(f"event_json must be a SelfDescribingJson, got {type(value).__name__}")
        self._event_json = value

    def self_describing_json(self) -> SelfDescribingJson:
        return self._event_json

"""SelfDescribing (``e=ue``): an event defined by its own Iglu schema."""

from __future__ import annotations

from ..payload import put_text
from ..self_describing_json import SelfDescribingJson
from ..subject import Subject
from .event import Event


class SelfDescribing(Event):
    """A self-describing event; ``event_json`` is sent wrapped in ``unstruct_event/1-0-0``."""

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
        if type(event_json) is not SelfDescribingJson:
            self.event_json = event_json  # the setter's check, for anything else
        else:
            self._event_json = event_json

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

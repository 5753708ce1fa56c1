"""ScreenView: the mobile ``screen_view/1-0-0`` self-describing event."""

from __future__ import annotations

from ..contracts import required_text
from ..self_describing_json import SelfDescribingJson
from ..subject import Subject
from .event import Event

SCREEN_VIEW_SCHEMA = "iglu:com.snowplowanalytics.mobile/screen_view/jsonschema/1-0-0"

_OPTIONAL = {
    "type": "type",
    "previous_name": "previousName",
    "previous_id": "previousId",
    "previous_type": "previousType",
    "transition_type": "transitionType",
}


class ScreenView(Event):
    """A screen view: ``id_`` (a UUID) and ``name`` required; previous screen optional."""

    def __init__(
        self,
        id_: str,
        name: str,
        type: str | None = None,
        previous_name: str | None = None,
        previous_id: str | None = None,
        previous_type: str | None = None,
        transition_type: str | None = None,
        event_subject: Subject | None = None,
        context: list[SelfDescribingJson] | None = None,
        true_timestamp: float | None = None,
    ) -> None:
        super().__init__(event_subject=event_subject, context=context,
                         true_timestamp=true_timestamp)
        self.payload.add("e", "ue")
        self.screen_view_properties: dict[str, str] = {}
        self.id_ = id_
        self.name = name
        self.type = type
        self.previous_name = previous_name
        self.previous_id = previous_id
        self.previous_type = previous_type
        self.transition_type = transition_type

    def _set(self, attr: str, value: str | None) -> None:
        key = _OPTIONAL[attr]
        if value is None:
            self.screen_view_properties.pop(key, None)
        else:
            self.screen_view_properties[key] = value

    @property
    def id_(self) -> str:
        return self.screen_view_properties["id"]

    @id_.setter
    def id_(self, value: str) -> None:
        self.screen_view_properties["id"] = required_text(value, "id_")

    @property
    def name(self) -> str:
        return self.screen_view_properties["name"]

    @name.setter
    def name(self, value: str) -> None:
        self.screen_view_properties["name"] = required_text(value, "name")

    @property
    def type(self) -> str | None:
        return self.screen_view_properties.get("type")

    @type.setter
    def type(self, value: str | None) -> None:
        self._set("type", value)

    @property
    def previous_name(self) -> str | None:
        return self.screen_view_properties.get("previousName")

    @previous_name.setter
    def previous_name(self, value: str | None) -> None:
        self._set("previous_name", value)

    @property
    def previous_id(self) -> str | None:
        return self.screen_view_properties.get("previousId")

    @previous_id.setter
    def previous_id(self, value: str | None) -> None:
        self._set("previous_id", value)

    @property
    def previous_type(self) -> str | None:
        return self.screen_view_properties.get("previousType")

    @previous_type.setter
    def previous_type(self, value: str | None) -> None:
        self._set("previous_type", value)

    @property
    def transition_type(self) -> str | None:
        return self.screen_view_properties.get("transitionType")

    @transition_type.setter
    def transition_type(self, value: str | None) -> None:
        self._set("transition_type", value)

    def self_describing_json(self) -> SelfDescribingJson:
        return SelfDescribingJson(SCREEN_VIEW_SCHEMA, dict(self.screen_view_properties))

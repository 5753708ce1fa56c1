"""StructuredEvent (``e=se``): category, action, label, property, value."""

from __future__ import annotations

from ..contracts import finite, required_text
from ..payload import as_text, fill_text, put_text
from ..self_describing_json import SelfDescribingJson
from ..subject import Subject
from .event import Event


class StructuredEvent(Event):
    """A structured event: ``se_ca`` and ``se_ac`` required; ``se_la``, ``se_pr``, ``se_va``.

    ``value`` is kept as given; the payload holds it as sent (its ``str()``).
    """

    def __init__(
        self,
        category: str,
        action: str,
        label: str | None = None,
        property_: str | None = None,
        value: int | float | None = None,
        event_subject: Subject | None = None,
        context: list[SelfDescribingJson] | None = None,
        true_timestamp: float | None = None,
    ) -> None:
        super().__init__(event_subject=event_subject, context=context,
                         true_timestamp=true_timestamp)
        fields = {"e": "se", "se_ca": required_text(category, "category"),
                  "se_ac": required_text(action, "action")}
        if not (fields["se_ca"] and fields["se_ac"]):  # contracts disabled: not sent
            fields = {key: text for key, text in fields.items() if text}
        if type(label) is str and label:  # else the setter's checks and its None/"" rule
            fields["se_la"] = label
        if type(property_) is str and property_:
            fields["se_pr"] = property_
        value_text = _value_text(value)
        self._value = value
        if value_text is not None:
            fields["se_va"] = value_text
        fill_text(self.payload.nv_pairs, fields)  # one call, no per-field conversion
        if "se_la" not in fields:
            self.label = label
        if "se_pr" not in fields:
            self.property_ = property_

    def _set(self, key: str, value: object) -> None:
        if value is None or value == "":
            self.payload.nv_pairs.pop(key, None)
        else:
            put_text(self.payload.nv_pairs, key, as_text(value))

    @property
    def category(self) -> str:
        return str(self.payload.nv_pairs.get("se_ca", ""))

    @category.setter
    def category(self, value: str) -> None:
        self._set("se_ca", required_text(value, "category"))

    @property
    def action(self) -> str:
        return str(self.payload.nv_pairs.get("se_ac", ""))

    @action.setter
    def action(self, value: str) -> None:
        self._set("se_ac", required_text(value, "action"))

    @property
    def label(self) -> str | None:
        return self.payload.nv_pairs.get("se_la")

    @label.setter
    def label(self, value: str | None) -> None:
        self._set("se_la", value)

    @property
    def property_(self) -> str | None:
        return self.payload.nv_pairs.get("se_pr")

    @property_.setter
    def property_(self, value: str | None) -> None:
        self._set("se_pr", value)

    @property
    def value(self) -> int | float | None:
        return self._value

    @value.setter
    def value(self, value: int | float | None) -> None:
        text = _value_text(value)
        self._value = value
        self._set("se_va", text)


def _value_text(value: object) -> str | None:
    """*value* checked (a finite number or None) and as sent."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"value must be a number or None, got {value!r}")
    finite(value, "value")
    return str(value)

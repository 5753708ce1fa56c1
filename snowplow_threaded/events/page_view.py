"""PageView (``e=pv``) and PagePing (``e=pp``)."""

from __future__ import annotations

from ..contracts import finite, required_text
from ..payload import as_text, put_text
from ..self_describing_json import SelfDescribingJson
from ..subject import Subject
from .event import Event


class PageView(Event):
    """A page view: ``url`` (required), ``page`` title and ``refr`` referrer."""

    def __init__(
        self,
        page_url: str,
        page_title: str | None = None,
        referrer: str | None = None,
        event_subject: Subject | None = None,
        context: list[SelfDescribingJson] | None = None,
        true_timestamp: float | None = None,
    ) -> None:
        super().__init__(event_subject=event_subject, context=context,
                         true_timestamp=true_timestamp)
        self.payload.add("e", "pv")
        self.page_url = page_url
        self.page_title = page_title
        self.referrer = referrer

    @property
    def page_url(self) -> str:
        return str(self.payload.nv_pairs.get("url", ""))

    @page_url.setter
    def page_url(self, value: str) -> None:
        text = required_text(value, "page_url")
        if text:
            put_text(self.payload.nv_pairs, "url", text)
        else:  # contracts disabled: not sent
            self.payload.nv_pairs.pop("url", None)

    @property
    def page_title(self) -> str | None:
        return self.payload.nv_pairs.get("page")

    @page_title.setter
    def page_title(self, value: str | None) -> None:
        self._set_optional("page", value)

    @property
    def referrer(self) -> str | None:
        return self.payload.nv_pairs.get("refr")

    @referrer.setter
    def referrer(self, value: str | None) -> None:
        self._set_optional("refr", value)

    def _set_optional(self, key: str, value: object) -> None:
        finite(value, key)
        if value is None or value == "":
            self.payload.nv_pairs.pop(key, None)
        else:
            put_text(self.payload.nv_pairs, key, as_text(value))


class PagePing(PageView):
    """A page ping: a :class:`PageView`'s fields plus the scroll offsets ``pp_mix``...``pp_may``."""

    def __init__(
        self,
        page_url: str,
        page_title: str | None = None,
        referrer: str | None = None,
        min_x: int | None = None,
        max_x: int | None = None,
        min_y: int | None = None,
        max_y: int | None = None,
        event_subject: Subject | None = None,
        context: list[SelfDescribingJson] | None = None,
        true_timestamp: float | None = None,
    ) -> None:
        super().__init__(page_url, page_title, referrer, event_subject=event_subject,
                         context=context, true_timestamp=true_timestamp)
        put_text(self.payload.nv_pairs, "e", "pp")
        self._offsets: dict[str, int | None] = {}
        self.min_x = min_x
        self.max_x = max_x
        self.min_y = min_y
        self.max_y = max_y

    def _set_offset(self, key: str, value: int | None) -> None:
        # kept as given for the property, and in the payload as sent (its str())
        self._set_optional(key, value)
        self._offsets[key] = value
        if value is not None:
            put_text(self.payload.nv_pairs, key, str(value))

    @property
    def min_x(self) -> int | None:
        return self._offsets.get("pp_mix")

    @min_x.setter
    def min_x(self, value: int | None) -> None:
        self._set_offset("pp_mix", value)

    @property
    def max_x(self) -> int | None:
        return self._offsets.get("pp_max")

    @max_x.setter
    def max_x(self, value: int | None) -> None:
        self._set_offset("pp_max", value)

    @property
    def min_y(self) -> int | None:
        return self._offsets.get("pp_miy")

    @min_y.setter
    def min_y(self, value: int | None) -> None:
        self._set_offset("pp_miy", value)

    @property
    def max_y(self) -> int | None:
        return self._offsets.get("pp_may")

    @max_y.setter
    def max_y(self, value: int | None) -> None:
        self._set_offset("pp_may", value)

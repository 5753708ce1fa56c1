"""The reference tracker's ``track_*`` methods, kept for code written against them.

Each warns with ``DeprecationWarning`` (use the event classes instead), builds the same
event the reference builds, tracks it and returns the tracker. Unlike the reference, none
of them modifies the caller's arguments (``track_ecommerce_transaction`` leaves the item
dicts as they were).
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Sequence
from typing import Any, TypeVar

from .contracts import choice, finite, form_element, required_items, required_text
from .events import Event, PagePing, PageView, ScreenView, SelfDescribing, StructuredEvent
from .self_describing_json import SelfDescribingJson
from .subject import Subject
from .typing import FORM_NODE_NAMES, FORM_TYPES, ElementClasses, FormClasses, FormNodeName

_SP = "iglu:com.snowplowanalytics.snowplow"
T = TypeVar("T", bound="LegacyTracking")
Context = list[SelfDescribingJson] | None


def _deprecated(name: str, instead: str) -> None:
    warnings.warn(f"{name} is deprecated; track {instead} with Tracker.track() instead",
                  DeprecationWarning, stacklevel=3)


class LegacyTracking:
    def track(self, event: Event) -> str:  # pragma: no cover - provided by Tracker
        raise NotImplementedError

    def _sd(self, schema: str, data: dict[str, Any], context: Context,
            tstamp: float | None, event_subject: Subject | None) -> None:
        self.track(SelfDescribing(SelfDescribingJson(f"{_SP}/{schema}", data),
                                  event_subject=event_subject, context=context,
                                  true_timestamp=tstamp))

    def track_page_view(self: T, page_url: str, page_title: str | None = None,
                        referrer: str | None = None, context: Context = None,
                        tstamp: float | None = None,
                        event_subject: Subject | None = None) -> T:
        _deprecated("track_page_view", "a PageView")
        self.track(PageView(page_url, page_title, referrer, event_subject=event_subject,
                            context=context, true_timestamp=tstamp))
        return self

    def track_page_ping(self: T, page_url: str, page_title: str | None = None,
                        referrer: str | None = None, min_x: int | None = None,
                        max_x: int | None = None, min_y: int | None = None,
                        max_y: int | None = None, context: Context = None,
                        tstamp: float | None = None,
                        event_subject: Subject | None = None) -> T:
        _deprecated("track_page_ping", "a PagePing")
        self.track(PagePing(page_url, page_title, referrer, min_x, max_x, min_y, max_y,
                            event_subject=event_subject, context=context,
                            true_timestamp=tstamp))
        return self

    def track_link_click(self: T, target_url: str, element_id: str | None = None,
                         element_classes: ElementClasses | None = None,
                         element_target: str | None = None,
                         element_content: str | None = None, context: Context = None,
                         tstamp: float | None = None,
                         event_subject: Subject | None = None) -> T:
        _deprecated("track_link_click", "a SelfDescribing link_click")
        data: dict[str, Any] = {"targetUrl": required_text(target_url, "target_url")}
        for key, value in (("elementId", element_id), ("elementClasses", element_classes),
                           ("elementTarget", element_target),
                           ("elementContent", element_content)):
            if value is not None:
                data[key] = value
        self._sd("link_click/jsonschema/1-0-1", data, context, tstamp, event_subject)
        return self

    def _cart(self, schema: str, sku: str, quantity: int, name: str | None,
              category: str | None, unit_price: float | None, currency: str | None,
              context: Context, tstamp: float | None, event_subject: Subject | None) -> None:
        data: dict[str, Any] = {"sku": required_text(sku, "sku"), "quantity": quantity}
        for key, value in (("name", name), ("category", category),
                           ("unitPrice", unit_price), ("currency", currency)):
            if value is not None:
                data[key] = value
        self._sd(schema, data, context, tstamp, event_subject)

    def track_add_to_cart(self: T, sku: str, quantity: int, name: str | None = None,
                          category: str | None = None, unit_price: float | None = None,
                          currency: str | None = None, context: Context = None,
                          tstamp: float | None = None,
                          event_subject: Subject | None = None) -> T:
        _deprecated("track_add_to_cart", "a SelfDescribing add_to_cart")
        self._cart("add_to_cart/jsonschema/1-0-0", sku, quantity, name, category, unit_price,
                   currency, context, tstamp, event_subject)
        return self

    def track_remove_from_cart(self: T, sku: str, quantity: int, name: str | None = None,
                               category: str | None = None, unit_price: float | None = None,
                               currency: str | None = None, context: Context = None,
                               tstamp: float | None = None,
                               event_subject: Subject | None = None) -> T:
        _deprecated("track_remove_from_cart", "a SelfDescribing remove_from_cart")
        self._cart("remove_from_cart/jsonschema/1-0-0", sku, quantity, name, category,
                   unit_price, currency, context, tstamp, event_subject)
        return self

    def track_form_change(self: T, form_id: str, element_id: str | None,
                          node_name: FormNodeName, value: str | None,
                          type_: str | None = None,
                          element_classes: ElementClasses | None = None,
                          context: Context = None, tstamp: float | None = None,
                          event_subject: Subject | None = None) -> T:
        _deprecated("track_form_change", "a SelfDescribing change_form")
        required_text(form_id, "form_id")
        choice(node_name, FORM_NODE_NAMES, "node_name")
        if type_ is not None:
            choice(type_.lower() if isinstance(type_, str) else type_, FORM_TYPES, "type_")
        data: dict[str, Any] = {"formId": form_id, "elementId": element_id,
                                "nodeName": node_name, "value": value}
        if type_ is not None:
            data["type"] = type_
        if element_classes is not None:
            data["elementClasses"] = element_classes
        self._sd("change_form/jsonschema/1-0-0", data, context, tstamp, event_subject)
        return self

    def track_form_submit(self: T, form_id: str, form_classes: FormClasses | None = None,
                          elements: list[dict[str, Any]] | None = None,
                          context: Context = None, tstamp: float | None = None,
                          event_subject: Subject | None = None) -> T:
        _deprecated("track_form_submit", "a SelfDescribing submit_form")
        required_text(form_id, "form_id")
        for element in elements or []:
            form_element(element)
        data: dict[str, Any] = {"formId": form_id}
        if form_classes is not None:
            data["formClasses"] = form_classes
        if elements:
            data["elements"] = elements
        self._sd("submit_form/jsonschema/1-0-0", data, context, tstamp, event_subject)
        return self

    def track_site_search(self: T, terms: Sequence[str],
                          filters: dict[str, str | bool] | None = None,
                          total_results: int | None = None, page_results: int | None = None,
                          context: Context = None, tstamp: float | None = None,
                          event_subject: Subject | None = None) -> T:
        _deprecated("track_site_search", "a SelfDescribing site_search")
        required_items(terms, "terms")
        data: dict[str, Any] = {"terms": terms}
        for key, value in (("filters", filters), ("totalResults", total_results),
                           ("pageResults", page_results)):
            if value is not None:
                data[key] = value
        self._sd("site_search/jsonschema/1-0-0", data, context, tstamp, event_subject)
        return self

    def track_ecommerce_transaction_item(
        self: T, order_id: str, sku: str, price: float, quantity: int,
        name: str | None = None, category: str | None = None, currency: str | None = None,
        context: Context = None, tstamp: float | None = None,
        event_subject: Subject | None = None,
    ) -> T:
        _deprecated("track_ecommerce_transaction_item", "SelfDescribing ecommerce events")
        required_text(order_id, "order_id")
        required_text(sku, "sku")
        event = Event(event_subject=event_subject, context=context, true_timestamp=tstamp)
        for key, value in (("e", "ti"), ("ti_id", order_id), ("ti_sk", sku), ("ti_nm", name),
                           ("ti_ca", category), ("ti_pr", price), ("ti_qu", quantity),
                           ("ti_cu", currency)):
            finite(value, key)
            event.payload.add(key, value)
        self.track(event)
        return self

    def track_ecommerce_transaction(
        self: T, order_id: str, total_value: float, affiliation: str | None = None,
        tax_value: float | None = None, shipping: float | None = None,
        city: str | None = None, state: str | None = None, country: str | None = None,
        currency: str | None = None, items: list[dict[str, Any]] | None = None,
        context: Context = None, tstamp: float | None = None,
        event_subject: Subject | None = None,
    ) -> T:
        """A transaction (``e=tr``) and one ``e=ti`` event per item. Items carry the
        transaction's time as ``ttm`` (now, when *tstamp* is not given), as in the reference."""
        _deprecated("track_ecommerce_transaction", "SelfDescribing ecommerce events")
        required_text(order_id, "order_id")
        event = Event(event_subject=event_subject, context=context, true_timestamp=tstamp)
        for key, value in (("e", "tr"), ("tr_id", order_id), ("tr_tt", total_value),
                           ("tr_af", affiliation), ("tr_tx", tax_value), ("tr_sh", shipping),
                           ("tr_ci", city), ("tr_st", state), ("tr_co", country),
                           ("tr_cu", currency)):
            finite(value, key)
            event.payload.add(key, value)
        item_time = self.get_timestamp(tstamp)  # type: ignore[attr-defined]
        self.track(event)
        for item in items or []:
            fields = {**item, "order_id": order_id, "currency": currency, "tstamp": item_time,
                      "event_subject": event_subject, "context": context}
            self.track_ecommerce_transaction_item(**fields)
        return self

    def track_screen_view(self: T, name: str | None = None, id_: str | None = None,
                          context: Context = None, tstamp: float | None = None,
                          event_subject: Subject | None = None) -> T:
        _deprecated("track_screen_view", "a ScreenView")
        data = {k: v for k, v in (("name", name), ("id", id_)) if v is not None}
        self._sd("screen_view/jsonschema/1-0-0", data, context, tstamp, event_subject)
        return self

    def track_mobile_screen_view(
        self: T, name: str, id_: str | None = None, type: str | None = None,
        previous_name: str | None = None, previous_id: str | None = None,
        previous_type: str | None = None, transition_type: str | None = None,
        context: Context = None, tstamp: float | None = None,
        event_subject: Subject | None = None,
    ) -> T:
        _deprecated("track_mobile_screen_view", "a ScreenView")
        self.track(ScreenView(id_ or str(uuid.uuid4()), name, type, previous_name, previous_id,
                              previous_type, transition_type, event_subject=event_subject,
                              context=context, true_timestamp=tstamp))
        return self

    def track_struct_event(self: T, category: str, action: str, label: str | None = None,
                           property_: str | None = None, value: float | None = None,
                           context: Context = None, tstamp: float | None = None,
                           event_subject: Subject | None = None) -> T:
        _deprecated("track_struct_event", "a StructuredEvent")
        self.track(StructuredEvent(category, action, label, property_, value,
                                   event_subject=event_subject, context=context,
                                   true_timestamp=tstamp))
        return self

    def track_self_describing_event(self: T, event_json: SelfDescribingJson,
                                    context: Context = None, tstamp: float | None = None,
                                    event_subject: Subject | None = None) -> T:
        _deprecated("track_self_describing_event", "a SelfDescribing")
        self.track(SelfDescribing(event_json, event_subject=event_subject, context=context,
                                  true_timestamp=tstamp))
        return self

    def track_unstruct_event(self: T, event_json: SelfDescribingJson, context: Context = None,
                             tstamp: float | None = None,
                             event_subject: Subject | None = None) -> T:
        _deprecated("track_unstruct_event", "a SelfDescribing")
        self.track(SelfDescribing(event_json, event_subject=event_subject, context=context,
                                  true_timestamp=tstamp))
        return self

"""The records of what the collector keeps: good and bad events, the request they came in,
the counters, and their Snowplow Micro JSON form. They are kept by :class:`.event_log.EventLog`
(bounded, thread-safe), which makes them for each read; nested values are shared: treat
what you get as read-only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from . import badrows
from .canonical import canonical_event, incomplete_event, iso_timestamp
from .protocol import decode_field

__all__ = ["BadEvent", "GoodEvent", "RequestInfo", "Summary"]

SOURCE_NAME = "snowplow-threaded-collector"
_VENDOR = "com.snowplowanalytics.snowplow"


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """The HTTP request events came in (shared by all events of one request).

    ``api_version`` is ``tp2`` (POST, or GET on ``.../tp2``) or ``tp1`` (GET ``/i``);
    ``timestamp`` the POSIX time of receipt; ``ip`` ``"unknown"`` for an anonymous request
    (``SP-Anonymous``); ``network_user_id`` the collector's (from its cookie, new, or the
    all-zero UUID when anonymous); ``body`` is kept only for requests with bad events, cut to
    a bounded length.
    """

    api_version: str
    method: str
    path: str
    query: str
    content_type: str | None
    ip: str | None
    useragent: str | None
    referer: str | None
    hostname: str | None
    headers: tuple[str, ...]
    timestamp: float
    body: str | None = None
    network_user_id: str | None = None

    def _context(self) -> dict[str, Any]:
        return {"timestamp": iso_timestamp(self.timestamp), "ipAddress": self.ip,
                "useragent": self.useragent, "refererUri": self.referer,
                "headers": list(self.headers), "userId": self.network_user_id}

    def _source(self) -> dict[str, Any]:
        return {"name": SOURCE_NAME, "encoding": "UTF-8", "hostname": self.hostname}

    def _api(self) -> dict[str, str]:
        return {"vendor": _VENDOR, "version": self.api_version}

    def query_pairs(self) -> list[tuple[str, str]]:
        """The query string, decoded (undecodable bytes replaced)."""
        return parse_qsl(self.query, keep_blank_values=True, errors="replace",
                         max_num_fields=None) if self.query else []

    def raw_event(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """Micro's ``rawEvent``: the event's fields with the request's metadata."""
        return {"api": self._api(), "parameters": parameters,
                "contentType": self.content_type, "source": self._source(),
                "context": self._context()}

    def collector_payload(self) -> dict[str, Any]:
        """Micro's ``collectorPayload``: the request as the collector received it (the
        query string as decoded ``name=value`` items)."""
        return {"api": self._api(),
                "querystring": [f"{k}={v}" for k, v in self.query_pairs()],
                "contentType": self.content_type, "body": self.body,
                "source": self._source(), "context": self._context()}

    def badrow_raw(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """``payload.raw`` of an event's bad row."""
        return {"vendor": _VENDOR, "version": self.api_version,
                "parameters": [{"name": k, "value": v if isinstance(v, str) or v is None
                                else json.dumps(v)} for k, v in parameters.items()],
                "contentType": self.content_type, "loaderName": SOURCE_NAME,
                "encoding": "UTF-8", "hostname": self.hostname,
                "timestamp": iso_timestamp(self.timestamp), "ipAddress": self.ip,
                "useragent": self.useragent, "refererUri": self.referer,
                "headers": list(self.headers), "userId": self.network_user_id}

    def badrow_payload(self) -> dict[str, Any]:
        """``payload`` of a request's tracker_protocol_violations bad row."""
        return {"vendor": _VENDOR, "version": self.api_version,
                "querystring": [{"name": k, "value": v} for k, v in self.query_pairs()],
                "contentType": self.content_type, "body": self.body,
                "collector": SOURCE_NAME, "encoding": "UTF-8", "hostname": self.hostname,
                "timestamp": iso_timestamp(self.timestamp), "ipAddress": self.ip,
                "useragent": self.useragent, "refererUri": self.referer,
                "headers": list(self.headers), "networkUserId": self.network_user_id}


@dataclass(frozen=True, slots=True, eq=False)
class GoodEvent:
    """A valid event: its tracker-protocol ``parameters`` (field -> string), its type as Micro
    names it (``event_type``: ``struct``, ``page_view``, ``unstruct``...; the ``e`` code is
    ``parameters["e"]``), its ``schema`` (the self-describing event's, or e.g.
    ``iglu:com.snowplowanalytics.snowplow/page_view/jsonschema/1-0-0``) and the schemas of its
    context entities."""

    parameters: dict[str, str]
    event_type: str | None
    schema: str | None
    contexts: tuple[str, ...]
    request: RequestInfo

    @property
    def received_at(self) -> float:
        return self.request.timestamp

    @property
    def event(self) -> dict[str, Any]:
        """The canonical (enriched) event, computed on each access."""
        return canonical_event(self.parameters, self.request.timestamp, self.request.ip,
                               self.request.useragent, self.request.network_user_id)

    @property
    def data(self) -> dict[str, Any] | None:
        """The self-describing event ``{"schema": ..., "data": ...}`` (``ue`` events)."""
        envelope = decode_field(self.parameters, "ue_pr", "ue_px")
        inner = envelope.get("data") if isinstance(envelope, dict) else None
        return inner if isinstance(inner, dict) else None

    @property
    def context_entities(self) -> list[dict[str, Any]]:
        """The context entities, each ``{"schema": ..., "data": ...}``."""
        envelope = decode_field(self.parameters, "co", "cx")
        entities = envelope.get("data") if isinstance(envelope, dict) else None
        return entities if isinstance(entities, list) else []

    def to_micro(self) -> dict[str, Any]:
        """This event as Snowplow Micro's ``/micro/good`` shows it."""
        return {"rawEvent": self.request.raw_event(self.parameters),
                "eventType": self.event_type, "schema": self.schema,
                "contexts": list(self.contexts), "event": self.event, "incomplete": False}


@dataclass(frozen=True, slots=True, eq=False)
class BadEvent:
    """An event (or a whole request) that failed: the readable reasons (``errors``), the
    event's fields when it could be read (``None`` for a request that could not be parsed),
    and the same reasons as Snowplow bad-row ``messages`` (see :meth:`bad_row`)."""

    errors: tuple[str, ...]
    parameters: dict[str, Any] | None
    request: RequestInfo
    messages: tuple[dict[str, Any], ...] = ()
    failed: frozenset[str] = field(default_factory=frozenset)

    @property
    def received_at(self) -> float:
        return self.request.timestamp

    def bad_row(self) -> dict[str, Any]:
        """The Snowplow bad row: ``schema_violations`` for an event that failed,
        ``tracker_protocol_violations`` for a request whose events could not be read."""
        at = iso_timestamp(self.request.timestamp)
        messages = self.messages or tuple(badrows.protocol_message("body", None, e)
                                          for e in self.errors)
        if self.parameters is None:
            return badrows.tracker_protocol_violations(
                messages, at, self.request.api_version, self.request.badrow_payload())
        return badrows.schema_violations(messages, at,
                                         self.request.badrow_raw(self.parameters))

    @property
    def event(self) -> dict[str, Any] | None:
        """The incomplete canonical event Micro keeps for an event that failed (``None`` for
        a request that could not be parsed)."""
        if self.parameters is None:
            return None
        return incomplete_event(self.parameters, self.failed, self.messages,
                                self.request.timestamp, self.request.ip,
                                self.request.useragent, self.request.network_user_id)

    def to_micro(self) -> dict[str, Any]:
        """This event as Snowplow Micro's ``/micro/bad`` shows it: ``errors`` is Micro's
        heading and the bad row as compact JSON."""
        raw = self.request.raw_event(self.parameters) if self.parameters is not None else None
        heading = badrows.EVENT_FAILED if raw is not None else badrows.PAYLOAD_FAILED
        row = json.dumps(self.bad_row(), separators=(",", ":"), ensure_ascii=False)
        return {"collectorPayload": self.request.collector_payload(), "rawEvent": raw,
                "errors": [heading, row]}


@dataclass(frozen=True, slots=True)
class Summary:
    """Counters of the store. ``good``/``bad``: held now; ``received_*``: since the last
    reset, evicted ones included; ``evicted_*``: dropped to stay within the limits."""

    good: int
    bad: int
    received_good: int
    received_bad: int
    evicted_good: int
    evicted_bad: int

    def as_micro(self) -> dict[str, int]:
        """Micro's ``/micro/all`` shape."""
        return {"total": self.good + self.bad, "good": self.good, "bad": self.bad}

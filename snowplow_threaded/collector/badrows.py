"""Snowplow bad rows: why an event failed, in the form Snowplow Micro shows in ``errors``.

Micro's ``/micro/bad`` lists, for an event that failed validation, ``errors`` of
``["Error while validating the event.", <a schema_violations bad row>]``, and for a request
whose events could not be read at all, ``["Error while extracting event(s) from collector
payload and validating it/them.", <a tracker_protocol_violations bad row>]``: each bad row a
compact JSON string of the Iglu Central schema
``com.snowplowanalytics.snowplow.badrows/schema_violations/jsonschema/2-0-0`` (resp.
``tracker_protocol_violations/jsonschema/1-0-0``). The *messages* of a bad row are built here
while an event is checked (:mod:`.protocol`), one per failing schema, and the bad row itself
when it is shown. The message texts are the collector's own readable reasons.

Also the ``failure`` entities (``com.snowplowanalytics.snowplow/failure/jsonschema/1-0-0``)
that an incomplete event carries in its ``derived_contexts``, as Snowplow Enrich adds them.
Pure functions; the dicts built here are shared and must not be changed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from .._version import __version__
from .iglu import Lookup
from .schema_types import ValidationError

__all__ = [
    "ATOMIC", "EVENT_FAILED", "PAYLOAD_FAILED", "PROCESSOR", "atomic_message",
    "criterion_message", "failure_entities", "not_iglu_message", "not_json_message",
    "resolution_message", "schema_violations", "tracker_protocol_violations",
    "unusable_schema_message", "validation_message",
]

ATOMIC = "iglu:com.snowplowanalytics.snowplow/atomic/jsonschema/1-0-0"
_BADROWS = "iglu:com.snowplowanalytics.snowplow.badrows/"
SCHEMA_VIOLATIONS = _BADROWS + "schema_violations/jsonschema/2-0-0"
TRACKER_PROTOCOL_VIOLATIONS = _BADROWS + "tracker_protocol_violations/jsonschema/1-0-0"
FAILURE = "iglu:com.snowplowanalytics.snowplow/failure/jsonschema/1-0-0"
#: The first item of a bad event's ``errors``, as Micro gives it.
EVENT_FAILED = "Error while validating the event."
PAYLOAD_FAILED = ("Error while extracting event(s) from collector payload and validating "
                  "it/them.")
PROCESSOR = {"artifact": "snowplow-threaded-collector", "version": __version__}
_VALUE_KEEP = 1024  # characters of an offending value kept in a message


_ITERENCODE = json.JSONEncoder(ensure_ascii=False, default=str).iterencode


def _cut(text: str) -> str:
    return text if len(text) <= _VALUE_KEEP else text[:_VALUE_KEEP] + "..."


def _json_path(path: Sequence[str | int]) -> str:
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return _cut(out)  # keys are the client's: a 2 MiB key makes a 2 MiB path


# -- messages (one per failing schema or field) ----------------------------------------------
def atomic_message(reports: Iterable[tuple[str, str, str]]) -> dict[str, Any]:
    """The atomic fields' failures: (field, readable reason, keyword) each, as Enrich
    reports them against the ``atomic`` schema."""
    return {"schemaKey": ATOMIC, "error": {"error": "ValidationError", "dataReports": [
        {"message": text, "path": field, "keyword": keyword, "targets": []}
        for field, text, keyword in reports]}}


def validation_message(uri: str, errors: Sequence[ValidationError],
                       texts: Sequence[str]) -> dict[str, Any]:
    """*errors* of a value against schema *uri*; *texts* the readable reason of each."""
    return {"schemaKey": uri, "error": {"error": "ValidationError", "dataReports": [
        {"message": text, "path": _json_path(error.path), "keyword": error.keyword,
         "targets": []} for error, text in zip(errors, texts, strict=True)]}}


def resolution_message(uri: str, lookups: Sequence[Lookup], at: str) -> dict[str, Any]:
    """Schema *uri* was found nowhere: where it was looked for, at ISO time *at*."""
    history = []
    for lookup in lookups:
        error: dict[str, Any] = {"error": lookup.error}
        if lookup.message:
            error["message"] = lookup.message[:256]
        history.append({"repository": lookup.repository, "errors": [error], "attempts": 1,
                        "lastAttempt": at})
    return {"schemaKey": uri, "error": {"error": "ResolutionError", "lookupHistory": history}}


def unusable_schema_message(uri: str, reason: str) -> dict[str, Any]:
    """Schema *uri* was found but cannot validate anything."""
    return {"schemaKey": uri, "error": {"error": "ValidationError",
                                        "schemaIssues": [{"path": "$", "message": reason}]}}


def not_json_message(field: str, value: str, reason: str) -> dict[str, Any]:
    return {"field": field, "value": _cut(value), "error": reason}


def not_iglu_message(value: Any, error: str) -> dict[str, Any]:
    """*value* is not self-describing JSON (*error*: ``INVALID_DATA_PAYLOAD``,
    ``INVALID_IGLUURI`` or ``INVALID_SCHEMAVER``)."""
    pieces, size = [], 0
    # piece by piece (the encoder's Python path), stopping past the length kept: one
    # json.dumps() of a 10 MiB value held the interpreter for half a second
    for piece in _ITERENCODE(value):
        pieces.append(piece)
        size += len(piece)
        if size > _VALUE_KEEP:
            return {"json": _cut("".join(pieces)), "error": error}
    return {"json": value, "error": error}


def criterion_message(uri: str, criterion: str) -> dict[str, Any]:
    return {"schemaKey": uri, "schemaCriterion": criterion}


def protocol_message(field: str, value: str | None, expectation: str) -> dict[str, Any]:
    """A request-level failure: *field* of the request did not meet *expectation*."""
    return {"field": field, "value": None if value is None else _cut(value),
            "expectation": expectation[:256]}


# -- bad rows ------------------------------------------------------------------------------
def schema_violations(messages: Sequence[dict[str, Any]], timestamp: str,
                      raw: dict[str, Any]) -> dict[str, Any]:
    """The bad row of one event that failed: *raw* is its ``payload.raw`` (the request's
    metadata with the event's ``parameters`` as name/value pairs)."""
    return {"schema": SCHEMA_VIOLATIONS, "data": {
        "processor": PROCESSOR, "failure": {"timestamp": timestamp, "messages": list(messages)},
        "payload": {"raw": raw}}}


def tracker_protocol_violations(messages: Sequence[dict[str, Any]], timestamp: str,
                                version: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The bad row of a request whose events could not be read (*payload*: the collector
    payload)."""
    return {"schema": TRACKER_PROTOCOL_VIOLATIONS, "data": {
        "processor": PROCESSOR,
        "failure": {"timestamp": timestamp, "vendor": "com.snowplowanalytics.snowplow",
                    "version": version, "messages": list(messages)},
        "payload": payload}}


def failure_entities(messages: Sequence[dict[str, Any]], timestamp: str
                     ) -> list[dict[str, Any]]:
    """One ``failure`` entity per message, as Enrich adds them to an incomplete event."""
    entities = []
    for message in messages:
        error = message.get("error")
        uri = message.get("schemaKey")
        if isinstance(error, dict):
            kind = str(error.get("error"))
            reports = error.get("dataReports") or error.get("schemaIssues") or [
                {"message": f"schema {uri} not found"}]
            errors = [{**r, "source": uri} for r in reports]
        elif "schemaCriterion" in message:
            kind, errors = "CriterionMismatch", [{"message": f"Unexpected schema: {uri} does "
                                                  f"not match the criterion",
                                                  "criterion": message["schemaCriterion"]}]
        elif "json" in message:
            kind, errors = "NotIglu", [{"message": str(error)}]
        else:
            kind = "NotJSON"
            errors = [{"message": str(error), "source": message.get("field")}]
        entities.append({"schema": FAILURE, "data": {
            "failureType": kind, "errors": errors,
            "schema": uri if isinstance(uri, str) else None, "data": None,
            "timestamp": timestamp, "componentName": PROCESSOR["artifact"],
            "componentVersion": PROCESSOR["version"]}})
    return entities

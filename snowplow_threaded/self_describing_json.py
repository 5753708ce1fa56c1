"""Self-describing JSON: a ``{"schema": iglu-uri, "data": ...}`` pair."""

from __future__ import annotations

import json
import re
from typing import Any

from .typing import PayloadDict

#: ``iglu:vendor/name/format/model-revision-addition``
SCHEMA_URI_RE = re.compile(
    r"^iglu:([a-zA-Z0-9_.\-]+)/([a-zA-Z0-9_\-]+)/([a-zA-Z0-9_\-]+)/([0-9]+-[0-9]+-[0-9]+)$"
)


#: URIs already found valid (an application uses a handful of schemas): a dict lookup
#: instead of a regex match per entity. Bounded; dict operations are atomic under the GIL.
_VALID: dict[str, None] = {}
_VALID_MAX = 4096


def check_schema_uri(schema: Any) -> str:
    """Return *schema* if it is a valid Iglu URI, else raise ``ValueError``."""
    if type(schema) is str and schema in _VALID:
        return schema
    if not isinstance(schema, str) or SCHEMA_URI_RE.match(schema) is None:
        raise ValueError(
            "schema must be an Iglu URI like "
            f"'iglu:com.acme/event_name/jsonschema/1-0-0', got {schema!r}"
        )
    if type(schema) is str and len(_VALID) < _VALID_MAX:
        _VALID[schema] = None
    return schema


class SelfDescribingJson:
    """A JSON instance tagged with the Iglu schema that describes it.

    The schema URI is checked at construction (``ValueError`` when malformed, which the
    reference tracker accepts and the pipeline later rejects). ``data`` is not copied: it is
    serialised when the event carrying it is tracked, so later changes to it do not alter
    events already tracked.
    """

    __slots__ = ("_data", "_schema")

    def __init__(self, schema: str, data: Any) -> None:
        # a URI seen before: the dict lookup of check_schema_uri without the call
        self._schema = schema if type(schema) is str and schema in _VALID else (
            check_schema_uri(schema))
        self._data = data

    @property
    def schema(self) -> str:
        return self._schema

    @schema.setter
    def schema(self, value: str) -> None:
        self._schema = check_schema_uri(value)

    @property
    def data(self) -> Any:
        return self._data

    @data.setter
    def data(self, value: Any) -> None:
        self._data = value

    def to_json(self) -> PayloadDict:
        """The ``{"schema", "data"}`` dict (not copied deeply)."""
        return {"schema": self._schema, "data": self._data}

    def to_string(self) -> str:
        """The JSON text of :meth:`to_json`."""
        return json.dumps(self.to_json(), ensure_ascii=False, allow_nan=False)

    def __repr__(self) -> str:
        return f"SelfDescribingJson({self._schema!r}, {self._data!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SelfDescribingJson):
            return NotImplemented
        return self._schema == other._schema and self._data == other._data

    __hash__ = None  # type: ignore[assignment]

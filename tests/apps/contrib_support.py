"""Helpers of the contrib (Flask/Django/Celery integration) tests: validating the events
the integrations send against the tracker protocol and the schemas shipped as package
data, and paths of the examples."""

from __future__ import annotations

import collections
import re
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator, FormatChecker

from snowplow_threaded.contrib import schemas
from tests.schemas import unstruct_event, validate_event
from tests.servers import ROOT

EXAMPLES = ROOT / "examples"
_URI = re.compile(r"^iglu:([^/]+)/([^/]+)/jsonschema/(\d+-\d+-\d+)$")


def shipped_event(ev: dict[str, str], vendor: str = schemas.DEFAULT_VENDOR
                  ) -> tuple[str, dict[str, Any]]:
    """Validate *ev* (tracker protocol, then its self-describing data against the shipped
    schema it names, under *vendor*); return (schema name, data)."""
    validate_event(ev)
    inner = unstruct_event(ev)
    assert inner is not None, f"not a self-describing event: {ev}"
    match = _URI.match(inner["schema"])
    assert match, inner["schema"]
    got_vendor, name, version = match.groups()
    assert got_vendor == vendor, inner["schema"]
    assert version == schemas.VERSION
    schema = schemas.load_schema(name, vendor)
    Draft4Validator.check_schema(schema)
    errors = list(Draft4Validator(schema, format_checker=FormatChecker())
                  .iter_errors(inner["data"]))
    assert not errors, [e.message for e in errors]
    return name, inner["data"]


def assert_unique(events: list[dict[str, str]]) -> None:
    """No event id twice (nothing delivered twice)."""
    counts = collections.Counter(e["eid"] for e in events)
    assert max(counts.values(), default=1) == 1, [k for k, v in counts.items() if v > 1]


def tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def header_user_id(request: Any) -> str | None:
    """A custom Django ``SNOWPLOW["user_id"]`` function: the ``X-User`` header."""
    value = request.META.get("HTTP_X_USER")
    return value if isinstance(value, str) else None

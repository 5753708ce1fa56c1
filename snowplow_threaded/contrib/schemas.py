"""The Iglu schemas of the events the integrations send, shipped as package data.

The files live in ``snowplow_threaded/contrib/iglu/<vendor>/<name>/jsonschema/1-0-0`` under
:data:`DEFAULT_VENDOR`. Integrations take a ``vendor`` so that events can be sent under the
user's own Iglu vendor; :func:`write_schemas` writes the same schemas under that vendor into
a directory in Iglu layout, ready for a schema registry or a collector's ``--schemas DIR``.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

#: The vendor the schemas are shipped under, used when none is configured.
DEFAULT_VENDOR = "io.github.snowplow-threaded"
#: The version of every shipped schema.
VERSION = "1-0-0"
#: The request event of the Flask and Django integrations.
REQUEST = "request"
#: The Celery task events.
TASK_STARTED = "task_started"
TASK_SUCCEEDED = "task_succeeded"
TASK_FAILED = "task_failed"
TASK_RETRIED = "task_retried"
#: Every shipped schema name.
NAMES: tuple[str, ...] = (REQUEST, TASK_STARTED, TASK_SUCCEEDED, TASK_FAILED, TASK_RETRIED)

# Iglu's own pattern for a vendor (reverse domain name, letters, digits, '-', '_', '.')
_VENDOR = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9\-_.]*$")


def check_vendor(vendor: object) -> str:
    """Return *vendor* if it is a valid Iglu vendor; ``TypeError``/``ValueError`` if not."""
    if not isinstance(vendor, str):
        raise TypeError(f"schema vendor must be a string, got {type(vendor).__name__}")
    if not _VENDOR.match(vendor) or ".." in vendor:
        raise ValueError(f"not an Iglu vendor (letters, digits, '-', '_', '.'): {vendor!r}")
    return vendor


@functools.lru_cache(maxsize=64)
def schema_uri(name: str, vendor: str = DEFAULT_VENDOR) -> str:
    """The Iglu URI of shipped schema *name* under *vendor*, e.g.
    ``iglu:io.github.snowplow-threaded/request/jsonschema/1-0-0``."""
    _check_name(name)
    return f"iglu:{check_vendor(vendor)}/{name}/jsonschema/{VERSION}"


def load_schema(name: str, vendor: str = DEFAULT_VENDOR) -> dict[str, Any]:
    """The JSON schema document of *name* (a new dict), its ``self.vendor`` set to *vendor*."""
    _check_name(name)
    check_vendor(vendor)
    package = resources.files("snowplow_threaded.contrib")
    path = package / "iglu" / DEFAULT_VENDOR / name / "jsonschema" / VERSION
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    document["self"]["vendor"] = vendor
    return document


def write_schemas(
    directory: str | Path,
    vendor: str = DEFAULT_VENDOR,
    names: Iterable[str] = NAMES,
) -> list[Path]:
    """Write schemas *names* (default: all) under *vendor* into *directory* in Iglu layout
    (``DIR/<vendor>/<name>/jsonschema/1-0-0``), creating folders as needed and replacing
    files already there. Returns the paths written."""
    root = Path(directory)
    written = []
    for name in names:
        document = load_schema(name, vendor)
        target = root / vendor / name / "jsonschema" / VERSION
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        written.append(target)
    return written


def _check_name(name: str) -> None:
    if name not in NAMES:
        raise ValueError(f"unknown schema {name!r}; shipped: {', '.join(NAMES)}")

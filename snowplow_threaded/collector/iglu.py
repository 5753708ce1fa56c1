"""Iglu schema resolution: schema URIs to compiled validators.

Schemas are files laid out as ``VENDOR/NAME/jsonschema/VERSION`` under one or more
directories: the user's (``--schemas DIR``, searched first, in order) and the ones bundled
with this package (``iglu/``, the ``com.snowplowanalytics.*`` schemas of the tracker
protocol and of common events, copied from Iglu Central). A schema is read and compiled the
first time it is asked for, then cached. A :class:`Resolver` is thread-safe.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .schema_types import SchemaError
from .validator import Validator

__all__ = ["BUNDLED_DIR", "IGLU_URI", "MAX_URI_LENGTH", "InvalidSchemaURI", "Resolver",
           "SchemaKey", "SchemaUnavailable", "parse_schema_uri"]

logger = logging.getLogger("snowplow_threaded.collector.iglu")

#: Directory of the schemas bundled with the package.
BUNDLED_DIR = Path(__file__).resolve().parent / "iglu"

#: Longest vendor, name or format (Iglu Central's longest vendor has 50 characters).
_MAX_PART = 128
#: Longest schema URI accepted; longer strings are not parsed (nor cached).
MAX_URI_LENGTH = 5 + 3 * _MAX_PART + 3 + 3 * 9 + 2
_PART = rf"[a-zA-Z0-9_-]{{1,{_MAX_PART}}}"
_VERSION_NUMBER = r"(?:0|[1-9][0-9]{0,8})"
#: ``iglu:VENDOR/NAME/FORMAT/MODEL-REVISION-ADDITION`` as Iglu defines it: the vendor is
#: dot-separated labels (a reverse domain name, so never ``.``, ``..`` or empty), name and
#: format one label each, SchemaVer numbers without leading zeros and a model from 1. ASCII
#: only, nothing escaped: no ``/``, ``%``, ``\\``, NUL or space can reach a file path.
IGLU_URI = re.compile(
    rf"iglu:({_PART}(?:\.{_PART})*)/({_PART})/({_PART})/"
    rf"([1-9][0-9]{{0,8}})-({_VERSION_NUMBER})-({_VERSION_NUMBER})"
)

_MAX_MISSES = 1024
_SP = "iglu:com.snowplowanalytics.snowplow/"
#: Earlier revisions of the protocol's wrapper schemas are validated with the bundled
#: newest revision of the same model when no file for them exists (each revision only
#: added optional fields).
_FALLBACKS = {
    **{f"{_SP}payload_data/jsonschema/1-0-{n}": f"{_SP}payload_data/jsonschema/1-0-4"
       for n in range(4)},
    f"{_SP}contexts/jsonschema/1-0-0": f"{_SP}contexts/jsonschema/1-0-1",
}


class InvalidSchemaURI(ValueError):
    """A string that is not a valid Iglu schema URI; the message says why (with the
    string cut and escaped, fit for an error row or a log line)."""


@dataclass(frozen=True, slots=True)
class SchemaKey:
    """The parts of an Iglu URI."""

    vendor: str
    name: str
    format: str
    version: str

    @staticmethod
    def parse(uri: object) -> SchemaKey | None:
        """The key of *uri*, or None if it is not a valid Iglu URI (see
        :func:`parse_schema_uri`)."""
        if not isinstance(uri, str) or len(uri) > MAX_URI_LENGTH:
            return None
        return _parse(uri)

    @property
    def uri(self) -> str:
        return f"iglu:{self.vendor}/{self.name}/{self.format}/{self.version}"

    @property
    def relative_path(self) -> Path:
        return Path(self.vendor, self.name, self.format, self.version)


def parse_schema_uri(uri: object) -> SchemaKey:
    """The parts of the Iglu schema URI *uri*, checked strictly: the one gate between
    client-chosen schema names and schema files (the resolver and ``/micro/iglu`` use it).

    Accepts ``iglu:VENDOR/NAME/FORMAT/MODEL-REVISION-ADDITION`` with a vendor of
    dot-separated labels and name and format of ``[a-zA-Z0-9_-]`` (each at most 128
    characters) and SchemaVer numbers (no leading zeros, model from 1, at most 9 digits).
    Raises :class:`InvalidSchemaURI` for anything else: ``..`` or ``.`` labels, absolute
    paths, ``%``-escapes, NUL, white space, non-ASCII digits, over-long parts.
    """
    key = SchemaKey.parse(uri)
    if key is not None:
        return key
    if not isinstance(uri, str):
        raise InvalidSchemaURI(f"a schema URI must be a string, got {type(uri).__name__}")
    if len(uri) > MAX_URI_LENGTH:
        raise InvalidSchemaURI(f"{uri[:80]!r}... ({len(uri)} characters) is not a valid Iglu "
                               f"schema URI: longer than {MAX_URI_LENGTH} characters")
    raise InvalidSchemaURI(f"{uri[:200]!r} is not a valid Iglu schema URI "
                           f"(iglu:VENDOR/NAME/FORMAT/MODEL-REVISION-ADDITION)")


@functools.lru_cache(maxsize=1024)
def _parse(uri: str) -> SchemaKey | None:  # only strings up to MAX_URI_LENGTH: bounded
    match = IGLU_URI.fullmatch(uri)
    if match is None or len(match.group(1)) > _MAX_PART:
        return None
    vendor, name, fmt, model, revision, addition = match.groups()
    return SchemaKey(vendor, name, fmt, f"{model}-{revision}-{addition}")


class SchemaUnavailable(LookupError):
    """A schema that is not in any directory, or whose file cannot be used (not JSON, not
    a valid draft-04 schema, or its ``self`` block names another schema). The message is
    the reason, fit for a bad event."""


class Resolver:
    """Finds, compiles and caches the schemas of a list of directories.

    :param directories: user schema directories, searched in order before the bundled
        one; each must exist (``FileNotFoundError`` otherwise)
    :param bundled: also search :data:`BUNDLED_DIR` (default True)
    """

    def __init__(self, directories: Iterable[str | Path] = (), bundled: bool = True) -> None:
        dirs = [Path(d) for d in directories]
        for d in dirs:
            if not d.is_dir():
                raise FileNotFoundError(f"schema directory {d} does not exist")
        self.user_directories: tuple[Path, ...] = tuple(dirs)
        if bundled:
            dirs.append(BUNDLED_DIR)
        self.directories: tuple[Path, ...] = tuple(dirs)
        self._lock = threading.Lock()
        self._cache: dict[str, Validator | SchemaUnavailable] = {}
        self._misses = 0
        self._documents: dict[str, dict[str, Any]] = {}

    def known(self) -> list[str]:
        """The URIs of every schema file in the directories, sorted."""
        uris = set()
        for directory in self.directories:
            for path in directory.glob("*/*/*/*"):
                key = SchemaKey.parse("iglu:" + "/".join(path.parts[-4:]))
                if key is not None and path.is_file():
                    uris.add(key.uri)
        return sorted(uris)

    def validator(self, uri: str) -> Validator:
        """The compiled schema of *uri*. Raises :class:`SchemaUnavailable` with the reason
        (cached: a missing schema is not looked for again until :meth:`clear`; at most
        1024 misses are remembered). A string that is not a valid Iglu URI (see
        :func:`parse_schema_uri`) is refused before any file is looked for."""
        found = self._cache.get(uri)
        if found is None and SchemaKey.parse(uri) is None:
            try:
                parse_schema_uri(uri)
            except InvalidSchemaURI as exc:
                raise SchemaUnavailable(str(exc)) from None
        if found is None:
            with self._lock:
                found = self._cache.get(uri)
                if found is None:
                    found = self._load(uri)
                    if isinstance(found, SchemaUnavailable):  # clients choose these URIs:
                        self._misses += 1  # keep a bounded number of misses
                        if self._misses > _MAX_MISSES:
                            self._cache = {k: v for k, v in self._cache.items()
                                           if not isinstance(v, SchemaUnavailable)}
                            self._misses = 1
                    self._cache[uri] = found
        if isinstance(found, SchemaUnavailable):
            raise found
        return found

    def document(self, uri: str) -> dict[str, Any]:
        """The schema document of *uri* as parsed JSON (raises :class:`SchemaUnavailable`)."""
        self.validator(uri)
        with self._lock:
            return self._documents[uri]

    def clear(self) -> None:
        """Forget every cached schema (files are read again on next use)."""
        with self._lock:
            self._cache.clear()
            self._misses = 0
            self._documents.clear()

    def _find(self, key: SchemaKey) -> Path | None:
        for directory in self.directories:
            path = directory / key.relative_path
            try:
                if path.is_file():
                    return path
            except OSError:  # unreadable directory: as if the file were not there
                continue
        return None

    def _where(self, path: Path) -> str:
        """Where *path* is, for messages clients see: never an absolute path."""
        for index, directory in enumerate(self.user_directories, 1):
            if path.is_relative_to(directory):
                return f"{path.relative_to(directory)} in schema directory {index}"
        return f"bundled {path.relative_to(BUNDLED_DIR)}"

    def _load(self, uri: str) -> Validator | SchemaUnavailable:
        key = SchemaKey.parse(uri)
        if key is None:  # pragma: no cover - validator() refuses these first
            return SchemaUnavailable(f"{uri[:200]!r} is not a valid Iglu schema URI")
        if key.format != "jsonschema":
            return SchemaUnavailable(f"{uri}: only jsonschema schemas are supported")
        path = self._find(key)
        if path is None and uri in _FALLBACKS:
            fallback = SchemaKey.parse(_FALLBACKS[uri])
            path = self._find(fallback) if fallback is not None else None
            key = fallback or key
        if path is None:
            given = len(self.user_directories)  # how many, not where: clients see this
            return SchemaUnavailable(f"unknown schema {uri} (neither bundled nor in a schema "
                                     f"directory: {given or 'none'} given)")
        where = self._where(path)
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:  # strerror: an OSError's text names the path
            reason = exc.strerror if isinstance(exc, OSError) else exc
            return SchemaUnavailable(f"schema {uri} ({where}) cannot be read: {reason}")
        if not isinstance(document, dict):
            return SchemaUnavailable(f"schema {uri} ({where}) is not a JSON object")
        problem = _self_block_problem(document, key)
        if problem:
            return SchemaUnavailable(f"schema {uri} ({where}): {problem}")
        try:
            validator = Validator(document)
        except SchemaError as exc:
            return SchemaUnavailable(f"schema {uri} ({where}) is not a usable schema: {exc}")
        except RecursionError:
            return SchemaUnavailable(f"schema {uri} ({where}) is nested too deeply")
        self._documents[uri] = document
        logger.debug("loaded schema %s from %s", uri, path)
        return validator


def _self_block_problem(document: dict[str, Any], key: SchemaKey) -> str | None:
    block = document.get("self")
    if block is None:
        return None  # a plain JSON schema: the file's place names it
    if not isinstance(block, dict):
        return "its self block is not an object"
    named = tuple(block.get(k) for k in ("vendor", "name", "format", "version"))
    if named != (key.vendor, key.name, key.format, key.version):
        return f"its self block names {'/'.join(str(n) for n in named)}"
    return None

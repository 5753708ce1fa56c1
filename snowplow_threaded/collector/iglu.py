"""Iglu schema resolution: schema URIs to compiled validators.

Schemas are found, in order, in the user's directories (``--schemas DIR``, laid out as
``VENDOR/NAME/jsonschema/VERSION``), in the ones bundled with this package (``iglu/``: every
JSON schema of Iglu Central, see its ``NOTICE``), then in static Iglu registries over HTTP(S)
(``--iglu URL``, see :mod:`.registry`), as Snowplow Micro's resolver does. A schema is read
and compiled the first time it is asked for, then cached; a schema no place has is
remembered as missing (a registry's answer for ``retry_after`` seconds, so that a registry
that was down is asked again). A :class:`Resolver` is thread-safe; no lock is held while a
registry is asked (for at most ``timeout`` seconds per lookup, all registries together).
"""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .registry import LookupFailed, Registry
from .schema_types import SchemaError
from .validator import Validator

__all__ = ["BUNDLED_DIR", "IGLU_URI", "MAX_URI_LENGTH", "InvalidSchemaURI", "Lookup", "Resolver",
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


@dataclass(frozen=True, slots=True)
class Lookup:
    """One place asked for a schema that did not give it: ``repository`` (a directory, the
    bundle, a registry URL), ``error`` (``NotFound``, ``RepoFailure`` or ``ClientFailure``,
    the Iglu client's words) and the ``message`` for the two failures."""

    repository: str
    error: str
    message: str | None = None


class SchemaUnavailable(LookupError):
    """A schema that is in no directory or registry, or whose document cannot be used (not
    JSON, not a valid draft-04 schema, or its ``self`` block names another schema). The
    message is the reason, fit for a bad event; ``lookups`` say where it was looked for
    (empty when it was found but cannot be used, then ``unusable`` is True)."""

    def __init__(self, message: str, lookups: tuple[Lookup, ...] = (),
                 unusable: bool = False) -> None:
        super().__init__(message)
        self.lookups = lookups
        self.unusable = unusable
        self.at = time.time()  # when it was looked for

    def fresh(self) -> SchemaUnavailable:
        """A copy to raise: raising the cached instance would keep the raiser's frames
        (with the request being judged) alive in the cache, up to 1 024 of them."""
        copy = SchemaUnavailable(str(self), self.lookups, self.unusable)
        copy.at = self.at
        return copy


_BUNDLE_NAME = "Iglu Central (bundled)"
_NEVER = float("inf")


class Resolver:
    """Finds, compiles and caches the schemas of directories and registries.

    :param directories: user schema directories, searched in order before the bundled
        one; each must exist (``FileNotFoundError`` otherwise)
    :param bundled: also search :data:`BUNDLED_DIR` (default True)
    :param registries: static Iglu registries (URLs, or :class:`.registry.Registry`),
        asked in order for a schema no directory holds (``ValueError`` for a URL that is not
        HTTP(S))
    :param timeout: seconds one lookup may spend asking the registries, all together
    :param retry_after: seconds a registry's failure or "not found" is remembered
    """

    def __init__(self, directories: Iterable[str | Path] = (), bundled: bool = True,
                 registries: Iterable[str | Registry] = (), timeout: float = 2.0,
                 retry_after: float = 30.0) -> None:
        dirs = [Path(d) for d in directories]
        for d in dirs:
            if not d.is_dir():
                raise FileNotFoundError(f"schema directory {d} does not exist")
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        self.user_directories: tuple[Path, ...] = tuple(dirs)
        if bundled:
            dirs.append(BUNDLED_DIR)
        self.directories: tuple[Path, ...] = tuple(dirs)
        self.registries: tuple[Registry, ...] = tuple(
            r if isinstance(r, Registry) else Registry(r, timeout) for r in registries)
        self.timeout = timeout
        self.retry_after = retry_after
        self._lock = threading.Lock()
        self._cache: dict[str, Validator | SchemaUnavailable] = {}
        self._expiry: dict[str, float] = {}  # misses that a registry may yet answer
        self._misses = 0
        self._documents: dict[str, dict[str, Any]] = {}

    def known(self) -> list[str]:
        """The URIs of every schema file in the directories, sorted (not the registries')."""
        uris = set()
        for directory in self.directories:
            for path in directory.glob("*/*/*/*"):
                key = SchemaKey.parse("iglu:" + "/".join(path.parts[-4:]))
                if key is not None and path.is_file():
                    uris.add(key.uri)
        return sorted(uris)

    def validator(self, uri: str) -> Validator:
        """The compiled schema of *uri*. Raises :class:`SchemaUnavailable` with the reason
        (cached: a schema missing from the directories is not looked for again until
        :meth:`clear`, a registry is asked again after ``retry_after`` seconds; at most 1024
        misses are remembered). May block while registries are asked (``timeout``). A string
        that is not a valid Iglu URI (see :func:`parse_schema_uri`) is refused before any
        file or registry is looked at."""
        found = self._cache.get(uri)
        if found is None and SchemaKey.parse(uri) is None:
            try:
                parse_schema_uri(uri)
            except InvalidSchemaURI as exc:
                raise SchemaUnavailable(str(exc)) from None
        if found is None or (isinstance(found, SchemaUnavailable)
                             and self._expiry.get(uri, _NEVER) <= time.monotonic()):
            loaded, document = self._load(uri)  # no lock held: it may ask registries
            with self._lock:
                found = self._cache.get(uri)
                if found is None or isinstance(found, SchemaUnavailable):
                    found = loaded
                    self._remember(uri, loaded, document)
        if isinstance(found, SchemaUnavailable):
            raise found.fresh()  # the cached one must not keep a traceback (and its frames)
        return found

    def _remember(self, uri: str, found: Validator | SchemaUnavailable,
                  document: dict[str, Any] | None) -> None:
        """Cache the outcome of a lookup (the caller holds the lock)."""
        if isinstance(found, SchemaUnavailable):  # clients choose these URIs:
            self._misses += 1  # keep a bounded number of misses
            if self._misses > _MAX_MISSES:
                self._cache = {k: v for k, v in self._cache.items()
                               if not isinstance(v, SchemaUnavailable)}
                self._expiry.clear()
                self._misses = 1
            if self.registries and found.lookups:  # a registry may have it later
                self._expiry[uri] = time.monotonic() + self.retry_after
        else:
            self._expiry.pop(uri, None)
            if document is not None:
                self._documents[uri] = document
        self._cache[uri] = found

    def document(self, uri: str) -> dict[str, Any]:
        """The schema document of *uri* as parsed JSON (raises :class:`SchemaUnavailable`)."""
        self.validator(uri)
        with self._lock:
            return self._documents[uri]

    def clear(self) -> None:
        """Forget every cached schema (files are read again on next use)."""
        with self._lock:
            self._cache.clear()
            self._expiry.clear()
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

    def _load(self, uri: str) -> tuple[Validator | SchemaUnavailable, dict[str, Any] | None]:
        key = SchemaKey.parse(uri)
        if key is None:  # pragma: no cover - validator() refuses these first
            return SchemaUnavailable(f"{uri[:200]!r} is not a valid Iglu schema URI"), None
        if key.format != "jsonschema":
            return SchemaUnavailable(f"{uri}: only jsonschema schemas are supported"), None
        path = self._find(key)
        if path is None and uri in _FALLBACKS:
            fallback = SchemaKey.parse(_FALLBACKS[uri])
            path = self._find(fallback) if fallback is not None else None
            key = fallback or key
        if path is not None:
            where = self._where(path)
            try:
                document = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:  # strerror: an OSError's text names the path
                reason = exc.strerror if isinstance(exc, OSError) else exc
                return SchemaUnavailable(f"schema {uri} ({where}) cannot be read: {reason}",
                                         unusable=True), None
            logger.debug("reading schema %s from %s", uri, path)
            return self._compile(uri, key, document, where)
        lookups = [Lookup(f"schema directory {index}", "NotFound")  # never a path: clients
                   for index, _ in enumerate(self.user_directories, 1)]  # see these
        if BUNDLED_DIR in self.directories:
            lookups.append(Lookup(_BUNDLE_NAME, "NotFound"))
        deadline = time.monotonic() + self.timeout
        for registry in self.registries:
            left = deadline - time.monotonic()
            if left <= 0:
                lookups.append(Lookup(registry.url, "RepoFailure",
                                      f"registry {registry.url}: not asked, the lookup's "
                                      f"{self.timeout:g} s were spent"))
                continue
            try:
                document = registry.fetch(key.vendor, key.name, key.format, key.version,
                                          timeout=left)
            except LookupFailed as exc:
                lookups.append(Lookup(registry.url, exc.kind, str(exc)))
                continue
            return self._compile(uri, key, document, registry.url)
        return SchemaUnavailable(_not_found(uri, self.user_directories, lookups),
                                 tuple(lookups)), None

    @staticmethod
    def _compile(uri: str, key: SchemaKey, document: Any, source: str
                 ) -> tuple[Validator | SchemaUnavailable, dict[str, Any] | None]:
        if not isinstance(document, dict):
            return SchemaUnavailable(f"schema {uri} ({source}) is not a JSON object",
                                     unusable=True), None
        problem = _self_block_problem(document, key)
        if problem:
            return SchemaUnavailable(f"schema {uri} ({source}): {problem}",
                                     unusable=True), None
        try:
            validator = Validator(document)
        except SchemaError as exc:
            return SchemaUnavailable(f"schema {uri} ({source}) is not a usable schema: "
                                     f"{exc}", unusable=True), None
        except RecursionError:
            return SchemaUnavailable(f"schema {uri} ({source}) is nested too deeply",
                                     unusable=True), None
        logger.debug("loaded schema %s from %s", uri, source)
        return validator, document


def _not_found(uri: str, directories: tuple[Path, ...], lookups: list[Lookup]) -> str:
    given = len(directories)  # how many, not where: clients see this
    text = (f"unknown schema {uri} (neither bundled nor in a schema directory: "
            f"{given or 'none'} given")
    failures = [lk.message for lk in lookups if lk.message]  # the registries' answers
    if failures:
        text += "; " + "; ".join(failures)
    return text + ")"


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

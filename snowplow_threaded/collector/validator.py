"""A JSON Schema draft-04 validator for Iglu schemas, standard library only.

A schema is compiled once into a tree of closures; validating an instance walks the instance
and calls them. Supported keywords: ``type`` (a name or a list, ``null`` included),
``enum``; ``minimum``/``maximum`` with ``exclusiveMinimum``/``exclusiveMaximum``,
``multipleOf``; ``minLength``/``maxLength`` (in code points), ``pattern`` (searched, as the
specification says), ``format`` (see :mod:`.formats`); ``properties``,
``patternProperties``, ``additionalProperties`` (boolean or schema), ``required``,
``minProperties``/``maxProperties``, ``dependencies``; ``items`` (schema or list),
``additionalItems``, ``minItems``/``maxItems``, ``uniqueItems``; ``allOf``, ``anyOf``,
``oneOf``, ``not``; and ``$ref`` to a ``#...`` JSON pointer in the same document (in
draft-04 a ``$ref`` replaces its sibling keywords). Annotations (``self``, ``$schema``,
``description``, ``title``, ``default``, ``id``) and unknown keywords are ignored.

Semantics follow draft-04 as the ``jsonschema`` package implements it (``1.0`` is a number
but not an integer, ``true`` is not ``1``, ``1`` equals ``1.0`` in ``enum`` and
``uniqueItems``); the tests cross-check both on every bundled schema.

A :class:`Validator` is immutable once built and safe to use from many threads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from .keywords import BUILDERS
from .schema_types import (
    Check,
    Path,
    SchemaError,
    ValidationError,
    accept,
    sequence,
)

__all__ = ["SchemaError", "ValidationError", "Validator"]


class Validator:
    """A compiled schema.

    :param schema: a draft-04 schema document (a JSON object, as from ``json.loads``)
    :param pointer: validate against the subschema at this JSON pointer of *schema*
        (``"/items"``); ``$ref`` still resolves against the whole document
    :raises SchemaError: if the schema cannot be used
    """

    __slots__ = ("_check", "schema")

    def __init__(self, schema: Mapping[str, Any], pointer: str = "") -> None:
        if not isinstance(schema, Mapping):
            raise SchemaError("a schema must be a JSON object")
        self.schema = schema
        compiler = _Compiler(schema)
        target = compiler.resolve("#" + pointer) if pointer else schema
        self._check: Check = compiler.compile(target, "#" + pointer) or accept

    def errors(self, instance: Any) -> list[ValidationError]:
        """Every error found (empty when valid). Never raises: an instance nested too deeply
        to walk gives one error."""
        found: list[ValidationError] = []
        try:
            self._check(instance, (), found)
        except RecursionError:
            return [ValidationError((), "the value is nested too deeply to validate", "depth")]
        return found

    def is_valid(self, instance: Any) -> bool:
        return not self.errors(instance)


class _Compiler:
    """Compiles one schema document; ``$ref`` targets are compiled once and may recurse."""

    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root
        self.refs: dict[str, Check] = {}

    def resolve(self, ref: str) -> Any:
        """The node *ref* (``#`` + a JSON pointer) points at in the document."""
        if not ref.startswith("#"):
            raise SchemaError(f"$ref {ref!r}: only references inside the schema (#...) work")
        node: Any = self.root
        fragment = unquote(ref[1:])
        if fragment in ("", "/"):
            return node
        if not fragment.startswith("/"):
            raise SchemaError(f"$ref {ref!r}: not a JSON pointer")
        for raw in fragment[1:].split("/"):
            part = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise SchemaError(f"$ref {ref!r} points nowhere")
        return node

    def compile(self, schema: Any, where: str) -> Check | None:
        """The check of *schema*, or None when it accepts everything."""
        if not isinstance(schema, Mapping):
            raise SchemaError(f"{where}: a schema must be a JSON object")
        if "$ref" in schema:
            return self._ref(schema["$ref"], where)
        checks: list[Check] = []
        for build in BUILDERS:
            check = build(self, schema, where)
            if check is not None:
                checks.append(check)
        return sequence(checks)

    def compile_all(self, schemas: Any, where: str) -> list[Check]:
        """The checks of a non-empty list of schemas (``allOf``, ``items`` as a list...)."""
        if not isinstance(schemas, list) or not schemas:
            raise SchemaError(f"{where}: must be a non-empty list of schemas")
        return [self.compile(s, f"{where}/{i}") or accept for i, s in enumerate(schemas)]

    def _ref(self, ref: Any, where: str) -> Check:
        if not isinstance(ref, str):
            raise SchemaError(f"{where}/$ref: must be a string")
        known = self.refs.get(ref)
        if known is not None:
            return known
        cell: list[Check] = [accept]

        def deref(instance: Any, path: Path, errors: list[ValidationError]) -> None:
            cell[0](instance, path, errors)

        self.refs[ref] = deref  # before compiling the target, so recursion finds it
        cell[0] = self.compile(self.resolve(ref), ref) or accept
        return deref

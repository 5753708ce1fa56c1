"""Types shared by the JSON Schema compiler (:mod:`.validator`) and its keyword builders
(:mod:`.keywords`): errors, the compiled-check signature, and small helpers. Immutable."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "Builder", "Check", "Compiler", "Path", "SchemaError", "ValidationError", "accept", "count",
    "json_equal", "kind", "owns_type", "sequence", "short",
]

#: Where a value sits in the instance: object keys and array indexes from the root.
Path = tuple[str | int, ...]


class SchemaError(ValueError):
    """The schema cannot be used: a keyword has a value of the wrong kind, a ``pattern``
    does not compile, or a ``$ref`` points outside the document or nowhere."""


@dataclass(frozen=True, slots=True)
class ValidationError:
    """One way an instance fails its schema: where (``path`` from the instance root), what
    (``message``) and which keyword said so."""

    path: Path
    message: str
    keyword: str

    @property
    def pointer(self) -> str:
        """The JSON pointer of the failing value (``""`` for the root)."""
        return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in self.path)

    def __str__(self) -> str:
        return f"{self.pointer or '/'}: {self.message}"


#: A compiled schema: ``check(instance, path, errors)`` appends what is wrong to *errors*.
Check = Callable[[Any, Path, list[ValidationError]], None]


class Compiler(Protocol):
    """What keyword builders need from the compiler: compile a subschema."""

    def compile(self, schema: Any, where: str) -> Check | None: ...

    def compile_all(self, schemas: Any, where: str) -> list[Check]: ...


#: A keyword builder: the check for its keywords in *schema*, or None if it has none.
Builder = Callable[[Compiler, Mapping[str, Any], str], "Check | None"]


def accept(instance: Any, path: Path, errors: list[ValidationError]) -> None:
    """The check of the empty schema ``{}``."""
    return None


def sequence(checks: list[Check]) -> Check | None:
    """One check running *checks* in order (None for none)."""
    if not checks:
        return None
    if len(checks) == 1:
        return checks[0]
    run = tuple(checks)

    def check(instance: Any, path: Path, errors: list[ValidationError]) -> None:
        for one in run:
            one(instance, path, errors)

    return check


def short(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to about *limit* characters, for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def kind(value: Any) -> str:
    """The JSON type name of a decoded JSON value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def count(schema: Mapping[str, Any], name: str, where: str) -> int | None:
    """The value of a non-negative integer keyword (``minLength``...), or None."""
    value = schema.get(name)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                              or value < 0):
        raise SchemaError(f"{where}/{name}: must be a non-negative integer")
    return value


def json_equal(one: Any, two: Any) -> bool:
    """Equality of JSON values: ``1 == 1.0`` but ``true != 1``; arrays and objects deep."""
    if isinstance(one, bool) or isinstance(two, bool):
        return isinstance(one, bool) and isinstance(two, bool) and one == two
    if isinstance(one, list):
        return (isinstance(two, list) and len(one) == len(two)
                and all(json_equal(a, b) for a, b in zip(one, two, strict=True)))
    if isinstance(one, dict):
        return (isinstance(two, dict) and one.keys() == two.keys()
                and all(json_equal(v, two[k]) for k, v in one.items()))
    if isinstance(two, (list, dict)):
        return False
    return bool(one == two)


#: Keywords that only look at values of one type.
TYPE_KEYWORDS = {
    "string": frozenset({"minLength", "maxLength", "pattern", "format"}),
    "object": frozenset({"properties", "patternProperties", "additionalProperties", "required",
                         "minProperties", "maxProperties", "dependencies"}),
    "array": frozenset({"items", "additionalItems", "minItems", "maxItems", "uniqueItems"}),
}


def owns_type(schema: Mapping[str, Any], name: str) -> bool:
    """True when *schema* says ``"type": name`` and has keywords of that type: that type's
    builder then reports a wrong type itself (one check instead of two)."""
    return schema.get("type") == name and not TYPE_KEYWORDS[name].isdisjoint(schema)

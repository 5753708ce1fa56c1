"""Keyword builders of the draft-04 compiler (:mod:`.validator`).

Each builder reads its keywords from one schema object, checks their values (raising
:class:`SchemaError`) and returns a check, or None when the schema has none of them.
Checks only look at instances of their type (``maxLength`` ignores numbers), as draft-04
says; ``type`` is what rejects the other types.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from fractions import Fraction
from typing import Any

from .formats import FORMATS
from .schema_types import (
    TYPE_KEYWORDS,
    Builder,
    Check,
    Compiler,
    Path,
    SchemaError,
    ValidationError,
    count,
    json_equal,
    kind,
    owns_type,
    short,
)
from .structure import array_check, combinators, object_check

__all__ = ["BUILDERS"]

_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def type_check(c: Compiler, schema: Mapping[str, Any], where: str) -> Check | None:
    declared = schema.get("type")
    if declared is None:
        return None
    if isinstance(declared, str) and declared in TYPE_KEYWORDS and owns_type(schema, declared):
        return None  # string_check, object_check or array_check test the type
    names = [declared] if isinstance(declared, str) else declared
    if not isinstance(names, list) or not names or any(n not in _TYPES for n in names):
        raise SchemaError(f"{where}/type: {declared!r} is not a draft-04 type or list of types")
    label = " or ".join(names)
    if len(names) == 1 and names[0] in ("string", "array", "object"):
        plain = {"string": str, "array": list, "object": dict}[names[0]]

        def check_plain(value: Any, path: Path, errors: list[ValidationError]) -> None:
            if not isinstance(value, plain):
                errors.append(ValidationError(path, f"expected {label}, got {kind(value)}",
                                              "type"))

        return check_plain
    tests = tuple(_TYPES[n] for n in names)

    def check(value: Any, path: Path, errors: list[ValidationError]) -> None:
        for test in tests:
            if test(value):
                return
        errors.append(ValidationError(path, f"expected {label}, got {kind(value)}", "type"))

    return check


def enum_check(c: Compiler, schema: Mapping[str, Any], where: str) -> Check | None:
    if "enum" not in schema:
        return None
    options = schema["enum"]
    if not isinstance(options, list) or not options:
        raise SchemaError(f"{where}/enum: must be a non-empty list")
    strings = frozenset(o for o in options if isinstance(o, str))
    others = [o for o in options if not isinstance(o, str)]

    def check(value: Any, path: Path, errors: list[ValidationError]) -> None:
        if isinstance(value, str) and value in strings:
            return
        if any(json_equal(o, value) for o in others):
            return
        errors.append(ValidationError(path, f"{short(value)} is not one of {short(options)}",
                                      "enum"))

    return check


def number_check(c: Compiler, schema: Mapping[str, Any], where: str) -> Check | None:
    minimum, maximum = schema.get("minimum"), schema.get("maximum")
    ex_min = schema.get("exclusiveMinimum", False)
    ex_max = schema.get("exclusiveMaximum", False)
    divisor = schema.get("multipleOf")
    for name, bound in (("minimum", minimum), ("maximum", maximum), ("multipleOf", divisor)):
        if bound is not None and not _is_number(bound):
            raise SchemaError(f"{where}/{name}: must be a number")
    if divisor is not None and divisor <= 0:
        raise SchemaError(f"{where}/multipleOf: must be greater than 0")
    if not isinstance(ex_min, bool) or not isinstance(ex_max, bool):
        raise SchemaError(f"{where}: exclusiveMinimum/exclusiveMaximum must be booleans")
    if minimum is None and maximum is None and divisor is None:
        return None

    def check(value: Any, path: Path, errors: list[ValidationError]) -> None:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return
        if isinstance(value, float) and not math.isfinite(value):  # not from JSON text
            errors.append(ValidationError(path, f"{value!r} is not a JSON number", "type"))
            return
        if minimum is not None and (value <= minimum if ex_min else value < minimum):
            word = "greater than" if ex_min else "at least"
            errors.append(ValidationError(path, f"{value!r} is not {word} {minimum!r}",
                                          "minimum"))
        if maximum is not None and (value >= maximum if ex_max else value > maximum):
            word = "less than" if ex_max else "at most"
            errors.append(ValidationError(path, f"{value!r} is not {word} {maximum!r}",
                                          "maximum"))
        if divisor is not None and not _is_multiple(value, divisor):
            errors.append(ValidationError(path, f"{value!r} is not a multiple of {divisor!r}",
                                          "multipleOf"))

    return check


def _is_multiple(value: int | float, divisor: int | float) -> bool:
    if isinstance(divisor, float):
        try:
            quotient = value / divisor
            return int(quotient) == quotient
        except (OverflowError, ValueError):  # beyond a float (or infinite): divide exactly
            return (Fraction(value) / Fraction(divisor)).denominator == 1
    return not value % divisor


def string_check(c: Compiler, schema: Mapping[str, Any], where: str) -> Check | None:
    low, high = count(schema, "minLength", where), count(schema, "maxLength", where)
    pattern, fmt = schema.get("pattern"), schema.get("format")
    regex = None
    if pattern is not None:
        if not isinstance(pattern, str):
            raise SchemaError(f"{where}/pattern: must be a string")
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise SchemaError(f"{where}/pattern: does not compile ({exc})") from None
    if fmt is not None and not isinstance(fmt, str):
        raise SchemaError(f"{where}/format: must be a string")
    checker = FORMATS.get(fmt) if fmt is not None else None
    typed = owns_type(schema, "string")
    if low is None and high is None and regex is None and checker is None and not typed:
        return None

    def check(value: Any, path: Path, errors: list[ValidationError]) -> None:
        if not isinstance(value, str):
            if typed:
                errors.append(ValidationError(path, f"expected string, got {kind(value)}",
                                              "type"))
            return
        if low is not None and len(value) < low:
            errors.append(ValidationError(path, f"shorter than {low} characters", "minLength"))
        if high is not None and len(value) > high:
            errors.append(ValidationError(path, f"longer than {high} characters", "maxLength"))
        if regex is not None and regex.search(value) is None:
            errors.append(ValidationError(path, f"{short(value)} does not match {pattern!r}",
                                          "pattern"))
        if checker is not None and not checker(value):
            errors.append(ValidationError(path, f"{short(value)} is not a valid {fmt}",
                                          "format"))

    return check


#: Keyword builders, in the order their errors are reported.
BUILDERS: tuple[Builder, ...] = (
    type_check, enum_check, number_check, string_check, object_check, array_check,
    combinators,
)

"""Keyword builders for objects, arrays and combinators (``properties``...,
``items``..., ``allOf``/``anyOf``/``oneOf``/``not``); see :mod:`.keywords`."""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping
from itertools import repeat
from typing import Any

from .schema_types import (
    Check,
    Compiler,
    Path,
    SchemaError,
    ValidationError,
    accept,
    count,
    kind,
    owns_type,
    sequence,
)

__all__ = ["array_check", "combinators", "object_check"]


def _schema_or_bool(c: Compiler, value: Any, where: str) -> Check | bool:
    """``additionalProperties``/``additionalItems``: True (anything), False, or a check."""
    if isinstance(value, bool):
        return value
    return c.compile(value, where) or True


_ABSENT: Any = object()
_ANNOTATIONS = frozenset({"description", "title", "default", "$schema", "self", "id",
                          "examples", "$comment"})
#: Python types standing for a draft-04 type without ambiguity (no bool/int overlap).
_PLAIN_TYPES: dict[str, type] = {"string": str, "array": list, "object": dict,
                                 "null": type(None)}
_TYPE_LABELS = {t: name for name, t in _PLAIN_TYPES.items()}


def _property(c: Compiler, schema: Any, where: str) -> Check | type | None:
    """A property's check; a bare ``{"type": "string"}`` (or array, object, null) becomes
    the Python type itself, tested inline (most Iglu properties are just that)."""
    if (isinstance(schema, Mapping) and isinstance(schema.get("type"), str)
            and schema["type"] in _PLAIN_TYPES
            and _ANNOTATIONS.issuperset(set(schema) - {"type"})):
        return _PLAIN_TYPES[schema["type"]]
    return c.compile(schema, where)


def object_check(c: Compiler, schema: Mapping[str, Any], where: str) -> Check | None:
    props_schema = schema.get("properties", {})
    patterns_schema = schema.get("patternProperties", {})
    if not isinstance(props_schema, Mapping) or not isinstance(patterns_schema, Mapping):
        raise SchemaError(f"{where}: properties/patternProperties must be objects")
    props = {k: _property(c, v, f"{where}/properties/{k}") for k, v in props_schema.items()}
    try:
        patterns = [(re.compile(p), c.compile(v, f"{where}/patternProperties/{p}"))
                    for p, v in patterns_schema.items()]
    except re.error as exc:
        raise SchemaError(f"{where}/patternProperties: a pattern does not compile ({exc})"
                          ) from None
    extra = _schema_or_bool(c, schema.get("additionalProperties", True),
                            f"{where}/additionalProperties")
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise SchemaError(f"{where}/required: must be a list of strings")
    low = count(schema, "minProperties", where)
    high = count(schema, "maxProperties", where)
    dependencies = _dependencies(c, schema.get("dependencies", {}), where)
    typed = owns_type(schema, "object")
    if (not props and not patterns and extra is True and not required and low is None
            and high is None and not dependencies and not typed):
        return None
    has_children = any(v is not None for v in props.values()) or bool(patterns) or (
        extra is not True)
    # Fast path when every property is one plain type and nothing else is allowed (as in
    # payload_data): a valid object is recognised without a Python loop over its keys.
    uniform = set(props.values())
    only: type | None = None
    if (len(uniform) == 1 and not patterns and extra is False
            and isinstance(next(iter(uniform)), type)):
        only = next(iter(uniform))  # type: ignore[assignment]
    known_keys = frozenset(props)

    def check(value: Any, path: Path, errors: list[ValidationError]) -> None:
        if not isinstance(value, dict):
            if typed:
                errors.append(ValidationError(path, f"expected object, got {kind(value)}",
                                              "type"))
            return
        for name in required:
            if name not in value:
                errors.append(ValidationError(path, f"required property {name!r} is missing",
                                              "required"))
        if low is not None and len(value) < low:
            errors.append(ValidationError(path, f"has fewer than {low} properties",
                                          "minProperties"))
        if high is not None and len(value) > high:
            errors.append(ValidationError(path, f"has more than {high} properties",
                                          "maxProperties"))
        if only is not None and known_keys.issuperset(value) and all(
                map(isinstance, value.values(), repeat(only))):
            pass  # every key known, every value of the one type
        elif has_children:
            for key, item in value.items():
                sub = props.get(key, _ABSENT)
                if isinstance(sub, type):
                    if not isinstance(item, sub):
                        errors.append(ValidationError((*path, key), f"expected "
                                      f"{_TYPE_LABELS[sub]}, got {kind(item)}", "type"))
                elif sub is not None and sub is not _ABSENT:
                    sub(item, (*path, key), errors)
                if patterns or (sub is _ABSENT and extra is not True):
                    _others(key, item, sub is not _ABSENT, path, errors)
        for name, dependency in dependencies:
            if name in value:
                dependency(value, path, errors)

    def _others(key: str, item: Any, known: bool, path: Path,
                errors: list[ValidationError]) -> None:
        """patternProperties, then additionalProperties for a key no keyword named."""
        for regex, pattern_check in patterns:
            if regex.search(key) is not None:
                known = True
                if pattern_check is not None:
                    pattern_check(item, (*path, key), errors)
        if known or extra is True:
            return
        if extra is False:
            errors.append(ValidationError((*path, key), "property not allowed "
                                          "(additionalProperties is false)",
                                          "additionalProperties"))
        else:
            extra(item, (*path, key), errors)

    return check


def _dependencies(c: Compiler, spec: Any, where: str) -> list[tuple[str, Check]]:
    if not isinstance(spec, Mapping):
        raise SchemaError(f"{where}/dependencies: must be an object")
    result: list[tuple[str, Check]] = []
    for name, need in spec.items():
        if isinstance(need, list):
            names = tuple(need)

            def check(value: Any, path: Path, errors: list[ValidationError],
                      name: str = name, names: tuple[str, ...] = names) -> None:
                for other in names:
                    if other not in value:
                        errors.append(ValidationError(
                            path, f"property {other!r} is required by {name!r}",
                            "dependencies"))

            result.append((name, check))
        else:
            result.append((name, c.compile(need, f"{where}/dependencies/{name}") or accept))
    return result


def array_check(c: Compiler, schema: Mapping[str, Any], where: str) -> Check | None:
    items = schema.get("items")
    each: Check | None = None
    positional: list[Check] = []
    extra: Check | bool = True  # additionalItems only applies to items given as a list
    if isinstance(items, list):
        positional = c.compile_all(items, f"{where}/items")
        extra = _schema_or_bool(c, schema.get("additionalItems", True),
                                f"{where}/additionalItems")
    elif items is not None:
        each = c.compile(items, f"{where}/items")
    low, high = count(schema, "minItems", where), count(schema, "maxItems", where)
    unique = schema.get("uniqueItems", False)
    if not isinstance(unique, bool):
        raise SchemaError(f"{where}/uniqueItems: must be a boolean")
    typed = owns_type(schema, "array")
    if (each is None and not positional and low is None and high is None and not unique
            and not typed):
        return None

    def check(value: Any, path: Path, errors: list[ValidationError]) -> None:
        if not isinstance(value, list):
            if typed:
                errors.append(ValidationError(path, f"expected array, got {kind(value)}",
                                              "type"))
            return
        if low is not None and len(value) < low:
            errors.append(ValidationError(path, f"has fewer than {low} items", "minItems"))
        if high is not None and len(value) > high:
            errors.append(ValidationError(path, f"has more than {high} items", "maxItems"))
        if unique and not _unique(value):
            errors.append(ValidationError(path, "has repeated items", "uniqueItems"))
        if each is not None:
            for index, item in enumerate(value):
                each(item, (*path, index), errors)
        elif positional:
            for index, item in enumerate(value):
                if index < len(positional):
                    positional[index](item, (*path, index), errors)
                elif extra is False:
                    errors.append(ValidationError((*path, index), "item not allowed "
                                                  "(additionalItems is false)",
                                                  "additionalItems"))
                elif extra is not True:
                    extra(item, (*path, index), errors)

    return check


def _unique(values: list[Any]) -> bool:
    """No two items equal as JSON: one pass over hashable canonical forms (pairwise
    comparison took minutes for a few thousand objects)."""
    seen = set()
    for value in values:
        key = _canonical(value)
        if key in seen:
            return False
        seen.add(key)
    return True


def _canonical(value: Any) -> Hashable:
    """A hashable form of a JSON value, equal exactly when :func:`json_equal` says so:
    ``1`` and ``1.0`` alike (Python's numbers already are), ``true`` and ``1`` not, object
    keys in any order."""
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, (int, float, str)) or value is None:
        return value  # str, numbers and None never equal one another or a tuple
    if isinstance(value, list):
        return ("l", tuple(_canonical(item) for item in value))
    if isinstance(value, dict):
        return ("o", frozenset((key, _canonical(item)) for key, item in value.items()))
    return ("?", id(value))  # not JSON: equal only to itself


def _passes(check: Check, value: Any, path: Path) -> list[ValidationError]:
    found: list[ValidationError] = []
    check(value, path, found)
    return found


def combinators(c: Compiler, schema: Mapping[str, Any], where: str) -> Check | None:
    checks: list[Check] = []
    if "allOf" in schema:
        checks.extend(c.compile_all(schema["allOf"], f"{where}/allOf"))
    if "anyOf" in schema:
        checks.append(_any_of(c.compile_all(schema["anyOf"], f"{where}/anyOf")))
    if "oneOf" in schema:
        checks.append(_one_of(c.compile_all(schema["oneOf"], f"{where}/oneOf")))
    if "not" in schema:
        negated = c.compile(schema["not"], f"{where}/not") or accept

        def check_not(value: Any, path: Path, errors: list[ValidationError]) -> None:
            if not _passes(negated, value, path):
                errors.append(ValidationError(path, "matches the schema in 'not'", "not"))

        checks.append(check_not)
    return sequence(checks)


def _any_of(branches: list[Check]) -> Check:
    def check(value: Any, path: Path, errors: list[ValidationError]) -> None:
        failures = []
        for branch in branches:
            found = _passes(branch, value, path)
            if not found:
                return
            failures.append(found)
        closest = min(failures, key=len)
        errors.append(ValidationError(path, f"matches none of the {len(branches)} anyOf "
                                      f"schemas (closest: {closest[0]})", "anyOf"))

    return check


def _one_of(branches: list[Check]) -> Check:
    def check(value: Any, path: Path, errors: list[ValidationError]) -> None:
        matched = [i for i, branch in enumerate(branches) if not _passes(branch, value, path)]
        if len(matched) != 1:
            what = "none" if not matched else f"{len(matched)} (#{matched[0]}, #{matched[1]})"
            errors.append(ValidationError(path, f"must match exactly one oneOf schema, "
                                          f"matches {what}", "oneOf"))

    return check

"""JSON Schemas that botline applies to untrusted data (a model's tool arguments; later MCP tool schemas
and batch result schemas).

jsonschema runs `pattern`, `patternProperties` (and with it `additionalProperties`) and the `regex`
format with Python's backtracking `re`: a tenant's `^(a+)+$` and a 40-character argument would hold
the event loop (and the GIL) for hours. `validator_for` gives a validator whose regexes run on RE2,
which matches in linear time; `check_schema` refuses, when a schema is saved, what RE2 cannot compile
(back-references, look-arounds), schemas too big or deep to validate cheaply, and
`unevaluatedProperties` next to `patternProperties` (jsonschema matches those with `re` internally).
Nothing here ever falls back to `re`: a pattern RE2 refuses fails validation instead.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import jsonschema
import orjson
import re2
from jsonschema.protocols import Validator

MAX_SCHEMA_BYTES = 64 * 1024
"""Far above any real tool schema; bounds the work of checking and of each validation."""
MAX_SCHEMA_DEPTH = 32
"""Nested objects and arrays; keeps jsonschema's recursion far from Python's limit."""

_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas", "dependencies")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems", "items")
_SCHEMA_VALUES = ("additionalProperties", "unevaluatedProperties", "items", "additionalItems", "unevaluatedItems",
                  "contains", "propertyNames", "not", "if", "then", "else")


class UnsafeSchema(ValueError):
    """A schema botline will not apply; `where` is the dotted path inside the schema (may be empty)."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}" if where else reason)
        self.where = where
        self.reason = reason


MAX_REGEX_MEMORY = 1 << 20
"""RE2's budget per compiled pattern (its default is 8 MB); a pattern that needs more is refused."""


def _compile(pattern: str) -> Any:
    options = re2.Options()
    options.log_errors = False
    options.max_mem = MAX_REGEX_MEMORY
    return re2.compile(pattern, options)


_compiled = functools.lru_cache(maxsize=128)(_compile)
"""Schema patterns, compiled once; at most 128 x MAX_REGEX_MEMORY."""


def _search(pattern: str, text: str) -> bool:
    """`re.search` semantics on RE2; raises re2.error for a pattern RE2 refuses."""
    return _compiled(pattern).search(text) is not None


def _pattern(validator: Validator, pattern: str, instance: Any, schema: Any) -> Iterator[jsonschema.ValidationError]:
    if not validator.is_type(instance, "string"):
        return
    try:
        matched = _search(pattern, instance)
    except re2.error:
        yield jsonschema.ValidationError(f"the schema's pattern {pattern!r} is not supported")
        return
    if not matched:
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


def _matching(patterns: dict[str, Any], name: str) -> Iterator[str]:
    for pattern in patterns:
        try:
            if _search(pattern, name):
                yield pattern
        except re2.error:
            continue  # fails closed: a property no pattern matches is "additional"


def _pattern_properties(
    validator: Any, patterns: dict[str, Any], instance: Any, schema: Any
) -> Iterator[jsonschema.ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for name, value in instance.items():
        for pattern in _matching(patterns, name):
            yield from validator.descend(value, patterns[pattern], path=name, schema_path=pattern)


def _additional_properties(
    validator: Any, extra: Any, instance: Any, schema: Any
) -> Iterator[jsonschema.ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    named = schema.get("properties", {})
    patterns = schema.get("patternProperties", {})
    extras = [name for name in instance if name not in named and next(_matching(patterns, name), None) is None]
    if validator.is_type(extra, "object"):
        for name in extras:
            yield from validator.descend(instance[name], extra, path=name)
    elif extra is False and extras:
        listed = ", ".join(repr(name) for name in sorted(extras))
        yield jsonschema.ValidationError(f"Additional properties are not allowed ({listed} unexpected)")


def _is_regex(instance: object) -> bool:
    """The `regex` format (when a caller asserts formats): the string is data, so it is not cached."""
    if isinstance(instance, str):
        _compile(instance)
    return True


_extend: Callable[..., type[Validator]] = jsonschema.validators.extend  # untyped in jsonschema
_OVERRIDES = {"pattern": _pattern, "patternProperties": _pattern_properties,
              "additionalProperties": _additional_properties}


@functools.cache
def _safe_class(base: type[Validator]) -> type[Validator]:
    formats = jsonschema.FormatChecker()
    formats.checkers = dict(base.FORMAT_CHECKER.checkers)
    formats.checks("regex", raises=re2.error)(_is_regex)
    overrides = {keyword: check for keyword, check in _OVERRIDES.items() if keyword in base.VALIDATORS}
    return _extend(base, overrides, format_checker=formats)


def validator_for(schema: dict[str, Any]) -> Validator:
    """A validator for `schema` (its own draft) whose regexes run on RE2; call `check_schema` first."""
    cls = _safe_class(jsonschema.validators.validator_for(schema))
    return cls(schema)


def check_schema(schema: dict[str, Any]) -> None:
    """Raises UnsafeSchema naming where `schema` is invalid or unsafe to apply to untrusted data."""
    if len(orjson.dumps(schema)) > MAX_SCHEMA_BYTES:
        raise UnsafeSchema("", f"is larger than {MAX_SCHEMA_BYTES // 1024} KB")
    anywhere = _keys_within(schema)
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise UnsafeSchema(".".join(str(part) for part in exc.path), f"is not a valid JSON Schema: {exc.message}") \
            from None
    for path, node in _subschemas(schema, ()):
        where = ".".join(str(part) for part in path)
        if isinstance(node.get("pattern"), str):
            _check_pattern(node["pattern"], f"{where}.pattern".lstrip("."))
        if isinstance(node.get("patternProperties"), dict):
            for pattern in node["patternProperties"]:
                _check_pattern(pattern, f"{where}.patternProperties".lstrip("."))
    if {"unevaluatedProperties", "patternProperties"} <= anywhere:  # jsonschema pairs them with `re`
        raise UnsafeSchema("unevaluatedProperties", "cannot be combined with patternProperties")


def _check_pattern(pattern: str, where: str) -> None:
    try:
        _compiled(pattern)
    except re2.error as exc:
        detail = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise UnsafeSchema(where, f"{pattern!r} is not supported ({detail}): patterns run on RE2, a linear-time "
                                  "engine, so back-references, look-arounds and huge repetitions are refused") from None


def _keys_within(schema: Any) -> set[str]:
    """Every object key anywhere in `schema` (a $ref can reach any of them); refuses a too-deep one."""
    keys: set[str] = set()
    pending: list[tuple[Any, int]] = [(schema, 1)]
    while pending:
        node, depth = pending.pop()
        if depth > MAX_SCHEMA_DEPTH:
            raise UnsafeSchema("", f"is nested deeper than {MAX_SCHEMA_DEPTH} levels")
        if isinstance(node, dict):
            keys.update(node)
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        pending.extend((child, depth + 1) for child in children)
    return keys


def _subschemas(node: Any, path: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], dict[str, Any]]]:
    """Every (sub)schema object in `node` with its path; data keywords (const, enum, default) are skipped."""
    if not isinstance(node, dict):
        return
    yield path, node
    for keyword in _SCHEMA_MAPS:
        if isinstance(node.get(keyword), dict):
            for name, child in node[keyword].items():
                yield from _subschemas(child, (*path, keyword, name))
    for keyword in _SCHEMA_LISTS:
        if isinstance(node.get(keyword), list):
            for index, child in enumerate(node[keyword]):
                yield from _subschemas(child, (*path, keyword, index))
    for keyword in _SCHEMA_VALUES:
        yield from _subschemas(node.get(keyword), (*path, keyword))

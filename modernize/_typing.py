"""Coercion of TOML/JSON/CLI values to the type hints of specs, transforms, recipes, roadmap
files and run-folder records.

TOML gives lists where the spec wants tuples and ints where it may want floats; this
module converts those and refuses anything else with a message that says what was
expected, so that every typed field is checked in one place. Nothing else is converted:
a bool is not an int, a string is not a number, a datetime is not a string.
``check_fields`` applies it to a whole table whose schema is a dataclass or TypedDict, so a
key added to the schema is checked without another line of code.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, Union

_MISSING = object()
_REPR_MAX = 200


def describe_type(hint: Any) -> str:
    """A short human name for a type hint ("int", "one of 'relu', 'gelu'", ...)."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin in (Union, types.UnionType):
        return " or ".join(describe_type(a) for a in typing.get_args(hint) if a is not type(None))
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {describe_type(args[0])}"
        return "a list of " + ", ".join(describe_type(a) for a in args)
    if origin is list:
        inner = describe_type(typing.get_args(hint)[0]) if typing.get_args(hint) else "any"
        return "a list of tables" if inner == "a table" else f"a list of {inner}"
    if origin is dict or hint is dict or typing.is_typeddict(hint):
        return "a table"
    if hint is type(None):
        return "none"
    return getattr(hint, "__name__", str(hint))


def coerce(value: Any, hint: Any) -> Any:
    """Return ``value`` converted to ``hint`` or raise ``TypeError`` naming the expected type."""
    result = _coerce(value, hint)
    if result is _MISSING:
        shown = repr(value)
        shown = shown if len(shown) <= _REPR_MAX else shown[:_REPR_MAX - 3] + "..."
        raise TypeError(f"expected {describe_type(hint)}, got {type(value).__name__} {shown}")
    return result


def schema_hints(schema: Any) -> dict[str, Any]:
    """``{key: type hint}`` of a dataclass or TypedDict (the one source of a file's keys); class
    variables are no keys."""
    return {k: v for k, v in typing.get_type_hints(schema).items() if typing.get_origin(v) is not typing.ClassVar}


def check_fields(table: Mapping[str, Any], schema: Any | Mapping[str, Any], fail: Callable[[str], Exception], *,
                 unknown: bool = False, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every key of ``table`` checked against ``schema`` (a dataclass, a TypedDict or a ``{key:
    hint}`` mapping); returns the converted values. A key not in the schema is refused (listing
    the valid ones) unless ``unknown``, then it is kept as is; keys in ``skip`` are left to the
    caller. ``fail(message)`` builds the error to raise (it adds the file and the place)."""
    hints = dict(schema) if isinstance(schema, Mapping) else schema_hints(schema)
    bad = sorted(k for k in table if k not in hints and k not in skip)
    if bad and not unknown:
        raise fail(f"unknown key(s) {bad} (valid: {sorted(k for k in hints if k not in skip)})")
    out = dict(table)
    for key, value in table.items():
        if key in hints and key not in skip:
            try:
                out[key] = coerce(value, hints[key])
            except TypeError as exc:
                raise fail(f"key '{key}': {exc}") from None
    return out


def _coerce(value: Any, hint: Any) -> Any:
    if hint is Any:
        return value
    origin = typing.get_origin(hint)
    if origin is Literal:
        for allowed in typing.get_args(hint):
            if type(value) is type(allowed) and value == allowed:
                return value
        return _MISSING
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(hint):
            out = _coerce(value, arg)
            if out is not _MISSING:
                return out
        return _MISSING
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return _MISSING
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            items = [_coerce(v, args[0]) for v in value]
        elif len(args) == len(value):
            items = [_coerce(v, a) for v, a in zip(value, args)]
        else:
            return _MISSING
        return _MISSING if any(i is _MISSING for i in items) else tuple(items)
    if origin is list:
        if not isinstance(value, list):
            return _MISSING
        (item_hint,) = typing.get_args(hint) or (Any,)
        items = [_coerce(v, item_hint) for v in value]
        return _MISSING if any(i is _MISSING for i in items) else items
    if origin is dict or hint is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            return _MISSING
        _, value_hint = typing.get_args(hint) or (str, Any)
        items = {k: _coerce(v, value_hint) for k, v in value.items()}
        return _MISSING if any(i is _MISSING for i in items.values()) else items
    if typing.is_typeddict(hint):  # the keys it names are typed; others are kept (older files)
        if not isinstance(value, dict):
            return _MISSING
        hints = typing.get_type_hints(hint)
        items = {k: _coerce(v, hints[k]) if k in hints else v for k, v in value.items()}
        return _MISSING if any(i is _MISSING for i in items.values()) else items
    if hint is type(None):
        return None if value is None else _MISSING
    if hint is bool:
        return value if isinstance(value, bool) else _MISSING
    if hint is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _MISSING
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        return _MISSING
    if hint is str:
        return value if isinstance(value, str) else _MISSING
    return value if isinstance(value, hint) else _MISSING

"""Coercion of TOML/CLI values to the type hints of specs, transforms and recipes.

TOML gives lists where the spec wants tuples and ints where it may want floats; this
module converts those and refuses anything else with a message that says what was
expected, so that every typed field is checked in one place.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Literal, Union

_MISSING = object()


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
    if hint is type(None):
        return "none"
    return getattr(hint, "__name__", str(hint))


def coerce(value: Any, hint: Any) -> Any:
    """Return ``value`` converted to ``hint`` or raise ``TypeError`` naming the expected type."""
    result = _coerce(value, hint)
    if result is _MISSING:
        raise TypeError(f"expected {describe_type(hint)}, got {value!r}")
    return result


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

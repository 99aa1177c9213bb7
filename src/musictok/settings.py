"""Config dataclasses from plain dicts (JSON / YAML), refusing keys they do not know and values of the
wrong type, with a message that names the key."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, TypeVar, Union

T = TypeVar("T")


def build_checked(cls: type[T], data: dict[str, Any], what: str | None = None) -> T:
    """``cls(**data)``, but an unknown key or a value of the wrong type is a clear error naming the key
    (``what.key``) rather than a silent drop or a TypeError deep inside whatever uses the value."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown {what or cls.__name__} keys {sorted(unknown)}; known: {sorted(known)}")
    check_types(cls, data, what or cls.__name__)
    return cls(**data)


def check_types(cls: type, data: dict[str, Any], what: str) -> None:
    """Check each value of ``data`` against the annotation of the field of ``cls`` it sets: numbers are
    numbers (finite; a quoted "0.5" is a string), whole numbers are ints, strings are strings, lists are
    lists. Annotations it does not understand are left to the class."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # an annotation that cannot be resolved here: nothing to check against
        return
    for key, value in data.items():
        if key in hints:
            problem = _mismatch(hints[key], value)
            if problem:
                raise ValueError(f"{what}.{key}: must be {problem}, got {_show(value)}")


def _show(value: Any) -> str:
    if isinstance(value, str):
        try:
            float(value)
            return f"the string {value!r} (remove the quotes)"
        except ValueError:
            return f"the string {value!r}"
    return repr(value)


def _mismatch(hint: Any, value: Any) -> str | None:
    """What ``value`` should be under the annotation ``hint``, or ``None`` when it fits."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        problems = [_mismatch(a, value) for a in options]
        if any(p is None for p in problems):
            return None
        return " or ".join(p for p in problems if p) + (" (or null)" if type(None) in args else "")
    if hint is bool:
        return None if isinstance(value, bool) else "true or false"
    if hint is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "a whole number"
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return None if math.isfinite(value) else "a finite number"
        return "a number"
    if hint is str:
        return None if isinstance(value, str) else "a string"
    if hint is dict or origin is dict:
        return None if isinstance(value, dict) else "a mapping"
    if hint in (list, tuple) or origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return "a list"
        if origin is tuple and args:
            if len(args) == 2 and args[1] is Ellipsis:
                item = [args[0]] * len(value)
            elif len(args) != len(value):
                return f"a list of {len(args)} values"
            else:
                item = list(args)
        elif origin is list and args:
            item = [args[0]] * len(value)
        else:
            return None
        for h, v in zip(item, value):
            p = _mismatch(h, v)
            if p:
                return f"a list of {p.removeprefix('a ').removeprefix('an ')}s"
        return None
    return None


def require(name: str, value: Any, ok: bool, should: str) -> None:
    """Raise ``ValueError("name: must be should, got value")`` unless ``ok``: range checks in ``__post_init__``."""
    if not ok:
        raise ValueError(f"{name}: must be {should}, got {value!r}")

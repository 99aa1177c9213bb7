"""Config dataclasses from plain dicts (JSON / YAML), refusing keys they do not know."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def build_checked(cls: type[T], data: dict[str, Any], what: str | None = None) -> T:
    """``cls(**data)``, but an unknown key is a clear error rather than a silent drop or a TypeError."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown {what or cls.__name__} keys {sorted(unknown)}; known: {sorted(known)}")
    return cls(**data)

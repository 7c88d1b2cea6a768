"""Small readers for provider payloads that turn a missing or mistyped field into a 400 with the
field's path, instead of a KeyError (a 500)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

from listening import times
from listening.exceptions import PayloadInvalid

T = TypeVar("T")


def require(obj: Any, key: str, kind: type[T], path: str = "") -> T:
    where = f"{path}.{key}" if path else key
    if not isinstance(obj, dict):
        raise PayloadInvalid(f"{path or 'body'} must be an object")
    if key not in obj or obj[key] is None:
        raise PayloadInvalid(f"missing field {where}")
    value = obj[key]
    if kind is str and isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)  # ids arrive as numbers from several providers
    if kind is int and isinstance(value, str) and value.lstrip("-").isdigit():
        value = int(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise PayloadInvalid(f"field {where} must be {kind.__name__}")
    return value


def optional(obj: Any, key: str, kind: type[T], default: T, path: str = "") -> T:
    if not isinstance(obj, dict) or obj.get(key) is None:
        return default
    return require(obj, key, kind, path)


def from_unix(value: Any, where: str) -> datetime:
    """A Unix time in UTC, or the received time flagged as out of range (listening.times)."""
    return times.from_unix_seconds(value, where)


def from_iso(value: Any, where: str) -> datetime:
    """An ISO 8601 time in UTC, or the received time flagged as out of range (listening.times)."""
    return times.from_iso_text(value, where)

"""Make untrusted provider text storable: PostgreSQL rejects NUL characters and lone surrogates
(which JSON can smuggle in as "\\u0000" or "\\ud800"), and columns have lengths."""

from __future__ import annotations

import json
import re
from typing import Any

# U+FFFD, not the "?" that str.encode("utf-8", "replace") writes: the classifier flags text holding
# the replacement character as invalid_unicode, so agents can tell a damaged message from a "?".
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(value: Any, max_chars: int | None = None) -> str:
    if value is None:
        return ""
    text = str(value)
    if "\x00" in text:
        text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = _LONE_SURROGATE.sub("\ufffd", text)
    if max_chars is not None and len(text) > max_chars:
        text = text[:max_chars]
    return text


def clean_json(value: Any, depth: int = 0) -> Any:
    """A JSON-safe copy of `value` with every string cleaned. Nesting is capped at 64 levels."""
    if depth > 64:
        return None
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(k): clean_json(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v, depth + 1) for v in value]
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if value is None or isinstance(value, bool | int | float):
        return value
    return clean_text(value)


def capped_payload(raw: Any, max_bytes: int) -> tuple[Any, bool]:
    """The raw payload to keep, and whether it was cut to fit `max_bytes` of JSON."""
    cleaned = clean_json(raw)
    encoded = json.dumps(cleaned, ensure_ascii=False, default=str)
    if len(encoded.encode("utf-8")) <= max_bytes:
        return cleaned, False
    preview = encoded.encode("utf-8")[: max_bytes - 200].decode("utf-8", "ignore")
    return {"truncated": True, "original_bytes": len(encoded.encode("utf-8")), "preview": preview}, True

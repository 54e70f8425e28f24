"""Sizes of JSON documents as stored."""

from __future__ import annotations

import json
from typing import Any

# One encoder for every call: json.dumps with options builds a new one each time.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def to_json(value: Any) -> str:
    """``value`` as compact JSON text; TypeError/ValueError if it is not JSON."""
    return _ENCODER.encode(value)


def json_size(value: Any) -> int:
    """Bytes of ``value`` as compact UTF-8 JSON; TypeError/ValueError if it is not JSON."""
    text = to_json(value)
    return len(text) if text.isascii() else len(text.encode())

"""Sizes of JSON documents as stored."""

from __future__ import annotations

import json
from typing import Any


def json_size(value: Any) -> int:
    """Bytes of ``value`` as compact UTF-8 JSON; TypeError/ValueError if it is not JSON."""
    return len(
        json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    )

"""Job ids: UUIDv7, so that ids sort by creation time and keyset pagination needs no clock column."""

from __future__ import annotations

import os
import time
import uuid


def new_job_id(now_ns: int | None = None) -> str:
    """A UUIDv7 string: 48 bits of Unix milliseconds, then 74 random bits."""
    ms = (now_ns if now_ns is not None else time.time_ns()) // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a
    value |= 0b10 << 62  # variant
    value |= rand & ((1 << 62) - 1)  # rand_b
    return str(uuid.UUID(int=value))


def is_job_id(text: str) -> bool:
    try:
        uuid.UUID(text)
    except (ValueError, AttributeError, TypeError):
        return False
    return True

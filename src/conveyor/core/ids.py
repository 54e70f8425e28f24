"""Job ids: UUIDv7, so that ids sort by creation time and keyset pagination needs no clock column."""

from __future__ import annotations

import os
import re
import threading
import time
import uuid

_HEX = "[0-9a-fA-F]"
_CANONICAL = re.compile(f"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}")
_lock = threading.Lock()
_last_ms = 0
_seq = 0


def new_job_id(now_ns: int | None = None, *, at_ms: int | None = None) -> str:
    """A UUIDv7 string: 48 bits of Unix milliseconds, a 12-bit sequence, 62 random bits.

    Within one process ids are strictly increasing, even inside one millisecond. ``at_ms``:
    the time to mint at (the database's, so that ids of all hosts order by creation as
    ``created_at`` does); this host's clock without it.
    """
    global _last_ms, _seq
    if now_ns is not None:  # an explicit time: exactly that millisecond, random sequence
        return _format(now_ns // 1_000_000, int.from_bytes(os.urandom(2), "big") & 0xFFF)
    ms = time.time_ns() // 1_000_000 if at_ms is None else at_ms
    with _lock:
        if ms > _last_ms:
            _last_ms, _seq = ms, int.from_bytes(os.urandom(2), "big") & 0x3FF
        else:  # same millisecond (or the clock stepped back): count on
            _seq += 1
            if _seq > 0xFFF:
                _last_ms, _seq = _last_ms + 1, 0
        ms, seq = _last_ms, _seq
    return _format(ms, seq)


def _format(ms: int, seq: int) -> str:
    rand = int.from_bytes(os.urandom(8), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= seq << 64  # rand_a used as a monotonic sequence
    value |= 0b10 << 62  # variant
    value |= rand & ((1 << 62) - 1)  # rand_b
    h = f"{value:032x}"  # what str(uuid.UUID(int=value)) gives, without building a UUID
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def id_floor(unix_ms: int) -> str:
    """The smallest id minted in millisecond ``unix_ms``: a bound for range scans by time."""
    ms = max(0, min(unix_ms, (1 << 48) - 1))
    return str(uuid.UUID(int=(ms << 80) | (0x7 << 76) | (0b10 << 62)))


def is_job_id(text: object) -> bool:
    """Whether ``text`` is an id in the canonical 8-4-4-4-12 hex form, in either case.

    ``uuid.UUID`` also reads ``urn:uuid:``, braces and undashed hex, which PostgreSQL and
    SQLite read differently or not at all: those spellings are not ids here.
    """
    return isinstance(text, str) and _CANONICAL.fullmatch(text) is not None

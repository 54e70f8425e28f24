"""Every system the suite knows, by name, in the order the report lists them."""

from __future__ import annotations

import importlib

from bench.peers.base import System

_PATHS = [
    "bench.peers.conveyor_bench:ConveyorPgRedis",
    "bench.peers.conveyor_bench:ConveyorPg",
    "bench.peers.conveyor_bench:ConveyorSqlite",
    "bench.peers.rq_bench:RQFork",
    "bench.peers.rq_bench:RQSimple",
    "bench.peers.naive_bench:Naive",
    "bench.peers.celery_bench:CeleryRedis",
    "bench.peers.dramatiq_bench:DramatiqRedis",
    "bench.peers.arq_bench:Arq",
    "bench.peers.saq_bench:Saq",
    "bench.peers.huey_bench:HueyRedis",
    "bench.peers.procrastinate_bench:Procrastinate",
    "bench.peers.pgqueuer_bench:PgQueuer",
]


def load(path: str) -> type[System]:
    module, _, cls = path.partition(":")
    return getattr(importlib.import_module(module), cls)  # type: ignore[no-any-return]


def available() -> dict[str, type[System]]:
    """Systems whose modules import (a peer's package may be missing outside the extra)."""
    out: dict[str, type[System]] = {}
    for path in _PATHS:
        try:
            cls = load(path)
        except ImportError:
            continue
        out[cls.name] = cls
    return out

"""Garbage collector settings for long-lived, allocation-heavy processes (workers, the API)."""

from __future__ import annotations

import gc

#: Young objects allocated between collections of the cyclic garbage collector. Python's
#: default is 700: a busy worker allocates that many in a few jobs and spent ~8 % of its
#: time collecting. Garbage cycles still go, in fewer and larger passes.
GEN0_THRESHOLD = 20_000


def tune_gc() -> None:
    """Freeze everything allocated so far (imports, settings: it lives as long as the
    process) out of the collector's passes, and make young-generation passes rarer."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)

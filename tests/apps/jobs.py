"""Job types the integration tests run through real worker processes."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from conveyor import Context, Conveyor, Permanent

app = Conveyor()


class Flaky(Exception):
    pass


class Fatal(Exception):
    pass


def _mark(name: str, text: str) -> None:
    """Append a line to a file under CONVEYOR_TEST_MARKS: how tests see what ran."""
    marks = os.environ.get("CONVEYOR_TEST_MARKS")
    if marks:
        with open(Path(marks) / name, "a") as fh:
            fh.write(text + "\n")


@app.job
async def noop(ctx: Context) -> None:
    return None


@app.job(queue="default")
async def add(ctx: Context, a: int, b: int = 0) -> int:
    return a + b


@app.job(queue="low")
def sync_add(ctx: Context, a: int, b: int = 0) -> int:
    return a + b


@app.job(stages=["crawling", "parsing", "analyzing", "embedding"], retries=0)
async def staged(ctx: Context, pause: float = 0.3) -> dict[str, str]:
    for stage in ctx.stages:
        await ctx.stage(stage)
        await asyncio.sleep(pause)
    await ctx.progress(95, message="almost")
    return {"done": "yes"}


@app.job(retries=3, backoff_base="0.2s", backoff_cap="1s", dont_retry_on=[Fatal])
async def flaky(ctx: Context, fail_times: int, fatal: bool = False) -> int:
    _mark(f"flaky-{ctx.job_id}", f"{ctx.attempt} {time.time()}")
    if fatal:
        raise Fatal("this one cannot be fixed by retrying")
    if ctx.attempt <= fail_times:
        raise Flaky(f"attempt {ctx.attempt} fails")
    return ctx.attempt


@app.job(retries=5)
async def permanent(ctx: Context) -> None:
    raise Permanent("bad input, never retry")


@app.job(timeout="0.5s", retries=0)
async def slow_async(ctx: Context, seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "finished"


@app.job(timeout="0.5s", retries=0)
def slow_sync(ctx: Context, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ctx.cancelled:
            _mark(f"slow_sync-{ctx.job_id}", "saw cancelled")
            return "stopped early"
        time.sleep(0.01)
    return "finished"


@app.job(retries=0)
async def sleeper(ctx: Context, seconds: float) -> str:
    _mark(f"sleeper-{ctx.job_id}", f"start {ctx.attempt}")
    await asyncio.sleep(seconds)
    _mark(f"sleeper-{ctx.job_id}", f"end {ctx.attempt}")
    return "slept"


@app.job(retries=0)
def sync_sleeper(ctx: Context, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ctx.check()
        time.sleep(0.01)
    return "slept"


@app.job(queue="critical")
async def weighted_critical(ctx: Context, n: int) -> int:
    await asyncio.sleep(0.01)
    return n


@app.job(queue="default", name="weighted_default")
async def weighted_default(ctx: Context, n: int) -> int:
    await asyncio.sleep(0.01)
    return n


@app.job(queue="low", name="weighted_low")
async def weighted_low(ctx: Context, n: int) -> int:
    await asyncio.sleep(0.01)
    return n


@app.job(retries=0)
async def big_result(ctx: Context, size: int) -> str:
    return "x" * size


@app.job(retries=0)
async def chatty(ctx: Context, updates: int) -> int:
    for i in range(updates):
        await ctx.progress(100 * i / updates, message=f"step {i}")
        if i % 500 == 0:
            await asyncio.sleep(0.01)
    return updates


@app.job
def truncate_table(ctx: Context, schema: str, table: str) -> str:
    return f"{schema}.{table}"


@app.job(retries=2, backoff_base="0.1s", backoff_cap="0.5s")
async def ledger(ctx: Context, seconds: float = 0.0, later_seconds: float | None = None) -> str:
    """Writes its own execution ledger, a line as each attempt starts and one as it ends
    (``start|end <job id> <attempt> <pid>``): how fault tests count executions per (job,
    attempt) and see which process ran them. Attempts after the first take ``later_seconds``
    when it is given."""
    _mark("ledger", f"start {ctx.job_id} {ctx.attempt} {os.getpid()}")
    pause = seconds if later_seconds is None or ctx.attempt == 1 else later_seconds
    await asyncio.sleep(pause)
    _mark("ledger", f"end {ctx.job_id} {ctx.attempt} {os.getpid()}")
    return ctx.job_id


@app.job(isolated=True, retries=0, stages=["one", "two"])
async def isolated_add(ctx: Context, a: int, b: int = 0) -> int:
    await ctx.stage("one")
    print("a print from the child goes to stderr, not into the channel")
    await ctx.stage("two", message="almost")
    return a + b


@app.job(isolated=True, retries=2, backoff_base="0.1s", backoff_cap="0.2s")
def isolated_crash(ctx: Context, how: str) -> None:
    _mark(f"crash-{ctx.job_id}", f"{ctx.attempt} {os.getpid()}")
    if how == "exit":
        os._exit(3)
    if how == "segv":
        import ctypes

        ctypes.string_at(0)
    if how == "kill":  # what the OOM killer does
        os.kill(os.getpid(), 9)
    if how == "permanent":
        raise Permanent("bad input")


@app.job(isolated=True, retries=0, timeout="5s")  # a child starts in ~1 s; more when loaded
def isolated_sleep(ctx: Context, seconds: float) -> str:
    _mark(f"pid-{ctx.job_id}", str(os.getpid()))
    time.sleep(seconds)
    return "slept"


# -- values that cannot be stored, and handlers that never give their worker back ----------

_POISON: dict[str, object] = {
    "nul": {"v": "a\x00b"},
    "surrogate": {"v": "a\ud800b"},
    "nan": {"v": float("nan")},
    "deep": [],
    "key": {"k\x00": 1},
    "not_json": {"v": {1, 2}},
}


def _deep(levels: int) -> object:
    value: object = "bottom"
    for _ in range(levels):
        value = [value]
    return value


@app.job(retries=1, backoff_base="0.1s", backoff_cap="0.1s")
async def poison_result(ctx: Context, kind: str) -> object:
    """Returns a result PostgreSQL cannot store (or JSON cannot hold)."""
    return _deep(300) if kind == "deep" else _POISON[kind]


_BAD_TEXT = {"nul": "bad\x00text", "surrogate": "bad\ud800text", "long": "x" * 100_000}


@app.job(retries=1, backoff_base="0.1s", backoff_cap="0.1s")
def poison_error(ctx: Context, kind: str) -> None:
    """Raises an error whose message (or class name) cannot be stored as it is."""
    if kind == "type":
        raise type("Bad" + "x" * 300 + "Name", (Exception,), {})("a class name too long")
    raise ValueError(_BAD_TEXT[kind])


@app.job(retries=0)
async def poison_progress(ctx: Context, kind: str, catch: bool = False) -> str:
    """Reports a progress message that cannot be stored; with ``catch``, goes on after the
    refusal."""
    try:
        await ctx.progress(50, message=_BAD_TEXT[kind])
    except ValueError as exc:
        if not catch:
            raise
        return f"refused: {exc}"
    return "reported"


@app.job(retries=0)
async def poison_stage(ctx: Context, kind: str) -> str:
    await ctx.stage(_BAD_TEXT[kind])
    return "staged"


@app.job(retries=0, timeout="0.5s")
def hang_sync(ctx: Context) -> None:
    """Ignores its timeout and ctx.cancelled: its thread never returns."""
    _mark("hang_sync", f"start {ctx.job_id}")
    while True:
        time.sleep(0.05)


@app.job(retries=0, timeout="0.5s")
async def block_loop(ctx: Context, seconds: float) -> str:
    """Blocks the event loop (no await) for ``seconds``, past its timeout."""
    time.sleep(seconds)
    return "returned"


# -- arbitrary values at the storage boundary (tests/integration/test_storable_properties.py) --
# Imported here, not at the top: this section is appended to a file others are editing.


def text_in(value: Any) -> str:
    """The text a handler would show for ``value``: the value if it is a string, else its
    first string (key or item, depth first), else ``str(value)``."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            return item
        if isinstance(item, dict):
            pending.extend(reversed([part for pair in item.items() for part in pair]))
        elif isinstance(item, list):
            pending.extend(reversed(item))
    return str(value)


@app.job(retries=0)
async def value_echo(ctx: Context, value: Any = None) -> Any:
    """Takes any value as its payload: what enqueue's storability check is tried with."""
    return value


@app.job(retries=0)
async def value_result(ctx: Context, encoded: str) -> Any:
    """Returns ``json.loads(encoded)``: a result no payload could carry (NUL, NaN, ...)."""
    return json.loads(encoded)


@app.job(retries=0)
def value_error(ctx: Context, encoded: str) -> None:
    """Raises a ValueError whose message is the text in the decoded value."""
    raise ValueError(text_in(json.loads(encoded)))


@app.job(retries=0)
async def value_progress(ctx: Context, encoded: str) -> str:
    """Reports the text in the decoded value as its progress message."""
    await ctx.progress(50, message=text_in(json.loads(encoded)))
    return "reported"

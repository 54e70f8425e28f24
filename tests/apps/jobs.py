"""Job types the integration tests run through real worker processes."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

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
async def ledger(ctx: Context, seconds: float = 0.0) -> str:
    """Writes its own execution ledger: how fault tests count runs and duplicates."""
    _mark("ledger", f"start {ctx.job_id} {ctx.attempt}")
    await asyncio.sleep(seconds)
    _mark("ledger", f"end {ctx.job_id} {ctx.attempt}")
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


@app.job(isolated=True, retries=0, timeout="1s")
def isolated_sleep(ctx: Context, seconds: float) -> str:
    _mark(f"pid-{ctx.job_id}", str(os.getpid()))
    time.sleep(seconds)
    return "slept"

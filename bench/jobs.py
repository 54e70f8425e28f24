"""Job types the benchmarks run."""

from __future__ import annotations

import asyncio

from conveyor import Context, Conveyor

app = Conveyor()


@app.job(retries=0)
async def noop(ctx: Context) -> None:
    return None


@app.job(retries=0)
async def io_sleep(ctx: Context, seconds: float = 0.01) -> None:
    await asyncio.sleep(seconds)

"""A runnable example: `conveyor worker --app examples.quickstart:app`."""

from __future__ import annotations

import asyncio
import time

from conveyor import Context, Conveyor, Permanent

app = Conveyor()


@app.job(queue="default", retries=3, timeout="15m",
         stages=["crawling", "parsing", "analyzing", "embedding"])
async def analyze_store(ctx: Context, store_id: int, deep: bool = False) -> dict:
    if store_id < 0:
        raise Permanent("store_id must be positive")
    for stage in ctx.stages:
        await ctx.stage(stage)
        await asyncio.sleep(0.2)
    await ctx.progress(90, message="120 reviews parsed")
    return {"store_id": store_id, "reviews": 120, "deep": deep}


@app.job(queue="low")
def truncate_table(ctx: Context, schema: str, table: str) -> str:
    ctx.progress(50, message=f"truncating {schema}.{table}")
    time.sleep(0.1)
    return f"{schema}.{table} truncated"


@app.job
async def noop(ctx: Context) -> None:
    return None

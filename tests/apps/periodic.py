"""Schedules the scheduler tests run through real scheduler processes."""

from __future__ import annotations

import asyncio

from conveyor import Context, Conveyor

app = Conveyor()


@app.periodic(every="1s", name="tick", retries=0)
async def tick(ctx: Context) -> None:
    return None


@app.job(retries=0)
async def slow(ctx: Context, seconds: float = 2.5) -> None:
    await asyncio.sleep(seconds)


app.schedule("slow-skip", "slow", every="1s", overlap="skip", payload={"seconds": 2.5})
app.schedule("slow-cancel", "slow", every="2s", overlap="cancel_previous", payload={"seconds": 30})

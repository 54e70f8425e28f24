"""The demo app `conveyor up --demo` runs: a staged pipeline, a flaky job, a slow one."""

from __future__ import annotations

import asyncio
import random

from conveyor import Context, Conveyor

app = Conveyor()


@app.job(queue="default", retries=3, timeout="5m",
         stages=["crawling", "parsing", "analyzing", "embedding"])  # fmt: skip
async def analyze_store(ctx: Context, store_id: int, pages: int = 5) -> dict[str, int]:
    """Crawl a store's pages, parse reviews, analyse them, embed them: progress by stage."""
    reviews = 0
    for stage in ctx.stages:
        await ctx.stage(stage)
        for page in range(pages):
            await asyncio.sleep(0.3)
            reviews += random.randint(3, 9) if stage == "parsing" else 0
            await ctx.stage_progress(
                100 * (page + 1) / pages, message=f"page {page + 1} of {pages}"
            )
    return {"store_id": store_id, "reviews": reviews}


class Flaky(Exception):
    """A transient failure, as from a rate-limited API."""


@app.job(queue="default", retries=4, backoff_base="1s", backoff_cap="4s")
async def call_flaky_api(ctx: Context, succeed_on: int = 3) -> str:
    """Fails until its ``succeed_on``-th attempt, backing off with jitter in between."""
    await asyncio.sleep(0.2)
    if ctx.attempt < succeed_on:
        raise Flaky(f"attempt {ctx.attempt}: the upstream answered 429")
    return f"succeeded on attempt {ctx.attempt}"


@app.job(queue="low", retries=0)
async def slow_report(ctx: Context, seconds: int = 120) -> str:
    """A long job: cancel it (POST /jobs/{id}/cancel) and watch it stop."""
    for second in range(seconds):
        await ctx.progress(100 * second / seconds, message=f"{second} s of {seconds}")
        await asyncio.sleep(1)
    return "report ready"


# A periodic job, to pause, resume and trigger from the dashboard's Schedules page.
app.schedule("hourly-report", "slow_report", cron="0 * * * *", payload={"seconds": 5})


def enqueue_examples() -> list[tuple[str, str]]:
    """A few jobs of each kind: (job type, id)."""
    handles = [(analyze_store.name, analyze_store.enqueue(store_id=i).id) for i in (1, 2, 3)]
    handles.append((call_flaky_api.name, call_flaky_api.enqueue().id))
    handles.append((slow_report.name, slow_report.enqueue().id))
    return handles

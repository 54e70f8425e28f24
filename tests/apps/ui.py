"""Job types and a schedule the dashboard's tests show and act on."""

from __future__ import annotations

import asyncio

from conveyor import Context, Conveyor, Permanent

app = Conveyor()


@app.job(stages=["fetching", "parsing"], retries=0)
async def crawl(ctx: Context, steps: int = 20, pause: float = 0.4) -> dict[str, int]:
    """Reports its progress step by step, slowly enough to be watched."""
    for i in range(1, steps + 1):
        await ctx.stage("fetching" if i <= steps // 2 else "parsing")
        await ctx.progress(100 * i / steps, message=f"page {i} of {steps}")
        await asyncio.sleep(pause)
    return {"pages": steps}


@app.job(retries=0, secret_fields=["api_key"])
async def send_email(ctx: Context, to: str, api_key: str = "", fail: bool = False) -> str:
    """Fails on its first attempt when told to; a manual retry (attempt 2) succeeds."""
    if fail and ctx.attempt == 1:
        raise Permanent(f"mailbox {to} is full")
    return f"sent to {to}"


@app.job(name='say "hi" <b>bold</b>', retries=0)
async def odd_name(ctx: Context, text: str = "") -> str:
    return text


app.schedule("nightly-report", "send_email", every="1h", payload={"to": "ops@example.com"})

"""Job types for the log tests (tests/integration/test_logs.py): one that retries then fails
with a secret in its error, one that logs through ``ctx.logger``, one that runs long."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from conveyor import Context, Conveyor

app = Conveyor()


class Declined(Exception):
    pass


@app.job(retries=2, backoff_base="0.1s", backoff_cap="0.2s", secret_fields=["card"])
async def charge(ctx: Context, card: str, amount: int) -> None:
    """Puts its secret card number into its log line and its error: both must be masked."""
    ctx.logger.info("charging %d to card %s", amount, card)
    raise Declined(f"card {card} declined for {amount}")


@app.job(retries=0, isolated=True, secret_fields=["card"])
def charge_isolated(ctx: Context, card: str) -> None:
    ctx.logger.warning("isolated charge to card %s", card)
    raise Declined(f"card {card} declined")


@app.job(retries=0)
async def long(ctx: Context, seconds: float) -> str:
    """Says when it has started (a file under CONVEYOR_TEST_MARKS), then sleeps."""
    marks = os.environ.get("CONVEYOR_TEST_MARKS")
    if marks:
        (Path(marks) / f"started-{ctx.job_id}").touch()
    await asyncio.sleep(seconds)
    return "done"

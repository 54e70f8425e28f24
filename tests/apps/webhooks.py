"""Job types of the webhook tests (tests/integration/test_webhooks.py)."""

from __future__ import annotations

from conveyor import Context, Conveyor, Permanent

app = Conveyor()


@app.job(secret_fields=["api_key"], webhook="http://127.0.0.1:9/replaced-by-each-test")
async def hooked(ctx: Context, n: int, api_key: str = "") -> dict[str, int]:
    """A type-level webhook (the tests give it their server's URL, see ``client_app``)."""
    return {"n": n}


@app.job
async def plain(ctx: Context, n: int) -> int:
    return n


@app.job(retries=0)
async def broken(ctx: Context, why: str) -> None:
    raise Permanent(why)

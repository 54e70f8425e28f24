"""Job types for hostile-input and masking tests: untyped payloads and leaky handlers."""

from __future__ import annotations

from typing import Any

from conveyor import Context, Conveyor

app = Conveyor()


@app.job(retries=0, timeout="30s")
async def echo(ctx: Context, data: Any = None) -> Any:
    """Accepts any JSON under ``data`` and returns it."""
    return data


@app.job(retries=1, backoff_base="0.05s", backoff_cap="0.1s")
async def login(ctx: Context, user: str, password: str) -> None:
    """Fails twice with its password in the message (and so in the traceback)."""
    raise ValueError(f"could not log in as {user} with {password}")


@app.job(retries=0, secret_fields=["pin"])
async def leaky(ctx: Context, secretKey: str, pin: str, database_url: str) -> dict[str, Any]:
    """Puts its secrets into a progress message and into its result."""
    await ctx.progress(50, message=f"connecting to {database_url} with key {secretKey}")
    return {"said": f"pin {pin}", "nested": [{"url": database_url}], "access_token": "tok"}

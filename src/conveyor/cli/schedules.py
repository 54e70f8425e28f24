"""`conveyor scheduler` and `conveyor schedules`."""

from __future__ import annotations

import asyncio
import signal

import click
from rich.console import Console
from rich.table import Table

from conveyor.loading import load_app
from conveyor.scheduler import build_scheduler_process, scheduler_for

console = Console()


def run_scheduler(app_spec: str | None) -> None:
    """The scheduler, and the reconciler duties (taken when no worker holds them)."""
    app = load_app(app_spec)
    scheduler, reconciler = build_scheduler_process(app)

    async def main() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        await asyncio.gather(scheduler.loop(stopping), reconciler.loop(stopping))

    asyncio.run(main())


def list_schedules(app_spec: str | None) -> None:
    scheduler = scheduler_for(load_app(app_spec))
    table = Table("name", "job type", "spec", "next fire", "last fire", "outcome", "state")
    for row in scheduler.store.all():
        last = scheduler.store.fires(row["name"], limit=1)
        spec = row["cron"] or f"every {row['every_s']:g}s"
        if row["tz"] != "UTC":
            spec += f" ({row['tz']})"
        state = "paused" if row["paused"] else "active" if row["enabled"] else "removed"
        table.add_row(
            row["name"],
            row["job_type"],
            spec,
            str(row["next_tick_at"] or "-"),
            str(last[0]["tick_at"]) if last else "-",
            f"{last[0]['outcome']} ({last[0]['job_state'] or '-'})" if last else "-",
            state,
        )
    console.print(table)


def act(app_spec: str | None, action: str, name: str) -> None:
    scheduler = scheduler_for(load_app(app_spec))
    store = scheduler.store
    if action == "trigger":
        fired = scheduler.trigger(name)
        click.echo(f"{name}: {fired.outcome} job {fired.job_id or '-'}")
        return
    store.change(name, {"paused": action == "pause"}, store.db_now())
    click.echo(f"{name}: {'paused' if action == 'pause' else 'resumed'}")

"""`conveyor scheduler` and `conveyor schedules`."""

from __future__ import annotations

import asyncio
import signal

import click
from rich.table import Column, Table

from conveyor.cli.common import checked, console, print_json
from conveyor.loading import load_app
from conveyor.scheduler import build_scheduler_process, scheduler_for


def run_scheduler(app_spec: str | None) -> None:
    """The scheduler, and the reconciler duties (taken when no worker holds them)."""
    app = checked(load_app(app_spec))
    stopping = asyncio.Event()  # bound to the loop on first use, in main()
    scheduler, reconciler = build_scheduler_process(app, stopping)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        await asyncio.gather(scheduler.loop(stopping), reconciler.loop(stopping))

    asyncio.run(main())


def list_schedules(app_spec: str | None, as_json: bool = False) -> None:
    scheduler = scheduler_for(checked(load_app(app_spec)))
    rows = []
    for row in scheduler.store.all():
        last = scheduler.store.fires(row["name"], limit=1)
        spec = row["cron"] or f"every {row['every_s']:g}s"
        if row["tz"] != "UTC":
            spec += f" ({row['tz']})"
        rows.append(
            {
                "name": row["name"],
                "job_type": row["job_type"],
                "spec": spec,
                "next_fire": row["next_tick_at"],
                "last_fire": last[0]["tick_at"] if last else None,
                "outcome": last[0]["outcome"] if last else None,
                "job_id": str(last[0]["job_id"]) if last and last[0]["job_id"] else None,
                "job_state": last[0]["job_state"] if last else None,
                "state": "paused" if row["paused"] else "active" if row["enabled"] else "removed",
            }
        )
    if as_json:
        print_json(rows)
        return
    table = Table(Column("name", no_wrap=True), "job type", "spec", "next fire", "last fire",
                  "outcome", "state")  # fmt: skip
    for r in rows:
        outcome = f"{r['outcome']} ({r['job_state'] or '-'})" if r["outcome"] else "-"
        table.add_row(r["name"], r["job_type"], r["spec"], _time(r["next_fire"]),
                      _time(r["last_fire"]), outcome, r["state"])  # fmt: skip
    console().print(table)


def _time(value: object) -> str:
    return "-" if value is None else str(value)[:19]


def act(app_spec: str | None, action: str, name: str) -> None:
    scheduler = scheduler_for(checked(load_app(app_spec)))
    store = scheduler.store
    if action == "trigger":
        fired = scheduler.trigger(name)
        click.echo(f"{name}: {fired.outcome} job {fired.job_id or '-'}")
        return
    store.change(name, {"paused": action == "pause"}, store.db_now())
    click.echo(f"{name}: {'paused' if action == 'pause' else 'resumed'}")

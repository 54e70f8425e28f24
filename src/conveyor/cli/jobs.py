"""The job commands: ``enqueue``, ``status``, ``cancel``, ``retry``, ``jobs``.

Defining them imports click and little else: ``conveyor worker`` loads this module too.
"""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Any

import click

from conveyor.cli.common import (
    APP_OPTION,
    JSON_OPTION,
    checked,
    client_app,
    console,
    err_console,
    friendly_errors,
    print_json,
)
from conveyor.core.errors import ConveyorError
from conveyor.core.ids import is_job_id
from conveyor.core.states import State
from conveyor.loading import load_app

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.core.views import JobView


@click.command()
@click.argument("job_type")
@APP_OPTION
@click.option("--json", "payload_json", default="{}", help="The payload as a JSON object.")
@click.option("--queue")
@click.option("--delay", help="Run later: seconds or e.g. 10m.")
@click.option("--idempotency-key")
@click.option("--wait", is_flag=True, help="Show live progress until the job ends.")
@click.option("--timeout", type=float, help="With --wait: give up after this many seconds.")
@friendly_errors
def enqueue(
    job_type: str,
    app_spec: str | None,
    payload_json: str,
    queue: str | None,
    delay: str | None,
    idempotency_key: str | None,
    wait: bool,
    timeout: float | None,
) -> None:
    """Enqueue a job of JOB_TYPE."""
    app = load_app(app_spec)
    try:
        payload = json.loads(payload_json)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--json") from None
    handle = checked(app).enqueue(
        job_type, payload, queue=queue, delay=delay, idempotency_key=idempotency_key
    )
    _warn_if_unserved(app, queue or app.registry.get(job_type).queue)
    if not wait:
        click.echo(handle.id)
        return
    view = _follow(app, handle.id, timeout)
    _print_view(_shown(app, view))
    sys.exit(0 if view.state is State.COMPLETED else 1)


def _warn_if_unserved(app: Conveyor, queue: str) -> None:
    """Say so on stderr when no live worker serves the job's queue (it waits until one does)."""
    from conveyor.store.workers import alive_since

    since = alive_since(app.client.clock.now(), app.settings.heartbeat_seconds)
    if queue not in app.services.workers.serving(since):
        err_console().print(
            f"[yellow]warning:[/] no live worker serves queue {queue!r}; the job waits until "
            f"one does (conveyor worker --queues {queue})",
            soft_wrap=True,
        )


def _follow(app: Conveyor, job_id: str, timeout: float | None) -> JobView:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    deadline = None if timeout is None else time.monotonic() + timeout
    columns = (
        TextColumn("[bold]{task.fields[state]}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err_console(), transient=True) as bar:
        task = bar.add_task(job_id, total=100, state="queued", detail="")
        while True:
            view = _shown(app, app.client.jobs.get(job_id, with_attempts=False))
            detail = " · ".join(x for x in (view.stage, view.message) if x)
            bar.update(task, completed=view.progress or 0, state=view.state.value, detail=detail)
            if view.terminal:
                return app.get(job_id)
            if deadline is not None and time.monotonic() > deadline:
                raise ConveyorError(f"job {job_id} is still {view.state.value} after {timeout} s")
            time.sleep(0.2)


def _shown(app: Conveyor, view: JobView) -> JobView:
    """The job as it may be printed: its secrets masked by name and by value."""
    return app.registry.shown(view)


def _print_view(view: JobView) -> None:
    from rich.table import Table

    table = Table(show_header=False, box=None)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")  # an id is never cut short
    for key in ("id", "type", "queue", "state", "stage", "progress", "message", "attempt"):
        value = getattr(view, key)
        if value is not None:
            table.add_row(key, str(value.value if key == "state" else value))
    table.add_row("created", str(view.created_at))
    if view.finished_at:
        table.add_row("finished", str(view.finished_at))
    if view.result is not None:
        table.add_row("result", json.dumps(view.result))
    if view.error:
        table.add_row("error", f"{view.error.get('type')}: {view.error.get('message')}")
    console().print(table)
    for a in view.attempts:
        line = f"  attempt {a.attempt}: {a.outcome}"
        if a.error_type:
            line += f" ({a.error_type}: {a.error_message})"
        console().print(line, highlight=False)


@click.command()
@click.argument("job_id")
@APP_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
@friendly_errors
def status(job_id: str, app_spec: str | None, as_json: bool) -> None:
    """Show a job: state, progress, result or error, attempts."""
    app = client_app(app_spec)
    view = _shown(app, app.get(job_id))
    if as_json:
        print_json(view.as_dict())
    else:
        _print_view(view)


@click.command()
@click.argument("job_id")
@APP_OPTION
@friendly_errors
def cancel(job_id: str, app_spec: str | None) -> None:
    """Cancel a job (a running one is told to stop)."""
    view = client_app(app_spec).cancel(job_id)
    click.echo(
        f"{view.id} {view.state.value}{' (cancel requested)' if view.cancel_requested else ''}"
    )


@click.command()
@click.argument("job_id")
@APP_OPTION
@friendly_errors
def retry(job_id: str, app_spec: str | None) -> None:
    """Run a failed or canceled job again."""
    view = client_app(app_spec).retry(job_id)
    click.echo(f"{view.id} {view.state.value}")


@click.command()
@APP_OPTION
@click.option("--state")
@click.option("--type", "job_type")
@click.option("--queue")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--cursor")
@JSON_OPTION
@friendly_errors
def jobs(
    app_spec: str | None,
    state: str | None,
    job_type: str | None,
    queue: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """List jobs, newest first."""
    if state is not None and state not in {s.value for s in State}:
        raise click.BadParameter(
            f"{state!r}; one of {', '.join(s.value for s in State)}", param_hint="--state"
        )
    if cursor is not None and not is_job_id(cursor):
        raise click.BadParameter("use the id printed after 'next page:'", param_hint="--cursor")
    app = client_app(app_spec)
    page = app.list(state=state, type=job_type, queue=queue, limit=limit, cursor=cursor)
    if as_json:
        items = [_listed(_shown(app, v)) for v in page.items]
        print_json({"items": items, "next_cursor": page.next_cursor})
        return
    from rich.table import Column, Table

    # The id column never wraps and is never cut: the others give way in a narrow terminal.
    table = Table(Column("id", no_wrap=True, min_width=36), "type", "queue", "state",
                  "progress", "created")  # fmt: skip
    for v in page.items:
        progress = "" if v.progress is None else f"{v.progress:.0f}%"
        created = v.created_at.strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(v.id, v.type, v.queue, v.state.value, progress, created)
    console().print(table)
    if page.next_cursor:
        console().print(f"next page: --cursor {page.next_cursor}", soft_wrap=True)


def _listed(view: JobView) -> dict[str, Any]:
    """A listed job as JSON: ``status --json`` without the attempts (a listing has none)."""
    data = view.as_dict()
    data.pop("attempts", None)
    return data


COMMANDS = [enqueue, status, cancel, retry, jobs]

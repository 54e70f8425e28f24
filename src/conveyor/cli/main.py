"""``conveyor``: run workers, enqueue jobs, inspect and control them."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from conveyor.app import Conveyor
from conveyor.core.errors import ConveyorError
from conveyor.core.ids import is_job_id
from conveyor.core.logs import configure_logging, logging_config, resolve_format
from conveyor.core.settings import Settings, load_settings, parse_queues
from conveyor.core.views import JobView
from conveyor.loading import load_app

F = TypeVar("F", bound=Callable[..., Any])
console = Console()
err_console = Console(stderr=True)

APP_OPTION = click.option("--app", "app_spec", help="module:attribute of your Conveyor app.")


def friendly_errors(fn: F) -> F:
    """Show Conveyor errors as one clear line and exit 1, never as a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConveyorError as exc:
            err_console.print(f"[red]error:[/red] {exc.message}", highlight=False, soft_wrap=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def _app(app_spec: str | None) -> Conveyor:
    return load_app(app_spec) if app_spec else Conveyor()


@click.group()
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], case_sensitive=False),
    help="Overrides CONVEYOR_LOG_LEVEL (default INFO).",
)
def cli(log_level: str | None) -> None:
    """Conveyor: asynchronous jobs with PostgreSQL as the truth."""
    if log_level:  # through the environment: the processes a command starts inherit it
        os.environ["CONVEYOR_LOG_LEVEL"] = log_level.upper()
    _configure_logging()


def _configure_logging() -> None:
    """The process's logging, from CONVEYOR_LOG_FORMAT and CONVEYOR_LOG_LEVEL. With invalid
    settings it falls back to the defaults: the command that reads them then says, in one
    line, what is wrong (``friendly_errors``), and ``conveyor settings`` still runs."""
    try:
        settings = load_settings()
        chosen, level = settings.log_format, settings.log_level
    except ConveyorError:
        chosen, level = "auto", "INFO"
    configure_logging(resolve_format(chosen, tty=sys.stderr.isatty()), level)


def _log_config() -> dict[str, Any]:
    """The logging configuration uvicorn applies in each of its processes (the settings are
    valid by now: the command has read them)."""
    settings = load_settings()
    chosen = resolve_format(settings.log_format, tty=sys.stderr.isatty())
    return logging_config(chosen, settings.log_level)


@cli.command()
@APP_OPTION
@click.option("--queues", help="Queues and weights, e.g. critical=6,default=3,low=1.")
@click.option("--concurrency", type=click.IntRange(min=1), help="Jobs in flight per process.")
@click.option("--processes", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--strict", is_flag=True, help="Strict priority: queues in weight order.")
@click.option("--grace", type=click.FloatRange(min=0), help="Seconds running jobs get to finish.")
@click.option("--with-scheduler", is_flag=True, help="Also fire periodic jobs in this worker.")
@friendly_errors
def worker(
    app_spec: str | None,
    queues: str | None,
    concurrency: int | None,
    processes: int,
    strict: bool,
    grace: float | None,
    with_scheduler: bool,
) -> None:
    """Run jobs."""
    from conveyor.worker.process import (
        build_worker,
        default_queues,
        prepare_to_fork,
        run_event_loop,
    )
    from conveyor.worker.supervisor import exit_for_restart, exit_now, reexec

    app = load_app(app_spec)
    weights = parse_queues(queues) if queues else default_queues(app.registry, app.settings)

    def serve(migrate: bool = True, supervised: bool = False) -> None:
        replace = exit_for_restart if supervised else reexec
        w = build_worker(
            app,
            queues=weights,
            concurrency=concurrency,
            strict=strict,
            grace_s=grace,
            migrate=migrate,
            with_scheduler=with_scheduler,
            on_wedged=replace,
        )

        async def main() -> None:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, w.request_stop)
            await w.run()

        run_event_loop(main())
        if w.replace_reason:  # it could not make progress: a fresh process takes over
            replace(w.replace_reason)
        if w.health.stuck():
            exit_now()

    if processes == 1:
        serve()
        return
    from conveyor.worker.supervisor import Supervisor

    prepare_to_fork(app)
    sys.exit(Supervisor(lambda: serve(migrate=False, supervised=True), processes).run())


@cli.command()
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
    handle = app.enqueue(
        job_type, payload, queue=queue, delay=delay, idempotency_key=idempotency_key
    )
    if not wait:
        click.echo(handle.id)
        return
    view = _follow(app, handle.id, timeout)
    _print_view(_shown(app, view))
    sys.exit(0 if view.state.value == "completed" else 1)


def _follow(app: Conveyor, job_id: str, timeout: float | None) -> JobView:
    deadline = None if timeout is None else time.monotonic() + timeout
    columns = (
        TextColumn("[bold]{task.fields[state]}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err_console, transient=True) as bar:
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
    table = Table(show_header=False, box=None)
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
    console.print(table)
    for a in view.attempts:
        line = f"  attempt {a.attempt}: {a.outcome}"
        if a.error_type:
            line += f" ({a.error_type}: {a.error_message})"
        console.print(line, highlight=False)


@cli.command()
@click.argument("job_id")
@APP_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
@friendly_errors
def status(job_id: str, app_spec: str | None, as_json: bool) -> None:
    """Show a job: state, progress, result or error, attempts."""
    app = _app(app_spec)
    view = _shown(app, app.get(job_id))
    if as_json:
        click.echo(json.dumps(view.as_dict(), default=str, indent=2))
    else:
        _print_view(view)


@cli.command()
@click.argument("job_id")
@APP_OPTION
@friendly_errors
def cancel(job_id: str, app_spec: str | None) -> None:
    """Cancel a job (a running one is told to stop)."""
    view = _app(app_spec).cancel(job_id)
    click.echo(
        f"{view.id} {view.state.value}{' (cancel requested)' if view.cancel_requested else ''}"
    )


@cli.command()
@click.argument("job_id")
@APP_OPTION
@friendly_errors
def retry(job_id: str, app_spec: str | None) -> None:
    """Run a failed or canceled job again."""
    view = _app(app_spec).retry(job_id)
    click.echo(f"{view.id} {view.state.value}")


@cli.command()
@APP_OPTION
@click.option("--state")
@click.option("--type", "job_type")
@click.option("--queue")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--cursor")
@friendly_errors
def jobs(
    app_spec: str | None,
    state: str | None,
    job_type: str | None,
    queue: str | None,
    limit: int,
    cursor: str | None,
) -> None:
    """List jobs, newest first."""
    from conveyor.core.states import State

    if state is not None and state not in {s.value for s in State}:
        raise click.BadParameter(
            f"{state!r}; one of {', '.join(s.value for s in State)}", param_hint="--state"
        )
    if cursor is not None and not is_job_id(cursor):
        raise click.BadParameter("use the id printed after 'next page:'", param_hint="--cursor")
    page = _app(app_spec).list(state=state, type=job_type, queue=queue, limit=limit, cursor=cursor)
    table = Table("id", "type", "queue", "state", "progress", "created")
    for v in page.items:
        progress = "" if v.progress is None else f"{v.progress:.0f}%"
        table.add_row(v.id, v.type, v.queue, v.state.value, progress, str(v.created_at))
    console.print(table)
    if page.next_cursor:
        console.print(f"next page: --cursor {page.next_cursor}")


@cli.command()
@APP_OPTION
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True)
@friendly_errors
def api(app_spec: str | None, host: str, port: int, workers: int) -> None:
    """Serve the HTTP API (OpenAPI docs at /docs)."""
    import uvicorn

    app = load_app(app_spec)
    app.settings  # noqa: B018 - fail now, with a clear message, on bad settings
    os.environ["CONVEYOR_APP"] = app_spec or os.environ.get("CONVEYOR_APP", "")
    uvicorn.run(
        "conveyor.api.server:build",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=_log_config(),
        log_level=logging.getLevelName(logging.getLogger().level).lower(),
    )


@cli.command()
@APP_OPTION
@click.option("--demo", is_flag=True, help="Run the built-in demo app and enqueue examples.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--concurrency", type=click.IntRange(min=1), default=10, show_default=True)
@friendly_errors
def up(app_spec: str | None, demo: bool, host: str, port: int, concurrency: int) -> None:
    """Everything on one command: migrate, a worker, and the API (SQLite by default)."""
    from conveyor.up import run_up

    if demo:
        app_spec = "conveyor.demo:app"
    elif not (app_spec or os.environ.get("CONVEYOR_APP")):
        raise click.UsageError("name your app with --app module:attribute, or try --demo")
    sys.exit(run_up(app_spec or os.environ["CONVEYOR_APP"], host, port, concurrency, demo))


@cli.command()
@APP_OPTION
@friendly_errors
def scheduler(app_spec: str | None) -> None:
    """Fire periodic jobs (run as many as you like: each tick fires once)."""
    from conveyor.cli.schedules import run_scheduler

    run_scheduler(app_spec)


@cli.group(invoke_without_command=True)
@APP_OPTION
@click.pass_context
@friendly_errors
def schedules(ctx: click.Context, app_spec: str | None) -> None:
    """List schedules: spec, next fire, last fire and outcome, paused or not."""
    ctx.obj = app_spec
    if ctx.invoked_subcommand is None:
        from conveyor.cli.schedules import list_schedules

        list_schedules(app_spec)


def _schedule_action(action: str) -> None:
    @schedules.command(action, help=f"{action.title()} a schedule.")
    @click.argument("name")
    @APP_OPTION
    @click.pass_context
    @friendly_errors
    def command(ctx: click.Context, name: str, app_spec: str | None) -> None:
        from conveyor.cli.schedules import act

        act(app_spec or ctx.obj, action, name)


for _action in ("pause", "resume", "trigger"):
    _schedule_action(_action)


@cli.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@friendly_errors
def db_upgrade(revision: str) -> None:
    """Create or migrate Conveyor's tables."""
    from conveyor.store import make_engine
    from conveyor.store.schema import current_revision, upgrade

    settings = load_settings()
    engine = make_engine(settings.database_url)
    upgrade(engine, revision)
    click.echo(f"database at revision {current_revision(engine)}")


@cli.command("settings")
def show_settings() -> None:
    """List every setting, its environment variable and current value."""
    try:
        current: Settings | None = load_settings()
    except ConveyorError as exc:
        err_console.print(f"[yellow]{exc.message}[/yellow]")
        current = None
    for name, info in Settings.model_fields.items():
        value = getattr(current, name) if current is not None else info.default
        click.echo(f"CONVEYOR_{name.upper()}={'' if value is None else value}")
        click.echo(f"    {info.description or ''}")


def main() -> None:
    cli()

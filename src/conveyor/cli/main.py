"""``conveyor``: run workers, enqueue jobs, inspect and control them.

This module imports click and little else: each command imports what it runs on, so that
``conveyor worker`` loads neither the API nor the dashboard (nor Alembic, unless the schema
needs migrating), and does its imports with the garbage collector held back (``main``).
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from typing import Any

import click

from conveyor.cli import jobs
from conveyor.cli.common import (
    APP_OPTION,
    JSON_OPTION,
    err_console,
    friendly_errors,
    print_json,
)
from conveyor.core.errors import ConveyorError
from conveyor.loading import DEMO_HINT, load_app

#: The collector's young-generation threshold while a worker starts (Python's is 700). Its
#: imports make ~100,000 objects that live as long as the process, and would set off some
#: 250 collections, each walking the young ones, and a few walking all: about a tenth of the
#: start. With this threshold there are none; the worker then freezes them out of every pass
#: and sets its own threshold (``worker.process``: ``prepare_to_fork``, ``run_event_loop``).
STARTUP_GEN0_THRESHOLD = 200_000
_USUAL_GEN0_THRESHOLD = gc.get_threshold()[0]


@click.group()
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], case_sensitive=False),
    help="Overrides CONVEYOR_LOG_LEVEL (default INFO).",
)
@click.pass_context
def cli(ctx: click.Context, log_level: str | None) -> None:
    """Conveyor: asynchronous jobs with PostgreSQL as the truth."""
    if log_level:  # through the environment: the processes a command starts inherit it
        os.environ["CONVEYOR_LOG_LEVEL"] = log_level.upper()
    _configure_logging()
    if ctx.invoked_subcommand != "worker":
        _usual_collector()


def _usual_collector() -> None:
    """The collector's usual threshold back, for every command but the worker (which sets its
    own once it has started): they are short, or (the API, the scheduler) run as before."""
    gen0, gen1, gen2 = gc.get_threshold()
    if gen0 == STARTUP_GEN0_THRESHOLD:
        gc.set_threshold(_USUAL_GEN0_THRESHOLD, gen1, gen2)


def _configure_logging() -> None:
    """The process's logging, from CONVEYOR_LOG_FORMAT and CONVEYOR_LOG_LEVEL. With invalid
    settings it falls back to the defaults: the command that reads them then says, in one
    line, what is wrong (``friendly_errors``), and ``conveyor settings`` still runs."""
    from conveyor.core.logs import configure_logging, resolve_format
    from conveyor.core.settings import load_settings

    try:
        settings = load_settings()
        chosen, level = settings.log_format, settings.log_level
    except ConveyorError:
        chosen, level = "auto", "INFO"
    configure_logging(resolve_format(chosen, tty=sys.stderr.isatty()), level)


def _log_config() -> dict[str, Any]:
    """The logging configuration uvicorn applies in each of its processes (the settings are
    valid by now: the command has read them)."""
    from conveyor.core.logs import logging_config, resolve_format
    from conveyor.core.settings import load_settings

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
    import asyncio
    import signal

    from conveyor.core.settings import parse_queues
    from conveyor.store.probe import prepare_database
    from conveyor.worker.process import (
        build_worker,
        default_queues,
        prepare_to_fork,
        run_event_loop,
    )
    from conveyor.worker.supervisor import exit_for_restart, exit_now, reexec

    app = load_app(app_spec)
    prepare_database(app.settings.database_url)  # one statement when the schema is current
    weights = parse_queues(queues) if queues else default_queues(app.registry, app.settings)

    def serve(supervised: bool = False) -> None:
        replace = exit_for_restart if supervised else reexec
        w = build_worker(
            app,
            queues=weights,
            concurrency=concurrency,
            strict=strict,
            grace_s=grace,
            migrate=False,
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
    sys.exit(Supervisor(lambda: serve(supervised=True), processes).run())


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
        raise click.UsageError(
            f"name your app with --app module:attribute, or try --demo{DEMO_HINT}"
        )
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
@JSON_OPTION
@click.pass_context
@friendly_errors
def schedules(ctx: click.Context, app_spec: str | None, as_json: bool) -> None:
    """List schedules: spec, next fire, last fire and outcome, paused or not."""
    ctx.obj = app_spec
    if ctx.invoked_subcommand is None:
        from conveyor.cli.schedules import list_schedules

        list_schedules(app_spec, as_json)


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
    from conveyor.core.settings import load_settings
    from conveyor.store import make_engine
    from conveyor.store.probe import check_database
    from conveyor.store.schema import current_revision, upgrade

    settings = load_settings()
    shown = check_database(settings.database_url, existing=False, tables=False)
    engine = make_engine(settings.database_url)
    upgrade(engine, revision)
    click.echo(f"database {shown} at revision {current_revision(engine)}")


@cli.command("settings")
@JSON_OPTION
def show_settings(as_json: bool) -> None:
    """List every setting, its environment variable and current value (secrets hidden)."""
    from conveyor.core.settings import Settings, load_settings

    try:
        current: Settings | None = load_settings()
    except ConveyorError as exc:
        err_console().print(f"[yellow]{exc.message}[/yellow]", soft_wrap=True)
        current = None
    rows: list[tuple[str, object, str | None]] = [
        ("CONVEYOR_APP", os.environ.get("CONVEYOR_APP"), APP_DOC)
    ]
    for name, info in Settings.model_fields.items():
        value = getattr(current, name) if current is not None else info.default
        rows.append((f"CONVEYOR_{name.upper()}", _shown_setting(name, value), info.description))
    if as_json:
        print_json([{"variable": v, "value": x, "description": d} for v, x, d in rows])
        return
    for variable, value, description in rows:
        click.echo(f"{variable}={'' if value is None else value}")
        click.echo(f"    {description or ''}")


APP_DOC = "module:attribute of your app: the default of --app (try conveyor.demo:app)."


def _shown_setting(name: str, value: object) -> object:
    """A value fit to print: tokens as ``***``, the database URL without its password."""
    if value is None:
        return None
    if any(word in name for word in ("token", "secret", "password")):
        return value if str(value).startswith("@") else "***"  # @file: a path, not a secret
    if name == "database_url":
        from conveyor.store.probe import shown_url

        return shown_url(str(value))
    return value


for _command in jobs.COMMANDS:
    cli.add_command(_command)
click.version_option(package_name="conveyor", message="conveyor %(version)s")(cli)


def main() -> None:
    """The ``conveyor`` command (``python -m conveyor`` too)."""
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(STARTUP_GEN0_THRESHOLD, gen1, gen2)
    cli()

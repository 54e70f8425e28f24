"""What every command shares: the consoles, ``--app``, one-line errors, the database check.

Rich is imported when a command first prints through a console, not before: a worker never
does (its start is timed, issue 18).
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from conveyor.core.errors import ConveyorError
from conveyor.loading import load_app

if TYPE_CHECKING:
    from rich.console import Console

    from conveyor.app import Conveyor

F = TypeVar("F", bound=Callable[..., Any])


@functools.cache
def console() -> Console:
    """Standard output's console, made on first use."""
    from rich.console import Console

    return Console()


@functools.cache
def err_console() -> Console:
    """Standard error's console, made on first use."""
    from rich.console import Console

    return Console(stderr=True)


APP_OPTION = click.option(
    "--app", "app_spec", help="module:attribute of your Conveyor app (e.g. conveyor.demo:app)."
)
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON, not a table.")


def friendly_errors(fn: F) -> F:
    """Show Conveyor errors as one clear line (never wrapped, never a traceback), exit 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConveyorError as exc:
            fail(exc.message)

    return wrapper  # type: ignore[return-value]


def fail(message: str) -> NoReturn:
    from rich.markup import escape

    err_console().print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(1)


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, default=str, indent=2))


def checked(app: Conveyor) -> Conveyor:
    """``app`` once its database answers and has Conveyor's tables: one error naming the
    database (password hidden) when it does not. It never leaves an empty SQLite file behind
    (a worker, which may create the file and its tables, calls ``prepare_database``)."""
    from conveyor.store.probe import check_database

    check_database(app.settings.database_url)
    return app


def client_app(app_spec: str | None) -> Conveyor:
    """The app for commands that need no job types (status, jobs, cancel, retry), checked."""
    from conveyor.app import Conveyor

    return checked(load_app(app_spec) if app_spec else Conveyor())

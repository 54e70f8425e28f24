"""What every command shares: the consoles, ``--app``, one-line errors, the database check."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.markup import escape

from conveyor.app import Conveyor
from conveyor.core.errors import ConveyorError
from conveyor.loading import load_app
from conveyor.store.probe import check_database

F = TypeVar("F", bound=Callable[..., Any])
console = Console()
err_console = Console(stderr=True)

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
    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(1)


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, default=str, indent=2))


def checked(app: Conveyor, *, migrates: bool = False) -> Conveyor:
    """``app`` once its database answers: one error naming the database (password hidden)
    when it does not. A command that ``migrates`` may create a SQLite file and its tables;
    any other needs both to exist already (it never leaves an empty file behind)."""
    check_database(app.settings.database_url, existing=not migrates, tables=not migrates)
    return app


def client_app(app_spec: str | None) -> Conveyor:
    """The app for commands that need no job types (status, jobs, cancel, retry), checked."""
    return checked(load_app(app_spec) if app_spec else Conveyor())

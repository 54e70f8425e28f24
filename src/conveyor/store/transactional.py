"""Enqueue inside a caller's own transaction: dispatch only once it commits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, event
from sqlalchemy.orm import Session


def caller_connection(handle: Any) -> Connection:
    """The Connection behind a caller's Connection or ORM Session."""
    if isinstance(handle, Session):
        return handle.connection()
    if isinstance(handle, Connection):
        return handle
    raise TypeError(
        f"connection= takes a SQLAlchemy Connection or Session, not {type(handle).__name__}"
    )


def on_commit(handle: Any, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the caller's transaction commits; never if it rolls back."""
    if isinstance(handle, Session):
        state = {"done": False}

        def _after_commit(_session: Session) -> None:
            if not state["done"]:
                state["done"] = True
                callback()

        def _after_rollback(_session: Session) -> None:
            state["done"] = True

        event.listen(handle, "after_commit", _after_commit, once=True)
        event.listen(handle, "after_soft_rollback", lambda s, p: _after_rollback(s), once=True)
        return
    conn = caller_connection(handle)
    # Connection events fire as the commit is issued. A worker that sees the id before the
    # row is visible retries the claim briefly (see delivery.redis), so nothing is lost.
    fired = {"done": False}

    def _commit(_conn: Connection) -> None:
        if not fired["done"]:
            fired["done"] = True
            callback()

    def _rollback(_conn: Connection) -> None:
        fired["done"] = True

    event.listen(conn, "commit", _commit, once=True)
    event.listen(conn, "rollback", _rollback, once=True)

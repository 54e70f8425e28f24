"""Alembic environment: migrations run on the connection Conveyor hands over."""

from __future__ import annotations

from alembic import context

from conveyor.store.schema import VERSION_TABLE
from conveyor.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - always called through conveyor.store.schema
    raise RuntimeError("run migrations with `conveyor db upgrade`")

context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()

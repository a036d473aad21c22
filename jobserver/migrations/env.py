"""Alembic environment: runs on the connection create_app hands over, or on
the app's engine for `flask --app jobserver db ...` commands."""
from __future__ import annotations

from alembic import context

from jobserver import models  # noqa: F401  (registers the tables)
from jobserver.dialect import durable_commit
from jobserver.extensions import db

config = context.config
target_metadata = db.metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    with db.engine.connect() as conn:
        _run(conn)
        conn.commit()


def _run(connection) -> None:
    durable_commit(connection)  # PostgreSQL: a schema change waits for the disk
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run against a database")
run_migrations_online()

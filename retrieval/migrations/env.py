"""Alembic environment: runs the revisions on the connection quarry.retrieval.migrate hands
over in `config.attributes["connection"]` (no alembic.ini, no URL of its own).

The revisions need no models. To compare models with a database (autogenerate), the caller
passes the full metadata in `config.attributes["target_metadata"]`; this file never imports
quarry.workers or quarry.api, which sit above retrieval.
"""

from __future__ import annotations

from alembic import context

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run Quarry's migrations through quarry.retrieval.migrate or `quarry db upgrade`")

context.configure(
    connection=connection,
    target_metadata=config.attributes.get("target_metadata"),
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
    transaction_per_migration=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()

"""Alembic environment for the flopex ledger: the URL comes from the caller's Config."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from flopex.ledger._schema import metadata

config = context.config
url = config.get_main_option("sqlalchemy.url") or ""
engine = create_engine(url)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=url.startswith("sqlite"))
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()

"""Alembic environment of the results store.

`pipeline.batch.store.Store.open` runs the migrations with its own connection, passed in
``config.attributes["connection"]`` inside a transaction it owns. For hand work (for example
``alembic -x`` style scripts) a ``sqlalchemy.url`` main option is used instead. No logging is
configured here: the command line sets handlers.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from pipeline.batch.store_tables import METADATA

config = context.config


def _configure(connection) -> None:
    context.configure(connection=connection, target_metadata=METADATA,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


def run() -> None:
    if context.is_offline_mode():
        context.configure(url=config.get_main_option("sqlalchemy.url"),
                          target_metadata=METADATA, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    engine = sa.create_engine(config.get_main_option("sqlalchemy.url"), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            _configure(conn)
    finally:
        engine.dispose()


run()

"""Alembic environment: run on the connection :func:`movecar_adapters.sql.engine.upgrade` passes in.

Run programmatically (``movecar db upgrade`` or :func:`movecar_adapters.sql.upgrade`); there is no
``alembic.ini``. ``alembic`` from the command line works too with
``-x url=sqlite:///movecar.db`` and ``script_location`` pointing here.
"""

from __future__ import annotations

from alembic import context

from movecar_adapters.sql.schema import metadata

config = context.config


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        from movecar_adapters.sql.engine import make_engine

        url = context.get_x_argument(as_dictionary=True).get("url", "sqlite:///movecar.db")
        engine = make_engine(url)
        with engine.begin() as conn:
            context.configure(connection=conn, target_metadata=metadata)
            context.run_migrations()
        engine.dispose()
        return
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()


run()

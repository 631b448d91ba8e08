"""Alembic environment for the run database.

``trainer.rundb.schema.upgrade`` runs it programmatically with an open connection in
``config.attributes["connection"]``; no alembic.ini is needed. For writing a new revision by hand:
``alembic -x url=sqlite:///runs.db ...`` with ``script_location`` pointing at this folder.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from trainer.rundb.models import Base

target_metadata = Base.metadata


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things in place; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option(
        "sqlalchemy.url"
    )
    engine = create_engine(url)
    with engine.begin() as conn:
        _run(conn)
    engine.dispose()

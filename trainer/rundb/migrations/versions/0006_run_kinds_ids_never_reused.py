"""Run kinds (a training run, or a model registered for evaluation), and ids that are never reused.

``runs.kind``: ``vgrpo eval`` of a model folder outside any run (a base model) registers a finished
run for it, so its evaluations have a checkpoint row to hang on. Those rows showed in the Monitor and
Runs lists as runs, which could not be resumed. They are now ``model`` rows, listed apart. Existing
ones are recognised by how they were made: finished at creation, never claimed (attempt 0, no start),
named ``eval-<folder>``.

AUTOINCREMENT on SQLite for the tables whose ids users see (runs, jobs, checkpoints, evaluations):
without it SQLite gives a new row max(id) + 1, so after deleting the newest run the next one got its
id. SQLite cannot change that in place: each table is rebuilt (copied into a new table with the same
rows and ids; ``schema.upgrade`` turns foreign keys off around migrations, or dropping the old
``runs`` would cascade into every table that references it). PostgreSQL's sequences never reuse an
id: nothing to do there.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TABLES = ("runs", "jobs", "checkpoints", "evaluations")
_KIND_CHECK = "kind IN ('train', 'model')"
_REGISTERED_MODELS = (
    "UPDATE runs SET kind = 'model' "
    "WHERE status = 'finished' AND attempt = 0 AND started_at IS NULL AND name LIKE 'eval-%'"
)


def _rebuild(autoincrement: bool) -> dict[str, Any]:
    """batch_alter_table arguments: on SQLite, copy the table into one declared (or not) AUTOINCREMENT."""
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return {}
    if bind.exec_driver_sql("PRAGMA foreign_keys").scalar():
        # With them on, the DROP of the old runs table deletes every row that references it.
        raise RuntimeError("revision 0006 rebuilds tables: run it with foreign keys off (schema.upgrade)")
    return {"recreate": "always", "table_kwargs": {"sqlite_autoincrement": autoincrement}}


def upgrade() -> None:
    with op.batch_alter_table("runs", **_rebuild(True)) as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="train"))
        # op.f: the name is final (the naming convention would make it ck_runs_ck_runs_kind).
        batch.create_check_constraint(op.f("ck_runs_kind"), _KIND_CHECK)
    op.execute(_REGISTERED_MODELS)
    for table in TABLES[1:]:
        if rebuild := _rebuild(True):
            with op.batch_alter_table(table, **rebuild):
                pass  # the copy is the change


def downgrade() -> None:
    with op.batch_alter_table("runs", **_rebuild(False)) as batch:
        batch.drop_constraint(op.f("ck_runs_kind"), type_="check")
        batch.drop_column("kind")
    for table in TABLES[1:]:
        if rebuild := _rebuild(False):
            with op.batch_alter_table(table, **rebuild):
                pass

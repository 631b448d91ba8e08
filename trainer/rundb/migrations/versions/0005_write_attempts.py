"""Which attempt wrote each metric point, rollout and checkpoint.

A trainer's writes are fenced by its lease (run, attempt, process); recording the attempt on the rows
lets anyone check afterwards that a resumed attempt wrote only the steps after the checkpoint it
resumed from (a resume that silently restarted from step 1 would overwrite them all). Rows written
before this revision keep NULL.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TABLES = ("metrics", "rollouts", "checkpoints")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("attempt", sa.Integer()))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("attempt")

"""Rollouts of every problem type, and the value of each reward function.

``problem_type`` and ``reference`` hold what a non-multiple-choice question was scored against
(``correct_letter`` is an option letter, at most 8 characters, and stays NULL for those);
``rewards`` maps each reward of the run's ``grpo.rewards`` list to its value for the completion
(null where it did not apply), so the rollout cards show every reward, not only format and accuracy.
Rows written before this revision keep NULL (read back as multiple choice with no per-reward values).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rollouts") as batch:
        batch.add_column(sa.Column("problem_type", sa.String(32)))
        batch.add_column(sa.Column("reference", sa.Text()))
        batch.add_column(sa.Column("rewards", sa.JSON()))


def downgrade() -> None:
    with op.batch_alter_table("rollouts") as batch:
        for column in ("rewards", "reference", "problem_type"):
            batch.drop_column(column)

"""Evaluations of checkpoints, and an index for a run's event log.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "evaluations",
        sa.Column("id", sa.Integer(), autoincrement=True),
        sa.Column("checkpoint_id", sa.Integer(), nullable=False),
        sa.Column("dataset", sa.String(200), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("accuracy", sa.Float(), nullable=False),
        sa.Column("format_rate", sa.Float(), nullable=False),
        sa.Column("results", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["checkpoint_id"],
            ["checkpoints.id"],
            name="fk_evaluations_checkpoint_id_checkpoints",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_evaluations"),
    )
    op.create_index("ix_evaluations_checkpoint_id", "evaluations", ["checkpoint_id"])
    # The studio's event log reads one run's events in time order.
    op.create_index("ix_events_run_id_time", "events", ["run_id", "time"])


def downgrade() -> None:
    op.drop_index("ix_events_run_id_time", table_name="events")
    op.drop_index("ix_evaluations_checkpoint_id", table_name="evaluations")
    op.drop_table("evaluations")

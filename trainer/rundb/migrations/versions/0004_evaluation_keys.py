"""What an evaluation was run on and with, so the same evaluation is found instead of run twice.

``eval_key`` hashes the dataset fingerprint (the records asked) with the decoding settings;
``summary`` holds the benchmark statistics (overall, per task, answer distribution, skipped).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("evaluations") as batch:
        batch.add_column(sa.Column("eval_key", sa.String(64)))
        batch.add_column(sa.Column("dataset_fingerprint", sa.String(64)))
        batch.add_column(sa.Column("settings", sa.JSON()))
        batch.add_column(sa.Column("summary", sa.JSON()))
    # Reuse looks an evaluation up by checkpoint and key.
    op.create_index("ix_evaluations_checkpoint_id_eval_key", "evaluations", ["checkpoint_id", "eval_key"])


def downgrade() -> None:
    op.drop_index("ix_evaluations_checkpoint_id_eval_key", table_name="evaluations")
    with op.batch_alter_table("evaluations") as batch:
        batch.drop_column("summary")
        batch.drop_column("settings")
        batch.drop_column("dataset_fingerprint")
        batch.drop_column("eval_key")

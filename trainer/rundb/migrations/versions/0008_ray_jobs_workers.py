"""Runs on a Ray cluster: the Ray job that owns a run, and the workers of each attempt.

``runs.ray_job_id`` / ``ray_address``: the Jobs API submission id of the job training the run and
the head's dashboard address it was submitted to (NULL for a run on this machine). While they are
set, the run's liveness is the job's status, asked of that head, not a pid's (the trainer's process
may sit on any node, and Ray restarts it elsewhere). ``run_workers``: one row per training process
of an attempt (rank, Ray node id, host, pid), written by rank 0 once it holds the run, so
``vgrpo runs show --json`` says where each rank ran.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("ray_job_id", sa.String(128)))
        batch.add_column(sa.Column("ray_address", sa.Text()))
    op.create_table(
        "run_workers",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.String(64), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("ip", sa.String(64)),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("ray_job_id", sa.String(128)),
        sa.Column("recorded_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_run_workers_run_id_runs", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_run_workers"),
        sa.UniqueConstraint("run_id", "attempt", "rank", name="uq_run_workers_run_id_attempt_rank"),
    )


def downgrade() -> None:
    op.drop_table("run_workers")
    with op.batch_alter_table("runs") as batch:
        for column in ("ray_address", "ray_job_id"):
            batch.drop_column(column)

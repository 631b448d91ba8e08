"""Owner identity and attempts of runs, evaluation jobs, deleted checkpoints.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_STATUS_CHECK = "status IN ('queued', 'running', 'finished', 'failed', 'aborted')"


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("pid_create_time", sa.Float()))
        batch.add_column(sa.Column("attempt", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("end_reason", sa.Text()))
        batch.add_column(sa.Column("stop_requested_at", sa.Float()))
    with op.batch_alter_table("checkpoints") as batch:
        batch.add_column(sa.Column("deleted_at", sa.Float()))

    op.create_table(
        "attempts",
        sa.Column("id", sa.Integer(), autoincrement=True),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("pid_create_time", sa.Float(), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("ended_at", sa.Float()),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("end_reason", sa.Text()),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_attempts_run_id_runs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_attempts"),
        sa.UniqueConstraint("run_id", "number", name="uq_attempts_run_id_number"),
    )

    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("run_id", sa.Integer()),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("started_at", sa.Float()),
        sa.Column("ended_at", sa.Float()),
        sa.Column("pid", sa.Integer()),
        sa.Column("pid_create_time", sa.Float()),
        sa.Column("host", sa.String(255)),
        sa.Column("heartbeat_at", sa.Float()),
        sa.Column("heartbeat_interval_s", sa.Float()),
        sa.Column("stop_requested_at", sa.Float()),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON()),
        sa.Column("progress_done", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("progress_total", sa.Integer()),
        sa.Column("log_path", sa.Text()),
        sa.Column("error", sa.Text()),
        sa.Column("traceback", sa.Text()),
        sa.Column("end_reason", sa.Text()),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_jobs_run_id_runs", ondelete="CASCADE"),
        sa.CheckConstraint(_STATUS_CHECK, name="ck_jobs_status"),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
    )
    op.create_index("ix_jobs_run_id", "jobs", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_jobs_run_id", table_name="jobs")
    op.drop_table("jobs")
    op.drop_table("attempts")
    with op.batch_alter_table("checkpoints") as batch:
        batch.drop_column("deleted_at")
    with op.batch_alter_table("runs") as batch:
        for name in ("stop_requested_at", "end_reason", "attempt", "pid_create_time"):
            batch.drop_column(name)

"""Initial schema: runs, run configs, metrics, rollouts, checkpoints, events.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("started_at", sa.Float()),
        sa.Column("ended_at", sa.Float()),
        sa.Column("pid", sa.Integer()),
        sa.Column("host", sa.String(255)),
        sa.Column("heartbeat_at", sa.Float()),
        sa.Column("heartbeat_interval_s", sa.Float()),
        sa.Column("error", sa.Text()),
        sa.Column("traceback", sa.Text()),
        sa.Column("output_dir", sa.Text()),
        sa.Column("resumed_from", sa.Integer()),
        sa.ForeignKeyConstraint(
            ["resumed_from"], ["runs.id"], name="fk_runs_resumed_from_runs", ondelete="SET NULL"
        ),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'finished', 'failed', 'aborted')", name="ck_runs_status"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
    )
    op.create_index("ix_runs_name", "runs", ["name"])
    op.create_index("ix_runs_status", "runs", ["status"])

    op.create_table(
        "run_configs",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("dataset_fingerprints", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_run_configs_run_id_runs", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", name="pk_run_configs"),
    )

    op.create_table(
        "metrics",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("value", sa.Float()),
        sa.Column("wall_time", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_metrics_run_id_runs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "step", "name", name="pk_metrics"),
    )
    op.create_index("ix_metrics_run_id_name_step", "metrics", ["run_id", "name", "step"])

    op.create_table(
        "rollouts",
        sa.Column("id", sa.Integer(), autoincrement=True),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("prompt_id", sa.String(200), nullable=False),
        sa.Column("group_index", sa.Integer(), nullable=False),
        sa.Column("video_path", sa.Text()),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("correct_letter", sa.String(8)),
        sa.Column("completion", sa.Text(), nullable=False),
        sa.Column("think", sa.Text()),
        sa.Column("answer", sa.Text()),
        sa.Column("format_reward", sa.Float()),
        sa.Column("accuracy_reward", sa.Float()),
        sa.Column("total_reward", sa.Float()),
        sa.Column("advantage", sa.Float()),
        sa.Column("log_prob", sa.Float()),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_rollouts_run_id_runs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_rollouts"),
        sa.UniqueConstraint(
            "run_id", "step", "prompt_id", "group_index", name="uq_rollouts_run_id_step_prompt_id_group_index"
        ),
    )

    op.create_table(
        "checkpoints",
        sa.Column("id", sa.Integer(), autoincrement=True),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_checkpoints_run_id_runs", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_checkpoints"),
        sa.UniqueConstraint("run_id", "step", name="uq_checkpoints_run_id_step"),
    )

    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), autoincrement=True),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("time", sa.Float(), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_events_run_id_runs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
    )


def downgrade() -> None:
    for table in ("events", "checkpoints", "rollouts", "metrics", "run_configs", "runs"):
        op.drop_table(table)

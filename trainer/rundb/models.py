"""The run database's tables, one ``Sql*`` class per table (MLflow's layout).

These rows never leave ``store.py``: callers get the frozen dataclasses of ``entities.py``. Times are
float seconds since the epoch (``time.time()``), the same on every backend. The schema here must match
the head alembic revision in ``migrations/versions`` (a test compares them).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from trainer.rundb.entities import TRAIN_RUN
from trainer.rundb.states import STATUSES as RUN_STATUSES  # noqa: F401 - re-exported

EVENT_LEVELS = ("debug", "info", "warning", "error")
# Tables whose ids users see by number ("run 4", "job 7", "evaluation #8"): declared AUTOINCREMENT
# (revision 0006) so SQLite never hands a deleted row's id to a new one; without it a new row gets
# max(id) + 1, and deleting the newest run made the next one "#1" again. PostgreSQL's sequences
# never reuse an id anyway.
NEVER_REUSED = {"sqlite_autoincrement": True}

# Named constraints, so alembic revisions can refer to them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class SqlRun(Base):
    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    created_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float)
    ended_at: Mapped[float | None] = mapped_column(Float)
    pid: Mapped[int | None] = mapped_column(Integer)
    host: Mapped[str | None] = mapped_column(String(255))
    heartbeat_at: Mapped[float | None] = mapped_column(Float)
    heartbeat_interval_s: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    traceback: Mapped[str | None] = mapped_column(Text)
    output_dir: Mapped[str | None] = mapped_column(Text)
    resumed_from: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    # Added by revision 0003: the owner's process start time (with pid and host, its identity), the
    # number of the current attempt, why it ended (e.g. the user's abort), and a pending stop request.
    pid_create_time: Mapped[float | None] = mapped_column(Float)
    attempt: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    end_reason: Mapped[str | None] = mapped_column(Text)
    stop_requested_at: Mapped[float | None] = mapped_column(Float)
    # Added by revision 0006: train, or model (registered for evaluation; see entities.RUN_KINDS).
    kind: Mapped[str] = mapped_column(String(16), default=TRAIN_RUN, server_default=TRAIN_RUN)
    # Added by revision 0008: the Ray job training the run and its head's address (NULL: this
    # machine). While set, the job's status is the run's liveness (liveness.death_reason).
    ray_job_id: Mapped[str | None] = mapped_column(String(128))
    ray_address: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (
        CheckConstraint("status IN ('queued', 'running', 'finished', 'failed', 'aborted')", name="status"),
        CheckConstraint("kind IN ('train', 'model')", name="kind"),
        Index("ix_runs_status", "status"),
        NEVER_REUSED,
    )


class SqlRunConfig(Base):
    """The full resolved config of a run and the fingerprints of the datasets it read."""

    __tablename__ = "run_configs"
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    dataset_fingerprints: Mapped[dict[str, Any]] = mapped_column(JSON)


class SqlMetric(Base):
    """One point; (run, step, name) is the key, so re-logging a step (a resumed run) overwrites it."""

    __tablename__ = "metrics"
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    # Nullable because SQLite stores NaN as NULL; a NaN loss is worth recording, it reads back as NaN.
    value: Mapped[float | None] = mapped_column(Float)
    wall_time: Mapped[float] = mapped_column(Float)
    # Added by revision 0005: the attempt that wrote the point (a resumed attempt overwriting a step
    # takes it over), so a drill can tell a resume from a restart. NULL: written without a lease.
    attempt: Mapped[int | None] = mapped_column(Integer)
    # The primary key (run_id, step, name) serves "since step N" for live plots; this one serves
    # "these names across runs" (comparison, latest value per name).
    __table_args__ = (Index("ix_metrics_run_id_name_step", "run_id", "name", "step"),)


class SqlRollout(Base):
    __tablename__ = "rollouts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    prompt_id: Mapped[str] = mapped_column(String(200))
    group_index: Mapped[int] = mapped_column(Integer)
    video_path: Mapped[str | None] = mapped_column(Text)
    question: Mapped[str] = mapped_column(Text)
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    correct_letter: Mapped[str | None] = mapped_column(String(8))
    completion: Mapped[str] = mapped_column(Text)
    think: Mapped[str | None] = mapped_column(Text)
    answer: Mapped[str | None] = mapped_column(Text)
    format_reward: Mapped[float | None] = mapped_column(Float)
    accuracy_reward: Mapped[float | None] = mapped_column(Float)
    total_reward: Mapped[float | None] = mapped_column(Float)
    advantage: Mapped[float | None] = mapped_column(Float)
    log_prob: Mapped[float | None] = mapped_column(Float)
    attempt: Mapped[int | None] = mapped_column(Integer)  # revision 0005, as for metrics
    # Revision 0007: what a non-multiple-choice question was scored against, and every reward's value.
    problem_type: Mapped[str | None] = mapped_column(String(32))
    reference: Mapped[str | None] = mapped_column(Text)
    rewards: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Unique per sample, so a resumed run that re-logs a step replaces it instead of doubling it.
    __table_args__ = (UniqueConstraint("run_id", "step", "prompt_id", "group_index"),)


class SqlCheckpoint(Base):
    __tablename__ = "checkpoints"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Added by revision 0003: when save_total_limit rotation removed the folder (None: on disk).
    deleted_at: Mapped[float | None] = mapped_column(Float)
    attempt: Mapped[int | None] = mapped_column(Integer)  # revision 0005: the attempt that saved it
    __table_args__ = (UniqueConstraint("run_id", "step"), NEVER_REUSED)


class SqlEvaluation(Base):
    """Added by revision 0002: one evaluation of a checkpoint on one dataset."""

    __tablename__ = "evaluations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    checkpoint_id: Mapped[int] = mapped_column(ForeignKey("checkpoints.id", ondelete="CASCADE"), index=True)
    dataset: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[float] = mapped_column(Float)
    accuracy: Mapped[float] = mapped_column(Float)
    format_rate: Mapped[float] = mapped_column(Float)
    # One object per record: {"id", "answer", "correct", "format_ok", ...}.
    results: Mapped[list[Any]] = mapped_column(JSON)
    # Added by revision 0004: what was asked and how (see trainer.eval.benchmark), for reuse.
    eval_key: Mapped[str | None] = mapped_column(String(64))
    dataset_fingerprint: Mapped[str | None] = mapped_column(String(64))
    settings: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    __table_args__ = (
        Index("ix_evaluations_checkpoint_id_eval_key", "checkpoint_id", "eval_key"),
        NEVER_REUSED,
    )


class SqlEvent(Base):
    __tablename__ = "events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    time: Mapped[float] = mapped_column(Float)
    level: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)
    __table_args__ = (Index("ix_events_run_id_time", "run_id", "time"),)


class SqlAttempt(Base):
    """Added by revision 0003: one trainer process's stint on a run (a resumed run has several)."""

    __tablename__ = "attempts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    pid: Mapped[int] = mapped_column(Integer)
    pid_create_time: Mapped[float] = mapped_column(Float)
    host: Mapped[str] = mapped_column(String(255))
    started_at: Mapped[float] = mapped_column(Float)
    ended_at: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16))
    end_reason: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (UniqueConstraint("run_id", "number"),)


class SqlRunWorker(Base):
    """Added by revision 0008: one training process of an attempt (a Ray worker): where it ran.
    Written once by rank 0 after its claim, fenced by its lease like the metrics."""

    __tablename__ = "run_workers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    rank: Mapped[int] = mapped_column(Integer)
    node_id: Mapped[str] = mapped_column(String(64))
    host: Mapped[str] = mapped_column(String(255))
    ip: Mapped[str | None] = mapped_column(String(64))
    pid: Mapped[int] = mapped_column(Integer)
    ray_job_id: Mapped[str | None] = mapped_column(String(128))
    recorded_at: Mapped[float] = mapped_column(Float)
    __table_args__ = (UniqueConstraint("run_id", "attempt", "rank"),)


class SqlJob(Base):
    """Added by revision 0003: a background job (an evaluation), with the same states and owner as a run."""

    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    created_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float)
    ended_at: Mapped[float | None] = mapped_column(Float)
    pid: Mapped[int | None] = mapped_column(Integer)
    pid_create_time: Mapped[float | None] = mapped_column(Float)
    host: Mapped[str | None] = mapped_column(String(255))
    heartbeat_at: Mapped[float | None] = mapped_column(Float)
    heartbeat_interval_s: Mapped[float | None] = mapped_column(Float)
    stop_requested_at: Mapped[float | None] = mapped_column(Float)
    # What to do ({"checkpoint", "dataset", ...}) and what came of it ({"evaluation_id", ...}).
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    progress_done: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    progress_total: Mapped[int | None] = mapped_column(Integer)
    log_path: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    traceback: Mapped[str | None] = mapped_column(Text)
    end_reason: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (
        CheckConstraint("status IN ('queued', 'running', 'finished', 'failed', 'aborted')", name="status"),
        NEVER_REUSED,
    )

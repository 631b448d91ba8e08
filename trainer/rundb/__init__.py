"""The run database: one SQLAlchemy store for runs, metrics, rollouts, checkpoints, evaluations, events.

store.py      RunStore (with its mixins runs.py, jobs.py, owned.py): the only place that opens sessions
entities.py   those dataclasses (Run, MetricSeries, Rollout, ...)
models.py     the ORM tables (never leave store.py)
schema.py     engine (SQLite WAL, busy timeout, foreign keys) and alembic upgrades on open
writer.py     MetricsWriter: the trainer's buffered, background writes
states.py     the one state machine of runs and jobs (queued -> running -> finished | failed | aborted)
owned.py      its compare-and-set writes (claim, beat, end, stop, reap) for runs and jobs
runs.py       a run's claims, attempts, resumes and reaping, mixed into RunStore
jobs.py       background jobs (evaluations), mixed into RunStore
artifacts.py  checkpoints, evaluations and events of runs, mixed into RunStore
history.py    a run's history over its attempts: the one duration, what each attempt resumed from
lifecycle.py  run_lifecycle / job_lifecycle: claim, beat, and always write how it ended; the
              RunHandle whose lease fences every write of a trainer
liveness.py   owner identity (pid + start time + host) and when an owner is dead
export.py     csv / jsonl / parquet export of a run's metrics or rollouts
"""

from __future__ import annotations

from trainer.rundb.entities import (
    ENDED_EARLY_EVENT,
    MODEL_RUN,
    RESUMED_EVENT,
    RUN_KINDS,
    TRAIN_RUN,
    Attempt,
    Checkpoint,
    DeletedRows,
    Evaluation,
    Event,
    Job,
    Lease,
    MetricPoint,
    MetricSeries,
    Rollout,
    Run,
    RunConfig,
    Worker,
)
from trainer.rundb.history import resumed_checkpoints, run_duration_s
from trainer.rundb.lifecycle import Heartbeat, JobHandle, RunAborted, RunHandle, job_lifecycle, run_lifecycle
from trainer.rundb.liveness import Owner
from trainer.rundb.states import OwnerAlive, RunLost
from trainer.rundb.store import RunStore
from trainer.rundb.writer import MetricsWriter

__all__ = [
    "ENDED_EARLY_EVENT",
    "MODEL_RUN",
    "RESUMED_EVENT",
    "RUN_KINDS",
    "TRAIN_RUN",
    "Attempt",
    "Checkpoint",
    "DeletedRows",
    "Evaluation",
    "Event",
    "Heartbeat",
    "Job",
    "JobHandle",
    "Lease",
    "MetricPoint",
    "MetricSeries",
    "MetricsWriter",
    "Owner",
    "OwnerAlive",
    "Rollout",
    "Run",
    "RunAborted",
    "RunConfig",
    "RunHandle",
    "RunLost",
    "RunStore",
    "Worker",
    "job_lifecycle",
    "resumed_checkpoints",
    "run_duration_s",
    "run_lifecycle",
]

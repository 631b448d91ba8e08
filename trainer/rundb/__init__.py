"""The run database: one SQLAlchemy store for runs, metrics, rollouts, checkpoints, evaluations, events.

store.py      RunStore: the only place that opens sessions; returns frozen dataclasses
entities.py   those dataclasses (Run, MetricSeries, Rollout, ...)
models.py     the ORM tables (never leave store.py)
schema.py     engine (SQLite WAL, busy timeout, foreign keys) and alembic upgrades on open
writer.py     MetricsWriter: the trainer's buffered, background writes
lifecycle.py  run_lifecycle / Heartbeat: running -> finished | failed(traceback) | aborted
liveness.py   when a 'running' run is really dead
export.py     csv / jsonl / parquet export of a run's metrics or rollouts
"""

from __future__ import annotations

from trainer.rundb.entities import (
    Checkpoint,
    DeletedRows,
    Evaluation,
    Event,
    MetricPoint,
    MetricSeries,
    Rollout,
    Run,
    RunConfig,
)
from trainer.rundb.lifecycle import Heartbeat, RunAborted, run_lifecycle
from trainer.rundb.store import RunStore
from trainer.rundb.writer import MetricsWriter

__all__ = [
    "Checkpoint",
    "DeletedRows",
    "Evaluation",
    "Event",
    "Heartbeat",
    "MetricPoint",
    "MetricSeries",
    "MetricsWriter",
    "Rollout",
    "Run",
    "RunAborted",
    "RunConfig",
    "RunStore",
    "run_lifecycle",
]

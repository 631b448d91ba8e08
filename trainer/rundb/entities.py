"""What the run store hands out: frozen dataclasses, never ORM rows (so no session leaks out)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Run:
    id: int
    name: str
    status: str  # queued | running | finished | failed | aborted
    created_at: float  # seconds since the epoch
    started_at: float | None = None
    ended_at: float | None = None
    pid: int | None = None
    host: str | None = None
    heartbeat_at: float | None = None
    heartbeat_interval_s: float | None = None
    error: str | None = None
    traceback: str | None = None
    output_dir: str | None = None
    resumed_from: int | None = None

    @property
    def is_active(self) -> bool:
        return self.status in ("queued", "running")


@dataclass(frozen=True)
class RunConfig:
    run_id: int
    config: Mapping[str, Any]
    dataset_fingerprints: Mapping[str, Any]


@dataclass(frozen=True)
class MetricPoint:
    step: int
    name: str
    value: float
    wall_time: float


@dataclass(frozen=True)
class MetricSeries:
    """One metric of one run as columns, ready for a plot: ``steps[i]`` has ``values[i]``."""

    name: str
    steps: tuple[int, ...]
    values: tuple[float, ...]
    wall_times: tuple[float, ...]

    @property
    def last_step(self) -> int | None:
        return self.steps[-1] if self.steps else None


@dataclass(frozen=True)
class Rollout:
    """One sampled completion of one prompt (``group_index`` 0..G-1) at one step, with its scores."""

    step: int
    prompt_id: str
    group_index: int
    question: str
    completion: str
    options: Mapping[str, str] = field(default_factory=dict)
    video_path: str | None = None
    correct_letter: str | None = None
    think: str | None = None
    answer: str | None = None
    format_reward: float | None = None
    accuracy_reward: float | None = None
    total_reward: float | None = None
    advantage: float | None = None
    log_prob: float | None = None


@dataclass(frozen=True)
class Checkpoint:
    id: int
    run_id: int
    step: int
    path: str
    created_at: float
    metrics: Mapping[str, float]


@dataclass(frozen=True)
class Evaluation:
    id: int
    checkpoint_id: int
    dataset: str
    created_at: float
    accuracy: float
    format_rate: float
    results: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True)
class Event:
    id: int
    run_id: int
    time: float
    level: str
    kind: str  # started | finished | checkpoint | warning | error | aborted | failed | ...
    message: str


@dataclass(frozen=True)
class DeletedRows:
    """How many rows ``RunStore.delete_run`` removed, per table."""

    runs: int
    metrics: int
    rollouts: int
    checkpoints: int
    events: int

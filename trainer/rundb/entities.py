"""What the run store hands out: frozen dataclasses, never ORM rows (so no session leaks out)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from trainer.rundb.liveness import Owner
from trainer.rundb.states import ACTIVE

# What a row of ``runs`` is: a training run (queued, claimed by trainers, resumed), or a model
# registered from outside so its evaluations have a checkpoint row to hang on (``vgrpo eval`` of a
# base model or any model folder): created finished, never trained, listed apart from the runs.
TRAIN_RUN, MODEL_RUN = "train", "model"
RUN_KINDS = (TRAIN_RUN, MODEL_RUN)


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
    pid_create_time: float | None = None  # with pid and host: the owner process's identity
    attempt: int = 0  # how many trainer processes have claimed this run
    end_reason: str | None = None  # why it ended as it did (e.g. "stopped by SIGTERM after step 12")
    stop_requested_at: float | None = None  # an abort was asked for and is pending
    kind: str = TRAIN_RUN  # train | model (see RUN_KINDS)
    ray_job_id: str | None = None  # the Ray job training it (None: this machine)
    ray_address: str | None = None  # that job's head (dashboard address)

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE

    @property
    def is_model(self) -> bool:
        """A model registered for evaluation, not a training run: it cannot be trained or resumed."""
        return self.kind == MODEL_RUN

    @property
    def owner(self) -> Owner | None:
        """The process that holds (or last held) the run."""
        return _owner(self.pid, self.pid_create_time, self.host)


@dataclass(frozen=True)
class Lease:
    """A trainer's hold on one attempt of one run: what every write it makes carries.

    The store accepts a write with a lease only while the run is ``running`` in that attempt, held by
    that very process (``owned.OwnedRows._fence``): a trainer that lost its run (reaped after a stall,
    taken over by a resume) cannot write into the run its successor now holds."""

    run_id: int
    attempt: int
    owner: Owner

    def describe(self) -> str:
        return f"run {self.run_id} attempt {self.attempt} ({self.owner.describe()})"


@dataclass(frozen=True)
class Attempt:
    """One trainer process's stint on a run, from its claim to its end."""

    run_id: int
    number: int  # 1, 2, ... in claim order
    pid: int
    pid_create_time: float
    host: str
    started_at: float
    ended_at: float | None
    status: str  # running, or how it ended
    end_reason: str | None

    @property
    def duration_s(self) -> float | None:
        return None if self.ended_at is None else self.ended_at - self.started_at


@dataclass(frozen=True)
class Worker:
    """One training process of an attempt on a Ray cluster: its rank and where it ran."""

    run_id: int
    attempt: int
    rank: int
    node_id: str  # Ray's node id
    host: str
    pid: int
    ip: str | None = None
    ray_job_id: str | None = None
    recorded_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "rank": self.rank,
            "node_id": self.node_id,
            "host": self.host,
            "ip": self.ip,
            "pid": self.pid,
            "ray_job_id": self.ray_job_id,
        }


@dataclass(frozen=True)
class Job:
    """A background job (kind ``evaluate``) with a run's states and owner rules."""

    id: int
    kind: str
    run_id: int | None
    status: str
    created_at: float
    params: Mapping[str, Any]
    started_at: float | None = None
    ended_at: float | None = None
    pid: int | None = None
    pid_create_time: float | None = None
    host: str | None = None
    heartbeat_at: float | None = None
    heartbeat_interval_s: float | None = None
    stop_requested_at: float | None = None
    result: Mapping[str, Any] | None = None
    progress_done: int = 0
    progress_total: int | None = None
    log_path: str | None = None
    error: str | None = None
    traceback: str | None = None
    end_reason: str | None = None

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE

    @property
    def owner(self) -> Owner | None:
        return _owner(self.pid, self.pid_create_time, self.host)


def _owner(pid: int | None, create_time: float | None, host: str | None) -> Owner | None:
    if pid is None or create_time is None or host is None:
        return None
    return Owner(pid, create_time, host)


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
    attempt: int | None = None  # the attempt that wrote it (None: written without a lease)


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
    attempt: int | None = None  # the attempt that wrote it (set by the store from the lease)
    problem_type: str | None = None  # None: multiple choice (also rows written before revision 0007)
    reference: str | None = None  # the reference answer of a non-multiple-choice question
    # reward name -> value of each reward in the run's grpo.rewards list (None: did not apply)
    rewards: Mapping[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Checkpoint:
    id: int
    run_id: int
    step: int
    path: str
    created_at: float
    metrics: Mapping[str, float]
    deleted_at: float | None = None  # removed from disk by save_total_limit
    attempt: int | None = None  # the attempt that saved it (None: registered without a lease)

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None


@dataclass(frozen=True)
class Evaluation:
    id: int
    checkpoint_id: int
    dataset: str
    created_at: float
    accuracy: float
    format_rate: float
    results: tuple[Mapping[str, Any], ...]
    eval_key: str | None = None  # dataset fingerprint + decoding settings, hashed
    dataset_fingerprint: str | None = None
    settings: Mapping[str, Any] | None = None  # decoding and video settings
    summary: Mapping[str, Any] | None = None  # trainer.eval.benchmark.BenchmarkReport.summary()


# The event a run gets when max_train_seconds or early_stop_accuracy ends it before its last step
# (written by the trainer, shown by the Monitor beside "finished").
ENDED_EARLY_EVENT = "ended_early"
# The event a trainer writes right after claiming a run it resumes from a checkpoint ("from <folder>").
RESUMED_EVENT = "resumed"


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

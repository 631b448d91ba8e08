"""Naming, logging, saving, resuming and how many processes train: the run section of the config.

Its own module beside ``video_config`` so that ``trainer.core.config`` stays one screenful per
concern; ``trainer.core.config`` re-exports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trainer.core.config_types import check_field_types, field_help
from trainer.core.errors import ConfigError

_help = field_help


@dataclass
class RunConfig:
    """Naming, logging, saving and resuming."""

    run_name: str = field(default="", metadata=_help("Run name shown in the studio (empty: generated)."))
    output_dir: str = field(
        default="", metadata=_help("Folder for checkpoints and logs (empty: <workspace>/outputs/<run>).")
    )
    db: str = field(default="", metadata=_help("Run database SQLAlchemy URL (empty: <workspace>/runs.db)."))
    seed: int = field(default=42, metadata=_help("Seed for data order, sampling and init."))
    logging_steps: int = field(default=1, metadata=_help("Write metrics every this many steps."))
    grpo_logging_steps: int = field(
        default=50, metadata=_help("Store the sampled rollouts every this many steps (and at step 1).")
    )
    eval_steps: int = field(default=0, metadata=_help("Evaluate every this many steps (0: only at the end)."))
    save_steps: int = field(default=500, metadata=_help("Save a checkpoint every this many steps."))
    save_total_limit: int = field(default=0, metadata=_help("Keep only the newest N checkpoints (0: all)."))
    report_to: str = field(default="none", metadata=_help("Also log to: none, wandb or tensorboard."))
    resume_from_checkpoint: str = field(
        default="", metadata=_help("Checkpoint folder to resume from, or `latest` in output_dir.")
    )
    num_threads: int = field(default=0, metadata=_help("CPU threads for torch (0: torch's default)."))
    num_processes: int = field(
        default=1,
        metadata=_help(
            "Training processes on this machine: more than 1 starts the run with `accelerate launch` "
            "(DDP; one per GPU, or CPU processes with gloo). The batch is per process. Not used with "
            "launcher ray, where num_workers says how many."
        ),
    )
    max_train_seconds: float = field(
        default=0.0,
        metadata=_help(
            "Stop (save, evaluate, finish) once training has run this many seconds, counted from the first "
            "step (0: no limit); warmup and decay follow it when it ends the run before max_steps."
        ),
    )
    early_stop_accuracy: float = field(
        default=0.0,
        metadata=_help(
            "Stop (save, evaluate, finish) once the mean accuracy reward of the last "
            "early_stop_window steps reaches this (0: off)."
        ),
    )
    early_stop_window: int = field(
        default=20, metadata=_help("Steps whose accuracy reward early_stop_accuracy averages.")
    )

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.report_to not in ("none", "wandb", "tensorboard"):
            raise ConfigError(f"report_to must be none, wandb or tensorboard, got {self.report_to!r}")
        for name in ("logging_steps", "grpo_logging_steps", "save_steps", "num_processes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("eval_steps", "save_total_limit", "max_train_seconds", "num_threads", "seed"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.early_stop_accuracy <= 1:
            raise ConfigError(
                f"early_stop_accuracy must be in [0, 1] (0: off), got {self.early_stop_accuracy}"
            )
        if self.early_stop_window < 1:
            raise ConfigError(f"early_stop_window must be >= 1, got {self.early_stop_window}")

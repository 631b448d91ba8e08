"""Where a run trains: on this machine (one process, or ``accelerate launch`` over ``num_processes``),
or on a Ray cluster as a Ray job whose ``TorchTrainer`` runs ``num_workers`` copies of the loop.

A section of its own (``launch:`` in the YAML, the Train tab's "Where it runs"): the same run config
trains in either place, only this section changes. What the Ray launcher needs of the rest of the
config (a run database every node reaches, an output_dir every node sees) is checked where the
database URL and the paths are resolved: ``trainer.run.cluster_check``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trainer.core.config_types import check_field_types, field_help
from trainer.core.errors import ConfigError

_help = field_help

LOCAL, RAY = "local", "ray"
LAUNCHERS = (LOCAL, RAY)


@dataclass
class LaunchConfig:
    """Where the run's processes run and what each one gets."""

    launcher: str = field(
        default=LOCAL,
        metadata=_help(
            "local: this machine (num_processes processes); ray: a Ray job on the cluster at ray_address "
            "(num_workers workers; needs a PostgreSQL run database and an output_dir every node sees)."
        ),
    )
    ray_address: str = field(
        default="",
        metadata=_help(
            "Ray launcher: the head's dashboard address, as `ray job submit` takes it (http://HEAD:8265)."
        ),
    )
    num_workers: int = field(
        default=2, metadata=_help("Ray launcher: training workers (processes), spread over the nodes.")
    )
    cpus_per_worker: float = field(default=1.0, metadata=_help("Ray launcher: CPUs each worker reserves."))
    gpus_per_worker: float = field(
        default=0.0, metadata=_help("Ray launcher: GPUs each worker reserves (0: train on CPUs, gloo).")
    )
    max_failures: int = field(
        default=0,
        metadata=_help(
            "Ray launcher: restarts after a worker dies, each from the last checkpoint as a new attempt "
            "(0: the run fails with that worker's error)."
        ),
    )
    accelerate_config: str = field(
        default="",
        metadata=_help(
            "Ray launcher: an accelerate config file (DeepSpeed ZeRO, FSDP; e.g. "
            "configs/accelerate_zero2.yaml) applied in every worker, as `accelerate launch "
            "--config_file` would (empty: DDP)."
        ),
    )
    ray_python: str = field(
        default="python",
        metadata=_help(
            "Ray launcher: the Python on the head node that has video-grpo-studio installed (the job's "
            "entrypoint runs it)."
        ),
    )

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.launcher not in LAUNCHERS:
            raise ConfigError(f"launcher must be local or ray, got {self.launcher!r}")
        if self.num_workers < 1:
            raise ConfigError(f"num_workers must be >= 1, got {self.num_workers}")
        if self.cpus_per_worker <= 0:
            raise ConfigError(f"cpus_per_worker must be > 0, got {self.cpus_per_worker}")
        if self.gpus_per_worker < 0:
            raise ConfigError(f"gpus_per_worker must be >= 0, got {self.gpus_per_worker}")
        if self.max_failures < 0:
            raise ConfigError(f"max_failures must be >= 0, got {self.max_failures}")
        if self.launcher == RAY:
            if not self.ray_address.strip():
                raise ConfigError(
                    "ray_address is empty: the Ray launcher needs the head's dashboard address "
                    "(http://HEAD:8265, as `ray job submit --address` takes it)"
                )
            if not self.ray_python.strip():
                raise ConfigError("ray_python is empty: name the head node's Python (e.g. python)")

    @property
    def is_ray(self) -> bool:
        return self.launcher == RAY

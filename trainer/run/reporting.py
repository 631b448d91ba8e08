"""Optional mirrors of the metrics to Weights & Biases or TensorBoard (``report_to``).

The run database is always written; these are extra sinks, imported only when asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from trainer.core.errors import ConfigError


class Reporter(Protocol):
    def log(self, step: int, metrics: dict[str, float]) -> None: ...

    def close(self) -> None: ...


class _NoReporter:
    def log(self, step: int, metrics: dict[str, float]) -> None:
        return None

    def close(self) -> None:
        return None


class _TensorBoard:
    def __init__(self, log_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise ConfigError(
                "report_to=tensorboard needs the tensorboard package: pip install tensorboard"
            ) from exc
        self._writer = SummaryWriter(log_dir=str(log_dir))

    def log(self, step: int, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            self._writer.add_scalar(name, value, step)

    def close(self) -> None:
        self._writer.close()


class _WandB:
    def __init__(self, run_name: str, output_dir: Path, config: dict[str, Any]) -> None:
        try:
            import wandb
        except ImportError as exc:
            raise ConfigError("report_to=wandb needs the wandb package: pip install wandb") from exc
        self._wandb = wandb
        self._run = wandb.init(name=run_name, dir=str(output_dir), config=config)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self._run.log(metrics, step=step)

    def close(self) -> None:
        self._run.finish()
        # finish() leaves wandb's service process (wandb-core) running until the interpreter exits;
        # end it with the run, so a train() called in-process (a test, a notebook) leaves none behind.
        self._wandb.teardown()


def make_reporter(report_to: str, run_name: str, output_dir: Path, config: dict[str, Any]) -> Reporter:
    if report_to == "tensorboard":
        return _TensorBoard(output_dir / "tensorboard")
    if report_to == "wandb":
        return _WandB(run_name, output_dir, config)
    return _NoReporter()

"""The optimiser's learning rate, set from the run's progress by ``trainer.update.schedule``.

:class:`BudgetScheduler` stands in for a torch LR scheduler where the update phase calls one
(``step()`` after each optimiser step). It is not prepared by accelerate: accelerate steps a prepared
scheduler ``num_processes`` times for each optimiser step (it assumes a schedule counted in one
process's batches), which ran the transformers scheduler used before, counted in global steps,
``num_processes`` times too fast. What it needs to resume (the steps done and the progress at the
checkpoint) is in ``trainer_state.json`` (``trainer.run.checkpoint.TrainerState``), so it keeps no
accelerate state of its own.
"""

from __future__ import annotations

from typing import Any

from trainer.core.config import OptimConfig
from trainer.update.schedule import lr_factor, run_progress


class BudgetScheduler:
    """Sets every parameter group's learning rate to ``peak x lr_factor(progress)`` before each update.

    ``progress`` (``trainer.update.schedule.run_progress``) counts the updates done and, with a
    time budget, the training seconds the loop last reported (``set_train_seconds``, once per step,
    the same value on every process so their rates, and so their weights, never drift apart).
    """

    def __init__(self, optimizer: Any, optim: OptimConfig, total_updates: int, budget_s: float = 0.0) -> None:
        self.optimizer = optimizer
        self.kind = optim.lr_scheduler_type
        self.warmup_ratio = optim.warmup_ratio
        self.total_updates = total_updates
        self.budget_s = budget_s
        self.peak_lrs = [group["lr"] for group in optimizer.param_groups]
        self.updates = 0
        self.train_s = 0.0
        self.resumed_at = 0.0  # the progress of the checkpoint this run resumed from
        self.last_update_lr = 0.0  # the rate the last optimiser update used (what the step logs)
        self._apply()

    def progress(self) -> float:
        """How far along the schedule the next update is, in [0, 1]."""
        return run_progress(self.updates, self.total_updates, self.train_s, self.budget_s, self.resumed_at)

    def resume(self, updates: int, progress: float) -> None:
        """Continue from a checkpoint taken after ``updates`` updates at schedule ``progress``."""
        self.updates, self.resumed_at = updates, progress
        self._apply()

    def set_train_seconds(self, train_s: float) -> None:
        """The run's training time so far (seconds since its first step): the next updates' clock."""
        self.train_s = train_s
        self._apply()

    def step(self) -> None:
        """One optimiser update was taken: move on to the next one's rate."""
        self.last_update_lr = self.get_last_lr()[0]
        self.updates += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        """The rate of each parameter group for the next update (as torch schedulers name it)."""
        return [group["lr"] for group in self.optimizer.param_groups]

    def _apply(self) -> None:
        factor = lr_factor(self.kind, self.progress(), self.warmup_ratio)
        for group, peak in zip(self.optimizer.param_groups, self.peak_lrs, strict=True):
            group["lr"] = peak * factor

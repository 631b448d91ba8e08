"""BudgetScheduler: the optimiser's rate follows the time budget, read from a clock the test sets
(the loop's is ``time.perf_counter``), and resumes where its checkpoint left it."""

from __future__ import annotations

import pytest
import torch

from trainer.core.config import OptimConfig
from trainer.step.lr_schedule import BudgetScheduler

PEAK = 1e-3


def optimizer() -> torch.optim.Optimizer:
    return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=PEAK)


def test_a_60s_budget_with_20_percent_warmup_reaches_the_full_rate_after_12s() -> None:
    # Only a time budget: max_steps 1,000,000 makes 1,000,000 planned updates, which the schedule
    # no longer waits for (it used to: warmup 0.2 would have lasted 200,000 updates).
    opt = optimizer()
    sched = BudgetScheduler(opt, OptimConfig(lr_scheduler_type="constant_with_warmup", warmup_ratio=0.2),
                            total_updates=1_000_000, budget_s=60.0)  # fmt: skip
    assert sched.get_last_lr() == [0.0]  # p = 0: the warmup starts from 0
    sched.set_train_seconds(6.0)  # p = 6/60 = 0.1 -> half of the 0.2 warmup
    assert opt.param_groups[0]["lr"] == pytest.approx(PEAK / 2)
    opt.step()
    sched.step()
    assert sched.last_update_lr == pytest.approx(PEAK / 2)
    sched.set_train_seconds(12.0)  # p = 0.2: warmup done
    assert sched.get_last_lr() == [pytest.approx(PEAK)]
    sched.set_train_seconds(59.0)
    opt.step()
    sched.step()
    assert sched.last_update_lr == pytest.approx(PEAK)


def test_steps_drive_the_rate_when_they_are_further_along_than_the_time() -> None:
    # linear, no warmup, 4 updates, 600 s budget: after 2 updates at 60 s, p = max(2/4, 0.1) = 0.5.
    opt = optimizer()
    sched = BudgetScheduler(opt, OptimConfig(lr_scheduler_type="linear"), total_updates=4, budget_s=600.0)
    assert sched.get_last_lr() == [pytest.approx(PEAK)]
    sched.step()
    sched.step()
    sched.set_train_seconds(60.0)
    assert sched.progress() == pytest.approx(0.5)
    assert sched.get_last_lr() == [pytest.approx(PEAK / 2)]


def test_a_resumed_schedule_carries_on_from_its_checkpoint_over_its_own_budget() -> None:
    cfg = OptimConfig(lr_scheduler_type="cosine")
    first = BudgetScheduler(optimizer(), cfg, total_updates=1_000_000, budget_s=60.0)
    first.set_train_seconds(30.0)
    saved = first.progress()  # 0.5: cos at half way -> (1 + cos(pi/2)) / 2 = 0.5 of the peak
    assert saved == pytest.approx(0.5) and first.get_last_lr() == [pytest.approx(PEAK / 2)]

    opt = optimizer()
    resumed = BudgetScheduler(opt, cfg, total_updates=1_000_000, budget_s=60.0)
    resumed.resume(updates=5, progress=saved)
    assert resumed.get_last_lr() == [pytest.approx(PEAK / 2)]  # no second warmup or jump
    # 30 s of its own 60 s: p = 0.5 + 0.5 * 0.5 = 0.75 -> (1 + cos(3 pi / 4)) / 2 = 0.1464466
    resumed.set_train_seconds(30.0)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1464466 * PEAK)


def test_each_parameter_group_keeps_its_own_peak() -> None:
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([{"params": [a], "lr": 1e-3}, {"params": [b], "lr": 4e-3}])
    sched = BudgetScheduler(opt, OptimConfig(lr_scheduler_type="linear"), total_updates=4)
    sched.step()  # p = 1/4 -> 0.75 of each peak
    assert sched.get_last_lr() == [pytest.approx(0.75e-3), pytest.approx(3e-3)]

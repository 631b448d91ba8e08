"""The learning-rate schedule's progress and factor, against numbers worked by hand."""

from __future__ import annotations

import pytest

from trainer.update.schedule import LR_SCHEDULER_TYPES, lr_factor, run_progress


def test_progress_without_a_time_budget_is_the_updates_done() -> None:
    assert run_progress(3, 10) == pytest.approx(0.3)
    # Time is ignored without a budget.
    assert run_progress(3, 10, train_s=1e6) == pytest.approx(0.3)


def test_progress_with_a_time_budget_is_the_further_along_of_steps_and_time() -> None:
    # 3/10 = 0.3 of the steps, 30/60 = 0.5 of the time -> 0.5
    assert run_progress(3, 10, train_s=30.0, budget_s=60.0) == pytest.approx(0.5)
    # 8/10 = 0.8 of the steps, 0.5 of the time -> 0.8
    assert run_progress(8, 10, train_s=30.0, budget_s=60.0) == pytest.approx(0.8)
    # Only a time budget (max_steps 1,000,000): 12 updates are nothing, 45 of 60 s is 0.75.
    assert run_progress(12, 1_000_000, train_s=45.0, budget_s=60.0) == pytest.approx(0.75)
    # Past the budget (the step that crosses it finishes) -> capped at 1.
    assert run_progress(0, 10, train_s=90.0, budget_s=60.0) == 1.0


def test_a_resumed_run_spreads_the_rest_of_the_schedule_over_its_own_budget() -> None:
    # Resumed at 0.4: 15 of its 60 s -> 0.4 + 0.6 * 0.25 = 0.55; at its start it carries on at 0.4.
    assert run_progress(0, 1_000_000, train_s=15.0, budget_s=60.0, resumed_at=0.4) == pytest.approx(0.55)
    assert run_progress(0, 1_000_000, train_s=0.0, budget_s=60.0, resumed_at=0.4) == pytest.approx(0.4)
    assert run_progress(0, 1_000_000, train_s=60.0, budget_s=60.0, resumed_at=0.4) == pytest.approx(1.0)


def test_no_planned_update_is_refused() -> None:
    with pytest.raises(ValueError, match="total_updates must be >= 1"):
        run_progress(0, 0)


@pytest.mark.parametrize(
    ("kind", "progress", "expected"),
    [
        # warmup over the first 0.2: p / 0.2
        ("constant_with_warmup", 0.0, 0.0),
        ("constant_with_warmup", 0.1, 0.5),
        ("constant_with_warmup", 0.2, 1.0),
        ("constant_with_warmup", 0.9, 1.0),
        ("linear", 0.1, 0.5),
        # q = (0.6 - 0.2) / 0.8 = 0.5 -> 1 - 0.5
        ("linear", 0.6, 0.5),
        ("linear", 1.0, 0.0),
        # q = 0.5 -> (1 + cos(pi/2)) / 2 = 0.5; q = 0.25 -> (1 + cos(pi/4)) / 2 = 0.8535534
        ("cosine", 0.6, 0.5),
        ("cosine", 0.4, 0.8535534),
        ("cosine", 1.0, 0.0),
        # constant has no warmup (as transformers' "constant")
        ("constant", 0.0, 1.0),
        ("constant", 1.0, 1.0),
    ],
)
def test_factor_at_hand_worked_points(kind: str, progress: float, expected: float) -> None:
    assert lr_factor(kind, progress, warmup_ratio=0.2) == pytest.approx(expected, abs=1e-6)


def test_no_warmup_starts_at_the_peak() -> None:
    assert lr_factor("cosine", 0.0, warmup_ratio=0.0) == 1.0
    assert lr_factor("linear", 0.25, warmup_ratio=0.0) == pytest.approx(0.75)


@pytest.mark.parametrize("kind", LR_SCHEDULER_TYPES)
def test_over_steps_the_curves_are_transformers_schedulers_of_the_same_name(kind: str) -> None:
    import torch
    from transformers import get_scheduler

    # 10 steps, warmup 0.2 = 2 whole steps, so transformers' int(warmup_ratio * steps) is exact.
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    reference = get_scheduler(kind, optimizer, num_warmup_steps=2, num_training_steps=10)
    [multiplier] = reference.lr_lambdas
    for step in range(11):
        assert lr_factor(kind, step / 10, warmup_ratio=0.2) == pytest.approx(multiplier(step), abs=1e-9), step


def test_an_unknown_schedule_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown lr_scheduler_type 'polynomial'"):
        lr_factor("polynomial", 0.5, 0.0)

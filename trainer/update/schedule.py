"""The learning-rate schedule as two pure functions: how far along the run is, and the factor of the
peak learning rate at that point. Nothing here reads a clock or touches an optimiser
(``trainer.step.lr_schedule`` applies it), so every value can be checked by hand
(tests/update/test_schedule.py).

A run ends at its last step or, with ``max_train_seconds``, when its time budget is spent, whichever
comes first; the schedule runs over whichever of the two is further along::

    p = min(1, u / U)                                    no time budget (T = 0)
    p = min(1, max(u / U, p0 + (1 - p0) * t / T))        time budget T seconds

``u`` optimiser updates done of the ``U`` planned (steps x ``num_iterations``), ``t`` seconds of
training since this process's first step (the loop's clock, the one ``max_train_seconds`` is checked
against), ``p0`` the progress at the checkpoint a resumed run started from (0 for a fresh run). A
resumed run gets its own full budget (the loop's clock restarts), so the rest of the schedule,
``1 - p0``, is spread over it: the rate carries on from where it stopped instead of warming up
again. Building the schedule from the steps alone made a run with only a time budget (``max_steps``
1,000,000) spend its whole budget in warmup.

The factor of the peak rate at progress ``p``, with ``w = warmup_ratio`` and
``q = (p - w) / (1 - w)`` the fraction of the decay done (the same curves as transformers'
schedulers of these names, with ``p = step / steps``)::

    p < w                          f = p / w                    linear warmup from 0
    constant_with_warmup           f = 1
    linear                         f = 1 - q
    cosine                         f = (1 + cos(pi * q)) / 2
    constant                       f = 1 always                 (no warmup, as in transformers)
"""

from __future__ import annotations

import math

from trainer.core.config import LR_SCHEDULER_TYPES

__all__ = ["LR_SCHEDULER_TYPES", "lr_factor", "run_progress"]


def run_progress(
    updates: int, total_updates: int, train_s: float = 0.0, budget_s: float = 0.0, resumed_at: float = 0.0
) -> float:
    """``p`` in [0, 1]: the further along of ``updates / total_updates`` and, with a time budget
    (``budget_s`` > 0), ``resumed_at + (1 - resumed_at) * train_s / budget_s`` (see the module)."""
    if total_updates < 1:
        raise ValueError(f"total_updates must be >= 1, got {total_updates}")
    progress = updates / total_updates
    if budget_s > 0:
        progress = max(progress, resumed_at + (1.0 - resumed_at) * train_s / budget_s)
    return min(1.0, max(0.0, progress))


def lr_factor(kind: str, progress: float, warmup_ratio: float) -> float:
    """The factor of the peak learning rate at ``progress`` (``run_progress``) for schedule ``kind``
    (one of ``LR_SCHEDULER_TYPES``), after a linear warmup over the first ``warmup_ratio`` of the run."""
    if kind not in LR_SCHEDULER_TYPES:
        raise ValueError(f"unknown lr_scheduler_type {kind!r}: one of {', '.join(LR_SCHEDULER_TYPES)}")
    if kind == "constant":
        return 1.0
    if progress < warmup_ratio:
        return progress / warmup_ratio
    decayed = (progress - warmup_ratio) / (1.0 - warmup_ratio)
    if kind == "linear":
        return max(0.0, 1.0 - decayed)
    if kind == "cosine":
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * decayed)))
    return 1.0  # constant_with_warmup

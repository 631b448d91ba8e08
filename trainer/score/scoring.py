"""Scoring a rollout batch: rewards per completion and, with T-GRPO, the temporal bonus."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from trainer.data.problem_types import MULTIPLE_CHOICE
from trainer.score.reward_functions import ACCURACY, LoadedReward
from trainer.score.rewards import RewardBreakdown, record_accuracy, score_completion


@dataclass
class Scores:
    """Rewards of B*G completions, grouped per prompt (row b*G + g)."""

    breakdowns: list[RewardBreakdown]  # what each completion answered (think, answer, choice)
    format: torch.Tensor  # (B*G,) the built-in format reward, whether or not it is weighted in
    accuracy: torch.Tensor  # (B*G,) the built-in accuracy reward, including any temporal bonus
    total: torch.Tensor  # (B*G,) sum_k weight_k * reward_k over the run's reward list
    temporal: dict[str, float] | None = None  # T-GRPO statistics, when used
    # reward name -> (B*G,) values of every reward in the run's list, None where it did not apply
    per_reward: dict[str, list[float | None]] = field(default_factory=dict)


def score_rollouts(
    texts: Sequence[str],
    records: Sequence,
    group_size: int,
    rewards: Sequence[LoadedReward],
    step: int = 0,
) -> Scores:
    """Score each completion against its record (record b owns rows b*G ... b*G+G-1) with every
    reward of the run's list; ``total = sum_k weight_k * value_k`` (a None value adds nothing).

    The built-in format and accuracy values are computed for every completion even when the list
    leaves them out, so the run's format and accuracy curves always exist."""
    rows = [records[i // group_size] for i in range(len(texts))]
    breakdowns = [
        score_completion(
            text, r.answer, r.options, mode=r.mode, problem_type=getattr(r, "problem_type", MULTIPLE_CHOICE)
        )
        for text, r in zip(texts, rows, strict=True)
    ]
    context = {"group_size": group_size, "step": step, "mode": [r.mode for r in rows]}
    per_reward = {reward.spec.name: reward(list(texts), rows, **context) for reward in rewards}
    total = torch.zeros(len(texts))
    for reward in rewards:
        values = torch.tensor([0.0 if v is None else v for v in per_reward[reward.spec.name]])
        total += reward.spec.weight * values
    fmt = torch.tensor([b.format_reward for b in breakdowns])
    acc = torch.tensor([b.accuracy_reward for b in breakdowns])
    return Scores(breakdowns, fmt, acc, total, per_reward=per_reward)


def temporal_bonus(
    scores: Scores,
    shuffled_texts: Sequence[str],
    records: Sequence,
    group_size: int,
    margin: float,
    bonus: float,
    accuracy_weight: float,
) -> Scores:
    """Video-R1's T-GRPO: where a group answers at least ``margin`` x as well on ordered frames as on
    shuffled ones, its correct ordered completions get ``bonus`` added to their accuracy reward.

    ``shuffled_texts`` are G completions per prompt sampled on the same frames in random order.
    Video-R1 (Feng et al., 2025, eq. 2) uses p >= mu * p~ with mu = 0.8 and bonus 0.3. The bonus
    enters the total with the accuracy reward's weight (``accuracy_weight``), as part of it.
    """
    shuffled_acc = torch.tensor(
        [record_accuracy(text, records[i // group_size]) for i, text in enumerate(shuffled_texts)]
    )
    ordered = scores.accuracy.view(-1, group_size).mean(dim=1)
    shuffled = shuffled_acc.view(-1, group_size).mean(dim=1)
    # A group with no correct answer gains nothing either way; require some ordered success.
    earns = (ordered >= margin * shuffled) & (ordered > 0)
    gets_bonus = earns.repeat_interleave(group_size) & (scores.accuracy > 0)
    added = bonus * gets_bonus.float()
    per_reward = dict(scores.per_reward)
    if ACCURACY in per_reward:
        per_reward[ACCURACY] = [
            None if v is None else v + float(extra)
            for v, extra in zip(per_reward[ACCURACY], added, strict=True)
        ]
    return Scores(
        breakdowns=scores.breakdowns,
        format=scores.format,
        accuracy=scores.accuracy + added,
        total=scores.total + accuracy_weight * added,
        per_reward=per_reward,
        temporal={
            "acc_ordered": float(ordered.mean()),
            "acc_shuffled": float(shuffled.mean()),
            "bonus_rate": float(gets_bonus.float().mean()),
        },
    )

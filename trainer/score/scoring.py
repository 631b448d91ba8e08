"""Scoring a rollout batch: rewards per completion and, with T-GRPO, the temporal bonus."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from trainer.score.rewards import RewardBreakdown, accuracy_reward, score_completion


@dataclass
class Scores:
    """Rewards of B*G completions, grouped per prompt (row b*G + g)."""

    breakdowns: list[RewardBreakdown]
    format: torch.Tensor  # (B*G,)
    accuracy: torch.Tensor  # (B*G,) including any temporal bonus
    total: torch.Tensor  # (B*G,)
    temporal: dict[str, float] | None = None  # T-GRPO statistics, when used


def score_rollouts(
    texts: Sequence[str],
    records: Sequence,
    group_size: int,
    format_weight: float,
    accuracy_weight: float,
) -> Scores:
    """Score each completion against its record (record b owns rows b*G ... b*G+G-1)."""
    breakdowns = [
        score_completion(
            text,
            records[i // group_size].answer,
            records[i // group_size].options,
            mode=records[i // group_size].mode,
            format_weight=format_weight,
            accuracy_weight=accuracy_weight,
        )
        for i, text in enumerate(texts)
    ]
    fmt = torch.tensor([b.format_reward for b in breakdowns])
    acc = torch.tensor([b.accuracy_reward for b in breakdowns])
    return Scores(breakdowns, fmt, acc, format_weight * fmt + accuracy_weight * acc)


def temporal_bonus(
    scores: Scores,
    shuffled_texts: Sequence[str],
    records: Sequence,
    group_size: int,
    margin: float,
    bonus: float,
    format_weight: float,
    accuracy_weight: float,
) -> Scores:
    """Video-R1's T-GRPO: where a group answers at least ``margin`` x as well on ordered frames as on
    shuffled ones, its correct ordered completions get ``bonus`` added to their accuracy reward.

    ``shuffled_texts`` are G completions per prompt sampled on the same frames in random order.
    Video-R1 (Feng et al., 2025, eq. 2) uses p >= mu * p~ with mu = 0.8 and bonus 0.3.
    """
    shuffled_acc = torch.tensor(
        [
            accuracy_reward(text, records[i // group_size].answer, records[i // group_size].options)
            for i, text in enumerate(shuffled_texts)
        ]
    )
    ordered = scores.accuracy.view(-1, group_size).mean(dim=1)
    shuffled = shuffled_acc.view(-1, group_size).mean(dim=1)
    # A group with no correct answer gains nothing either way; require some ordered success.
    earns = (ordered >= margin * shuffled) & (ordered > 0)
    gets_bonus = earns.repeat_interleave(group_size) & (scores.accuracy > 0)
    accuracy = scores.accuracy + bonus * gets_bonus.float()
    return Scores(
        breakdowns=scores.breakdowns,
        format=scores.format,
        accuracy=accuracy,
        total=format_weight * scores.format + accuracy_weight * accuracy,
        temporal={
            "acc_ordered": float(ordered.mean()),
            "acc_shuffled": float(shuffled.mean()),
            "bonus_rate": float(gets_bonus.float().mean()),
        },
    )

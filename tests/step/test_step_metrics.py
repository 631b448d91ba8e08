"""trainer.step.grpo_step.step_metrics: the logged grpo/advantage is the A the rollout cards show."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from trainer.core import metrics_keys as mk
from trainer.core.config import TrainConfig
from trainer.data.records import MCQRecord
from trainer.run.loop import rollout_rows
from trainer.score.reward_functions import seed_rewards
from trainer.score.scoring import score_rollouts
from trainer.step.context import MicroBatch, RolloutPhase, UpdatePhase
from trainer.step.grpo_step import step_metrics
from trainer.update import grpo

G = 4
OPTIONS = {"A": "left", "B": "right"}
RIGHT, WRONG = "<answer>(B) right</answer>", "<answer>(A) left</answer>"


def _micro_batch(question_id: str, texts: list[str]) -> MicroBatch:
    """One question's group of G completions, scored on accuracy only and with A = r - mean(r)."""
    record = MCQRecord(
        id=question_id, video="/v/x.mp4", image=None, question="Which way?", options=OPTIONS,
        answer="B", source="hand.jsonl", index=1, mode="no_think",
    )  # fmt: skip
    scores = score_rollouts(texts, [record], G, seed_rewards(0.0, 1.0))
    rollout = SimpleNamespace(
        texts=texts, group_size=G, prompt=SimpleNamespace(records=[record]), lengths=torch.tensor([5] * G)
    )
    advantages = grpo.group_advantages(scores.total, G, scale="none")
    return MicroBatch(rollout, scores, advantages, logp_old=None, logp_ref=None)


def test_advantage_metric_is_the_mean_size_of_the_cards_advantages() -> None:
    cfg = TrainConfig()
    cfg = replace(cfg, grpo=replace(cfg.grpo, grpo_sample_size=G, grpo_alpha=0.5))
    # Rewards [1, 0, 0, 0] -> A = r - 0.25 = [0.75, -0.25, -0.25, -0.25];
    # rewards [1, 1, 0, 0] -> A = r - 0.5 = [0.5, 0.5, -0.5, -0.5].
    micro = [
        _micro_batch("q_1", [RIGHT, WRONG, WRONG, WRONG]),
        _micro_batch("q_2", [RIGHT, RIGHT, WRONG, WRONG]),
    ]
    rollouts = RolloutPhase(micro=micro, sampled_scores=[mb.scores for mb in micro], rounds=2)
    means = {"policy_seq_log_prob": -3.0, "kl": 0.0, "clip_ratio": 0.0, "entropy": 1.0, "loss": 0.1}
    update = UpdatePhase(means=means, grad_norm=1.0, seconds=1.0)

    cards = [row.advantage for row in rollout_rows(7, micro)]
    metrics = step_metrics(cfg, rollouts, update, n_micro=2, step_s=1.0)

    assert cards == pytest.approx([0.75, -0.25, -0.25, -0.25, 0.5, 0.5, -0.5, -0.5], abs=1e-6)
    # mean |A| = (0.75 + 3 * 0.25 + 4 * 0.5) / 8 = 3.5 / 8 = 0.4375; grpo_alpha (0.5) is not applied.
    assert metrics[mk.ADVANTAGE] == pytest.approx(0.4375, abs=1e-6)
    assert metrics[mk.ADVANTAGE] == pytest.approx(sum(abs(a) for a in cards) / len(cards), abs=1e-6)

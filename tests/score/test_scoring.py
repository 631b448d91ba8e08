from dataclasses import dataclass

import pytest
import torch

from trainer.rollout.hf import completion_mask
from trainer.score.reward_functions import seed_rewards
from trainer.score.scoring import score_rollouts, temporal_bonus

OPTIONS = {"A": "left", "B": "right", "C": "up", "D": "down"}


@dataclass
class Rec:
    answer: str
    options: dict
    mode: str = "think"


def good(letter: str) -> str:
    return f"<think>look</think> <answer>({letter}) {OPTIONS[letter]}</answer>"


def test_score_rollouts_groups_rows_by_prompt() -> None:
    records = [Rec("A", OPTIONS), Rec("D", OPTIONS)]
    texts = [good("A"), good("B"), "(A)", good("D"), good("D"), "<answer>(D) down</answer>"]
    scores = score_rollouts(texts, records, 3, seed_rewards(0.3, 0.7))
    assert scores.format.tolist() == [1.0, 1.0, 0.0, 1.0, 1.0, 0.0]
    assert scores.accuracy.tolist() == [1.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    assert scores.total.tolist() == pytest.approx([1.0, 0.3, 0.0, 1.0, 1.0, 0.7])


def test_temporal_bonus_rewards_correct_answers_that_need_the_order() -> None:
    records = [Rec("A", OPTIONS), Rec("C", OPTIONS)]
    # Group 0: ordered 2/2 correct, shuffled 1/2 -> 1.0 >= 0.8 * 0.5: correct ordered rows get +0.3.
    # Group 1: ordered 1/2, shuffled 2/2 -> 0.5 < 0.8 * 1.0: no bonus.
    ordered = [good("A"), good("A"), good("C"), good("B")]
    shuffled = [good("A"), good("B"), good("C"), good("C")]
    base = score_rollouts(ordered, records, 2, seed_rewards(0.3, 0.7))
    out = temporal_bonus(base, shuffled, records, 2, margin=0.8, bonus=0.3, accuracy_weight=0.7)
    assert out.accuracy.tolist() == pytest.approx([1.3, 1.3, 1.0, 0.0])
    # total = 0.3 * format + 0.7 * accuracy: 0.3 + 0.91 = 1.21 for the bonus rows.
    assert out.total.tolist() == pytest.approx([1.21, 1.21, 1.0, 0.3])
    assert out.temporal == pytest.approx({"acc_ordered": 0.75, "acc_shuffled": 0.75, "bonus_rate": 0.5})


def test_completion_mask_stops_after_the_first_eos() -> None:
    ids = torch.tensor([[4, 9, 9, 3], [4, 5, 6, 7], [9, 1, 1, 1]])
    assert completion_mask(ids, [9]).tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]
    assert completion_mask(ids, [3, 7]).tolist() == [[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1]]

"""trainer.score.dynamic_sampling: which groups are kept, and that a cut batch is the same data as before."""

from __future__ import annotations

import pytest
import torch

from tests.helpers.records import video_record
from trainer.core.video_config import VideoConfig
from trainer.model.loading import generation_kwargs, load_policy
from trainer.rollout.hf import build_prompt_batch, generate_rollouts
from trainer.score.dynamic_sampling import select_groups, select_prompts
from trainer.score.reward_functions import seed_rewards
from trainer.score.scoring import score_rollouts
from trainer.update.grpo import groups_with_spread
from trainer.update.logprobs import completion_logprobs

VIDEO = VideoConfig(fps=8.0, max_frames=8, min_pixels=3136, max_pixels=3136)


def test_groups_with_spread() -> None:
    # Groups of 3: (1, 1, 1) flat, (0, 1, 0) spread, (0.3, 0.3, 0.3) flat, (0.3, 1.0, 1.0) spread.
    rewards = torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.3, 0.3, 0.3, 0.3, 1.0, 1.0])
    assert groups_with_spread(rewards, 3) == [1, 3]
    assert groups_with_spread(torch.zeros(4), 2) == []


@pytest.fixture(scope="module")
def policy(tiny_model_dir):
    torch.manual_seed(0)
    return load_policy(tiny_model_dir)


def test_selected_groups_are_the_same_data_as_the_full_batch(policy, synthetic_dir) -> None:
    model, processor = policy
    # Questions of different lengths, so prompts are left-padded differently.
    questions = ["Which way does the square move?", "Where does it go?", "Which way?"]
    records = [
        video_record(f"r{i}", synthetic_dir / "videos" / f"m_000{i + 1}.mp4", q, mode="no_think")
        for i, q in enumerate(questions)
    ]
    prompt = build_prompt_batch(processor, records, VIDEO)
    torch.manual_seed(3)
    rollout = generate_rollouts(model, processor, prompt, 2, generation_kwargs(processor, 10))
    scores = score_rollouts(rollout.texts, records, 2, seed_rewards(0.3, 0.7))

    keep = [2, 0]
    kept, kept_scores = select_groups(rollout, scores, keep)
    assert [r.id for r in kept.prompt.records] == ["r2", "r0"]
    rows = [4, 5, 0, 1]
    assert kept.texts == [rollout.texts[r] for r in rows]
    assert torch.equal(kept_scores.total, scores.total[rows])
    assert torch.equal(kept.completion_ids, rollout.completion_ids[rows])

    # The kept prompts are what building a batch of just those records gives (pixels, grids, ids).
    alone = build_prompt_batch(processor, [records[i] for i in keep], VIDEO)
    for key in ("pixel_values_videos", "video_grid_thw"):
        assert torch.equal(kept.prompt.inputs[key], alone.inputs[key]), key
    # Same tokens once left padding is ignored.
    for row in range(2):
        mine = kept.prompt.inputs["input_ids"][row][kept.prompt.inputs["attention_mask"][row].bool()]
        theirs = alone.inputs["input_ids"][row][alone.inputs["attention_mask"][row].bool()]
        assert torch.equal(mine, theirs)

    # And the training forward scores the kept completions exactly as in the full batch.
    with torch.no_grad():
        full = completion_logprobs(model, rollout)
        cut = completion_logprobs(model, kept)
    mask = kept.completion_mask.bool()
    assert torch.allclose(cut[mask], full[rows][mask], atol=1e-5)


def test_select_prompts_needs_something_to_keep(policy, synthetic_dir) -> None:
    _, processor = policy
    record = video_record("r", synthetic_dir / "videos" / "m_0001.mp4", "Which way?", mode="no_think")
    with pytest.raises(ValueError, match="at least one prompt"):
        select_prompts(build_prompt_batch(processor, [record], VIDEO), [])

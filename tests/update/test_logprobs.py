"""Completion log-probs of a grouped, left-padded batch equal those of each sequence alone."""

from __future__ import annotations

import pytest
import torch

from tests.helpers.records import video_record
from trainer.core.video_config import VideoConfig
from trainer.data.inputs import build_inputs
from trainer.model.loading import generation_kwargs, load_policy
from trainer.rollout.hf import build_prompt_batch, conversation, generate_rollouts
from trainer.update.logprobs import completion_logprobs, completion_logprobs_and_entropy

VIDEO = VideoConfig(fps=8.0, max_frames=8, min_pixels=3136, max_pixels=3136)


@pytest.fixture(scope="module")
def policy(tiny_model_dir):
    torch.manual_seed(0)
    return load_policy(tiny_model_dir)


def test_grouped_logprobs_match_single_sequence_forwards(policy, synthetic_dir) -> None:
    model, processor = policy
    # Different question lengths, so the shorter prompt is left-padded in the batch.
    videos = synthetic_dir / "videos"
    records = [
        video_record("a", videos / "m_0001.mp4", "Which way does the square move?"),
        video_record("b", videos / "m_0002.mp4", "Where does it go?"),
    ]
    prompt = build_prompt_batch(processor, records, VIDEO)
    assert (
        prompt.inputs["attention_mask"].sum(1).tolist()[0]
        != prompt.inputs["attention_mask"].sum(1).tolist()[1]
    )
    torch.manual_seed(1)
    rollout = generate_rollouts(model, processor, prompt, 3, generation_kwargs(processor, 10))
    assert rollout.completion_ids.shape[0] == 6
    batched, batched_entropy = completion_logprobs_and_entropy(model, rollout, temperature=0.7)
    assert torch.equal(batched, completion_logprobs(model, rollout, temperature=0.7))

    for row in range(6):
        record = records[row // 3]
        single = build_inputs(processor, [conversation(record, VIDEO)])
        n = int(rollout.completion_mask[row].sum())
        ids = torch.cat([single["input_ids"], rollout.completion_ids[row : row + 1, :n]], dim=1)
        types = torch.cat([single["mm_token_type_ids"], torch.zeros((1, n), dtype=torch.long)], dim=1)
        with torch.no_grad():
            logits = model(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                mm_token_type_ids=types,
                pixel_values_videos=single["pixel_values_videos"],
                video_grid_thw=single["video_grid_thw"],
                second_per_grid_ts=single["second_per_grid_ts"],
            ).logits[0, -n - 1 : -1]
        log_probs = torch.log_softmax(logits.float() / 0.7, -1)
        expected = log_probs.gather(-1, ids[0, -n:, None]).squeeze(-1)
        assert torch.allclose(batched[row, :n].detach(), expected, atol=1e-5), row
        # Entropy of the whole tempered distribution, computed independently with torch.distributions.
        entropy = torch.distributions.Categorical(logits=logits.float() / 0.7).entropy()
        assert torch.allclose(batched_entropy[row, :n].detach(), entropy, atol=1e-5), row


def test_gradients_reach_the_merger_through_the_shared_vision_features(policy, synthetic_dir) -> None:
    model, processor = policy
    options = {"A": "left", "B": "right"}
    records = [video_record("a", synthetic_dir / "videos" / "m_0003.mp4", "Which way?", options)]
    rollout = generate_rollouts(
        model, processor, build_prompt_batch(processor, records, VIDEO), 2, generation_kwargs(processor, 6)
    )
    model.zero_grad()
    completion_logprobs(model, rollout).sum().backward()
    merger_grad = sum(p.grad.abs().sum() for p in model.model.visual.merger.parameters())
    assert merger_grad > 0
    model.zero_grad()

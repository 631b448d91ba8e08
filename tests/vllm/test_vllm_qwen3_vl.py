"""Qwen3-VL through vLLM's CPU build (.venv-vllm), on the head_dim-64 tiny Qwen3-VL: vLLM sees the
prompt tokens transformers' processor made (frame timestamps included), a short GRPO run samples
with it within 1e-2 nats of the trainer, and weight syncs (DeepStack mergers included) land.

One engine for the module (~45 s to start on 2 shared cores). Measured in float32 on 2 CPU cores:
vLLM's log-probs of its own samples equal the policy's to max 3e-6 nats per token once the policy
leaves the suppressed vision tokens out of its softmax, as the sampler does.
"""

from __future__ import annotations

import copy

import pytest
import torch

from tests.helpers.records import OPTIONS
from tests.helpers.sampler_logprobs import max_abs_diff, policy_logprobs
from tests.helpers.vllm_runs import VLLM_MARKS, engine_setup, moved_parameters, short_grpo_run
from trainer.core.video_config import VideoConfig
from trainer.data.records import MCQRecord
from trainer.model.loading import generation_kwargs
from trainer.rollout.hf import build_prompt_batch
from trainer.rollout.vllm_engine import sampling_params

pytestmark = VLLM_MARKS

# 64 x 64 px frames: 2 x 2 visual tokens of 32 px per frame pair; 8 frames -> 4 timestamps.
VIDEO = VideoConfig(fps=8.0, max_frames=8, min_pixels=4096, max_pixels=4096)
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def setup(vllm_qwen3_vl_dir, synthetic_dir):
    return engine_setup(vllm_qwen3_vl_dir, synthetic_dir, VIDEO)


def test_vllm_sees_the_processors_prompt_tokens_timestamps_included(setup, synthetic_dir) -> None:
    model, processor, records, _, engine = setup
    image = MCQRecord(
        id="c", video=None, image=str(synthetic_dir / "images" / "m_0003.png"), question="Where?",
        options=dict(OPTIONS), answer="C", source="test", index=1, mode="no_think",
    )  # fmt: skip
    prompt = build_prompt_batch(processor, [*records, image], VIDEO)
    engine.load_weights(model)
    greedy = sampling_params(generation_kwargs(processor, 2, do_sample=False), 1, seed=None)
    vllm_prompts = engine.family.vllm_prompts(processor, prompt.inputs)
    outputs = engine.llm.generate(vllm_prompts, greedy, use_tqdm=False)
    ids, mask = prompt.inputs["input_ids"], prompt.inputs["attention_mask"]
    for row, out in enumerate(outputs):
        assert list(out.prompt_token_ids) == ids[row][mask[row].bool()].tolist(), row
    # The video rows carry one "<t seconds>" per frame pair (8 frames at 8 fps: 4), the image none.
    texts = [processor.tokenizer.decode(ids[row][mask[row].bool()]) for row in range(3)]
    assert [t.count(" seconds>") for t in texts] == [4, 4, 0]
    assert "<0.1 seconds>" in texts[0]


def test_a_short_grpo_run_samples_within_1e_2_nats_of_the_trainer(setup, vllm_qwen3_vl_dir) -> None:
    _, processor, records, _, engine = setup
    model, start, diffs = short_grpo_run(engine, processor, records, vllm_qwen3_vl_dir, 4096)
    assert all(d <= 1e-2 for d in diffs), diffs
    # The policy did move, DeepStack mergers included, so the later steps sampled updated weights.
    moved = moved_parameters(model, start)
    assert any("deepstack_merger_list" in n for n in moved) and any("language_model" in n for n in moved)


def test_weight_sync_changes_what_vllm_samples(setup) -> None:
    model, processor, _, prompt, engine = setup
    greedy = generation_kwargs(processor, 12, do_sample=False)
    engine.load_weights(model)
    before = engine(model, processor, prompt, 2, greedy)
    with torch.no_grad():
        for p in model.model.language_model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    unchanged = engine(model, processor, prompt, 2, greedy)  # the engine keeps its weights until told
    assert torch.equal(unchanged.completion_ids, before.completion_ids)
    engine.load_weights(model)
    after = engine(model, processor, prompt, 2, greedy)
    assert not torch.equal(after.completion_ids, before.completion_ids)
    diff = max_abs_diff(policy_logprobs(model, after, greedy), after.sampler_logprobs, after.completion_mask)
    assert diff < TOLERANCE, diff


def test_deepstack_mergers_reach_the_engine(setup) -> None:
    # Only the DeepStack mergers change: vLLM scores its samples as the changed policy does, and
    # the unchanged one would have scored them differently.
    model, processor, _, prompt, engine = setup
    kwargs = generation_kwargs(processor, 12)
    deepstack = model.model.visual.deepstack_merger_list
    old = copy.deepcopy(deepstack.state_dict())
    with torch.no_grad():
        for p in deepstack.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    engine.load_weights(model)
    rollout = engine(model, processor, prompt, 4, kwargs)
    mask, sampled = rollout.completion_mask, rollout.sampler_logprobs
    assert max_abs_diff(policy_logprobs(model, rollout, kwargs), sampled, mask) < TOLERANCE
    deepstack.load_state_dict(old)
    assert max_abs_diff(policy_logprobs(model, rollout, kwargs), sampled, mask) > 0.01

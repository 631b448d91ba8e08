"""Qwen3.5 through vLLM's CPU build (.venv-vllm), on the tiny Qwen3.5 variant whose linear-attention
heads are 64 wide (vLLM's CPU Gated DeltaNet kernel refuses the embedded model's 16) and in bfloat16
(the only dtype that kernel takes): vLLM sees the prompt tokens transformers' processor made (frame
timestamps included), a think-mode rollout's texts start with the "<think>\\n" its prompt opened, a
short GRPO run samples with it within 1e-2 nats of the trainer, and weight syncs reach the
linear-attention layers under their checkpoint names (vLLM fuses them: in_proj_qkvz, in_proj_ba).

One engine for the module (~20 s to start on 2 shared cores). Both sides in bfloat16 (bfloat16
kernels on each side, not the same ones), measured on 2 CPU cores: the 3-step GRPO run logs
``rollout/sampler_logp_diff`` 0.001 to 0.006; after the weight-sync perturbation vLLM's log-probs of
its samples are the changed policy's to mean 0.006 nats per token (max 0.03), and the unchanged
policy's are 1.9 nats away. Asserted: mean < MEAN_TOLERANCE.
"""

from __future__ import annotations

import copy

import pytest
import torch

from tests.helpers.records import OPTIONS, video_record
from tests.helpers.sampler_logprobs import policy_logprobs
from tests.helpers.vllm_runs import VLLM_MARKS, engine_setup, moved_parameters, short_grpo_run
from trainer.core.video_config import VideoConfig
from trainer.data.records import MCQRecord
from trainer.model.loading import generation_kwargs
from trainer.rollout.hf import build_prompt_batch, completion_texts
from trainer.rollout.vllm_engine import sampling_params

pytestmark = VLLM_MARKS

# 64 x 64 px frames: 2 x 2 visual tokens of 32 px per frame pair; 8 frames -> 4 timestamps.
VIDEO = VideoConfig(fps=8.0, max_frames=8, min_pixels=4096, max_pixels=4096)
MEAN_TOLERANCE = 2e-2


def mean_abs_diff(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    return float((a - b).abs()[mask.bool()].mean())


@pytest.fixture(scope="module")
def setup(vllm_qwen3_5_dir, synthetic_dir):
    return engine_setup(vllm_qwen3_5_dir, synthetic_dir, VIDEO, bf16=True)


def test_vllm_sees_the_processors_prompt_tokens_timestamps_included(setup, synthetic_dir) -> None:
    model, processor, records, _, engine = setup
    image = MCQRecord(
        id="c", video=None, image=str(synthetic_dir / "images" / "m_0003.png"), question="Where?",
        options=dict(OPTIONS), answer="C", source="test", index=1, mode="no_think",
    )  # fmt: skip
    think = video_record("d", records[0].video, "Which way?")
    prompt = build_prompt_batch(processor, [*records, image, think], VIDEO)
    engine.load_weights(model)
    greedy = sampling_params(generation_kwargs(processor, 2, do_sample=False), 1, seed=None)
    vllm_prompts = engine.family.vllm_prompts(processor, prompt.inputs)
    outputs = engine.llm.generate(vllm_prompts, greedy, use_tqdm=False)
    ids, mask = prompt.inputs["input_ids"], prompt.inputs["attention_mask"]
    for row, out in enumerate(outputs):
        assert list(out.prompt_token_ids) == ids[row][mask[row].bool()].tolist(), row
    texts = [processor.tokenizer.decode(ids[row][mask[row].bool()]) for row in range(4)]
    assert [t.count(" seconds>") for t in texts] == [4, 4, 0, 4]
    assert texts[3].endswith("<think>\n") and not texts[0].endswith("<think>\n")


def test_a_think_rollouts_texts_start_with_the_block_its_prompt_opened(setup) -> None:
    model, processor, records, _, engine = setup
    think = [video_record(r.id, r.video, r.question, answer=r.answer) for r in records]
    prompt = build_prompt_batch(processor, think, VIDEO)
    assert prompt.openings == ["<think>\n", "<think>\n"]
    engine.load_weights(model)
    rollout = engine(model, processor, prompt, 2, generation_kwargs(processor, 12))
    decoded = processor.tokenizer.batch_decode(
        [ids[m.bool()] for ids, m in zip(rollout.completion_ids, rollout.completion_mask, strict=True)],
        skip_special_tokens=True,
    )
    assert rollout.texts == completion_texts(prompt, 2, decoded)
    assert all(t.startswith("<think>\n") for t in rollout.texts), rollout.texts
    assert not any(d.startswith("<think>") for d in decoded)  # the prompt's, not sampled


def test_a_short_grpo_run_samples_within_1e_2_nats_of_the_trainer(setup, vllm_qwen3_5_dir) -> None:
    _, processor, records, _, engine = setup
    model, start, diffs = short_grpo_run(engine, processor, records, vllm_qwen3_5_dir, 4096, bf16=True)
    assert all(d <= 1e-2 for d in diffs), diffs
    # The policy did move, linear-attention layers included, so later steps sampled updated weights.
    moved = moved_parameters(model, start)
    assert any("linear_attn" in n for n in moved) and any("self_attn" in n for n in moved)


def test_weight_sync_reaches_the_linear_attention_layers(setup) -> None:
    # Only the Gated DeltaNet layers change (projections, convolution, decay): vLLM scores its
    # samples as the changed policy does, and the unchanged one would have scored them differently.
    model, processor, _, prompt, engine = setup
    kwargs = generation_kwargs(processor, 12)
    linear = [
        layer.linear_attn for layer in model.model.language_model.layers if hasattr(layer, "linear_attn")
    ]
    old = [copy.deepcopy(m.state_dict()) for m in linear]
    with torch.no_grad():
        for p in (p for m in linear for p in m.parameters()):
            p.add_(torch.randn_like(p) * 0.5)
    engine.load_weights(model)
    rollout = engine(model, processor, prompt, 4, kwargs)
    mask, sampled = rollout.completion_mask, rollout.sampler_logprobs
    assert mean_abs_diff(policy_logprobs(model, rollout, kwargs), sampled, mask) < MEAN_TOLERANCE
    for m, state in zip(linear, old, strict=True):
        m.load_state_dict(state)
    assert mean_abs_diff(policy_logprobs(model, rollout, kwargs), sampled, mask) > 0.5

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
from trainer.core import metrics_keys as mk
from trainer.core.config import build_config
from trainer.core.video_config import VideoConfig
from trainer.data.records import MCQRecord
from trainer.model.loading import generation_kwargs, load_policy
from trainer.rollout.hf import build_prompt_batch, completion_texts
from trainer.rollout.vllm_engine import sampling_params

pytestmark = [
    pytest.mark.vllm,
    # vLLM 0.32's own imports and engine start use deprecated torch/transformers APIs.
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

# 64 x 64 px frames: 2 x 2 visual tokens of 32 px per frame pair; 8 frames -> 4 timestamps.
VIDEO = VideoConfig(fps=8.0, max_frames=8, min_pixels=4096, max_pixels=4096)
MEAN_TOLERANCE = 2e-2


def mean_abs_diff(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    return float((a - b).abs()[mask.bool()].mean())


@pytest.fixture(scope="module")
def setup(vllm_qwen3_5_dir, synthetic_dir):
    from trainer.rollout.vllm_engine import VLLMRollouts

    torch.manual_seed(0)
    model, processor = load_policy(vllm_qwen3_5_dir, dtype="bf16")
    videos = synthetic_dir / "videos"
    records = [
        video_record("a", videos / "m_0001.mp4", "Which way does the square move?", mode="no_think"),
        video_record("b", videos / "m_0002.mp4", "Where does it go?", answer="B", mode="no_think"),
    ]
    prompt = build_prompt_batch(processor, records, VIDEO)
    engine = VLLMRollouts(
        str(vllm_qwen3_5_dir), processor, gpu_memory_utilization=0.01, seed=0, dtype="bfloat16"
    )
    return model, processor, records, prompt, engine


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
    from accelerate import Accelerator

    from trainer.model.trainable import set_trainable, trainable_parameters
    from trainer.step.context import StepContext
    from trainer.step.grpo_step import grpo_step

    _, processor, records, _, engine = setup
    cfg = build_config(
        {
            "model_name_or_path": str(vllm_qwen3_5_dir), "rollout_backend": "vllm", "bf16": True,
            "tune_mm_vision": True, "tune_mm_mlp": True, "fps": 8.0, "max_frames": 8,
            "min_pixels": 4096, "max_pixels": 4096, "grpo_sample_size": 4, "generation_max_length": 12,
            "grpo_beta": 0.0, "learning_rate": 1e-3,
        }
    )  # fmt: skip
    torch.manual_seed(0)
    model, _ = load_policy(vllm_qwen3_5_dir, dtype="bf16")
    model = set_trainable(model, cfg.model).train()
    start = copy.deepcopy(model.state_dict())
    optimizer = torch.optim.AdamW(trainable_parameters(model), lr=cfg.optim.learning_rate)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    kwargs = generation_kwargs(processor, 12)
    ctx = StepContext(Accelerator(cpu=True), model, None, processor, cfg, optimizer, scheduler, kwargs)
    ctx.sampler = engine
    diffs = []
    for _ in range(3):
        engine.load_weights(model)  # as the loop does after every optimiser step
        metrics, _ = grpo_step(ctx, [records])
        diffs.append(metrics[mk.SAMPLER_LOGP_DIFF])
    assert all(d <= 1e-2 for d in diffs), diffs
    # The policy did move, linear-attention layers included, so later steps sampled updated weights.
    moved = {n for n, p in model.state_dict().items() if not torch.equal(p, start[n])}
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

"""The shared-prefix path (each prompt once per group) equals the per-sample path exactly.

fp32: per-token log-probs and the GRPO loss to 1e-5, every trainable parameter's gradient (vision
tower, merger, language model, or LoRA adapters) to 1e-4 relative error per tensor, for video, image
and text-only prompts of different lengths (left padding) in one batch, completions of different
lengths (right padding), G = 1, 4, 8, LoRA and gradient checkpointing; greedy rollouts give
identical tokens; and the counts show one vision pass and one prefill per question. Each comparison
also checks that the shared-prefix path really ran (it falls back to per-sample with only a warning).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import torch

from tests.helpers.exactness import assert_tensors_close, shared_prefix_calls
from trainer.core.config import ModelConfig
from trainer.core.video_config import VideoConfig
from trainer.data.inputs import build_inputs
from trainer.data.prompts import chat_messages
from trainer.model.counts import count_forwards
from trainer.model.loading import generation_kwargs, load_policy
from trainer.model.trainable import set_trainable
from trainer.rollout.decode import lean_decoding_supported
from trainer.rollout.hf import PromptBatch, RolloutBatch, build_prompt_batch, generate_rollouts
from trainer.score.dynamic_sampling import select_prompts
from trainer.update import grpo
from trainer.update.logprobs import completion_logprobs, completion_logprobs_and_entropy

VIDEO = VideoConfig(fps=8.0, max_frames=8, min_pixels=3136, max_pixels=3136)
OPTIONS = {"A": "left", "B": "right", "C": "up", "D": "down"}
# Different lengths, so the shorter prompts are left-padded in the batch.
QUESTIONS = ("Which way does the square move across the frame?", "Where does it go?")
TOL = {"rtol": 1e-5, "atol": 1e-5}
# Gradients, per tensor: ||shared - per-sample|| / ||per-sample||. Measured at most 9.5e-6 (the image
# case's first vision norm, a gradient of norm 2e-5: the elementwise atol 1e-5 used before passed
# it even all zeros); 1e-6 to 3e-6 elsewhere.
GRAD_REL = 1e-4


@dataclass
class Rec:
    id: str
    question: str
    options: dict
    video: str | None = None
    image: str | None = None
    answer: str = "A"
    mode: str = "think"


def prompt_batch(processor, synthetic_dir, media: str, video_config: VideoConfig = VIDEO) -> PromptBatch:
    records = []
    for i, question in enumerate(QUESTIONS):
        name = f"m_000{i + 1}"
        video = str(synthetic_dir / "videos" / f"{name}.mp4") if media == "video" else None
        image = str(synthetic_dir / "images" / f"{name}.png") if media == "image" else None
        records.append(Rec(name, question, OPTIONS, video=video, image=image))
    if media != "text":
        prompt = build_prompt_batch(processor, records, video_config)
    else:
        convs = [chat_messages(r.question, r.options, r.mode) for r in records]
        prompt = PromptBatch(records=records, inputs=dict(build_inputs(processor, convs)))
    lengths = prompt.inputs["attention_mask"].sum(1)
    assert lengths[0] != lengths[1]  # really left-padded
    return prompt


def random_rollout(prompt: PromptBatch, group_size: int, seed: int, max_len: int = 9) -> RolloutBatch:
    """Completions of random ordinary tokens with different lengths (the rest padding)."""
    gen = torch.Generator().manual_seed(seed)
    rows = prompt.size * group_size
    ids = torch.randint(0, 400, (rows, max_len), generator=gen)
    lengths = torch.randint(1, max_len + 1, (rows,), generator=gen)
    lengths[0] = max_len
    mask = (torch.arange(max_len)[None, :] < lengths[:, None]).long()
    ids = torch.where(mask.bool(), ids, torch.full_like(ids, 459))
    return RolloutBatch(prompt, group_size, ids, mask, [""] * rows, 0.0)


def fresh_policy(tiny_model_dir, lora: bool = False, checkpointing: bool = False):
    model, processor = load_policy(tiny_model_dir)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    # Everything trains (vision tower too), so every gradient path through the prompt is checked.
    cfg = ModelConfig(tune_mm_vision=True, lora_enable=lora, lora_dropout=0.0)
    model = set_trainable(model, cfg)
    return model.train(), processor


def loss_and_grads(model, rollout: RolloutBatch, shared: bool, logp_ref: torch.Tensor, adv: torch.Tensor):
    model.zero_grad(set_to_none=True)
    with shared_prefix_calls() as calls:
        logp, entropy = completion_logprobs_and_entropy(model, rollout, 0.7, shared_prefix=shared)
    # The path asked for is the one that ran (the library falls back to per-sample with a warning).
    assert calls == ({"shared_prefix_logits": 1} if shared else {}), calls
    loss, _ = grpo.grpo_loss(
        logp, None, logp_ref, adv, rollout.completion_mask, beta=0.04, entropy=entropy, entropy_coeff=0.01
    )
    loss.backward()
    # None: no gradient reached it (the vision tower on text-only prompts), the same on both paths.
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    return logp.detach(), entropy.detach(), loss.detach(), grads


def assert_both_paths_agree(model: Any, rollout: Any, logp_ref: torch.Tensor, adv: torch.Tensor) -> dict:
    """Log-probs, entropy, loss and every gradient of the shared-prefix path equal the per-sample
    path's (to float rounding); returns the shared path's gradients by parameter name."""
    logp_a, ent_a, loss_a, grads_a = loss_and_grads(model, rollout, False, logp_ref, adv)
    logp_b, ent_b, loss_b, grads_b = loss_and_grads(model, rollout, True, logp_ref, adv)
    mask = rollout.completion_mask.bool()
    torch.testing.assert_close(logp_b[mask], logp_a[mask], **TOL)
    torch.testing.assert_close(ent_b[mask], ent_a[mask], **TOL)
    torch.testing.assert_close(loss_b, loss_a, **TOL)
    assert_tensors_close(grads_b, grads_a, GRAD_REL)
    return grads_b


@pytest.mark.parametrize(
    ("media", "group_size", "lora", "checkpointing"),
    [
        ("video", 1, False, False),
        ("video", 4, False, False),
        ("video", 8, False, False),
        ("image", 4, False, False),
        ("text", 4, False, False),
        ("video", 4, True, False),
        ("video", 4, False, True),
        ("image", 8, True, True),
    ],
)
def test_logprobs_loss_and_every_gradient_match_the_per_sample_path(
    tiny_model_dir, synthetic_dir, media: str, group_size: int, lora: bool, checkpointing: bool
) -> None:
    torch.manual_seed(0)
    model, processor = fresh_policy(tiny_model_dir, lora, checkpointing)
    rollout = random_rollout(prompt_batch(processor, synthetic_dir, media), group_size, seed=group_size)
    rows = rollout.completion_ids.shape[0]
    with torch.no_grad():
        logp_ref = completion_logprobs(model, rollout, 0.7, shared_prefix=False) + 0.05
    adv = torch.linspace(-1.0, 1.0, rows)

    grads_b = assert_both_paths_agree(model, rollout, logp_ref, adv)
    # The prompt's computation gets gradient on the shared path (LoRA: the adapters; else the vision tower).
    touched = [n for n, g in grads_b.items() if g is not None and g.abs().sum() > 0]
    if lora:
        assert any("lora_" in n for n in touched)
    elif media != "text":
        assert any(".visual.blocks." in n for n in touched)
    if media != "text" and not lora:
        assert any("merger" in n for n in touched)


@pytest.mark.parametrize(
    ("media", "prompts", "attn"),
    [
        ("video", 2, "sdpa"),
        ("image", 2, "sdpa"),
        ("text", 2, "sdpa"),
        ("video", 1, "sdpa"),
        ("video", 2, "eager"),
    ],
)
def test_greedy_rollouts_are_identical_on_both_paths(
    tiny_model_dir, synthetic_dir, media: str, prompts: int, attn: str
) -> None:
    torch.manual_seed(0)
    model, processor = load_policy(tiny_model_dir, attn_implementation=attn)
    prompt = prompt_batch(processor, synthetic_dir, media)
    if prompts == 1:  # no padding at all (transformers then drops the attention mask)
        prompt = select_prompts(prompt, [0])
        assert bool(prompt.inputs["attention_mask"].all())
    greedy = generation_kwargs(processor, 16, do_sample=False)
    with shared_prefix_calls() as per_sample_calls:
        one = generate_rollouts(model, processor, prompt, 1, greedy, shared_prefix=False)
    with shared_prefix_calls() as shared_calls:
        one_shared = generate_rollouts(model, processor, prompt, 1, greedy, shared_prefix=True)
        # transformers refuses num_return_sequences > 1 for greedy: G greedy samples are G copies.
        four = generate_rollouts(model, processor, prompt, 4, greedy, shared_prefix=True)
    # Each path is the one asked for: the lean decode loop on one prefill per prompt, or generate.
    assert (per_sample_calls, shared_calls) == ({}, {"decode_shared_prefix": 2})
    assert torch.equal(one_shared.completion_ids, one.completion_ids)
    assert torch.equal(four.completion_ids, one.completion_ids.repeat_interleave(4, 0))
    assert four.texts == [t for t in one.texts for _ in range(4)]
    # Settings outside the lean decode loop (trainer.rollout.decode) continue the shared cache with generate.
    assert not lean_decoding_supported({**greedy, "synced_gpus": False})
    assert lean_decoding_supported(greedy, model)
    model.generation_config.min_p = 0.1  # a checkpoint default the loop does not implement
    assert not lean_decoding_supported(greedy, model)
    model.generation_config.min_p = None
    with shared_prefix_calls() as calls:
        via_generate = generate_rollouts(model, processor, prompt, 4, {**greedy, "synced_gpus": False})
    assert calls == {"generate_from_shared_prefix": 1}
    assert torch.equal(via_generate.completion_ids, four.completion_ids)


@pytest.mark.parametrize(("temperature", "top_p", "top_k", "min_new"), [(1.3, 1.0, 0, 0), (0.9, 0.8, 12, 10)])
def test_sampled_rollouts_draw_the_same_tokens_from_the_same_seed(
    tiny_model_dir, synthetic_dir, temperature: float, top_p: float, top_k: int, min_new: int
) -> None:
    """The decode loop's processors (suppressed tokens, min_new_tokens, temperature, top-k, top-p)
    and sampling give generate's tokens from the same seed."""
    model, processor = load_policy(tiny_model_dir)
    prompt = prompt_batch(processor, synthetic_dir, "video")
    kwargs = generation_kwargs(processor, 16, temperature=temperature, top_p=top_p, top_k=top_k)
    if min_new:
        kwargs["min_new_tokens"] = min_new
    assert lean_decoding_supported(kwargs)
    torch.manual_seed(5)
    with shared_prefix_calls() as per_sample_calls:
        per_sample = generate_rollouts(model, processor, prompt, 4, kwargs, shared_prefix=False)
    torch.manual_seed(5)
    with shared_prefix_calls() as shared_calls:
        shared = generate_rollouts(model, processor, prompt, 4, kwargs, shared_prefix=True)
    assert (per_sample_calls, shared_calls) == ({}, {"decode_shared_prefix": 1})
    assert torch.equal(shared.completion_ids, per_sample.completion_ids)
    assert len(set(shared.texts)) > 1  # really sampled
    assert int(shared.lengths.min()) >= min_new


@pytest.mark.parametrize("group_size", [1, 4, 8])
def test_counts_show_one_vision_pass_and_one_prefill_per_question(
    tiny_model_dir, synthetic_dir, group_size: int
) -> None:
    model, processor = load_policy(tiny_model_dir)
    prompt = prompt_batch(processor, synthetic_dir, "video")
    b, p = prompt.size, prompt.length
    kwargs = generation_kwargs(processor, 6)
    shared = generate_rollouts(model, processor, prompt, group_size, kwargs, shared_prefix=True)
    per_sample = generate_rollouts(model, processor, prompt, group_size, kwargs, shared_prefix=False)
    # Vision tower: once per question on both paths (transformers 5 encodes pixels before expanding).
    assert shared.vision_items == per_sample.vision_items == b
    # Prefill: the B prompts once (the lean decode loop samples every row's first token from it).
    assert shared.prefill_tokens == b * p
    # Through generate (settings the lean loop leaves to it): all but the last prompt token once,
    # then each row's last prompt token.
    via_generate = generate_rollouts(model, processor, prompt, group_size, {**kwargs, "synced_gpus": False})
    assert via_generate.prefill_tokens == b * (p - 1) + b * group_size
    assert per_sample.prefill_tokens == b * group_size * p

    rollout = random_rollout(prompt, group_size, seed=1)
    t = rollout.completion_ids.shape[1]
    with torch.no_grad(), count_forwards(model) as on_shared:
        completion_logprobs(model, rollout, shared_prefix=True)
    with torch.no_grad(), count_forwards(model) as on_per_sample:
        completion_logprobs(model, rollout, shared_prefix=False)
    assert on_shared.vision_items == on_per_sample.vision_items == b
    # Training forward: prompt once per question + the completions (the last token predicts nothing).
    assert on_shared.lm_tokens == b * p + b * group_size * (t - 1)
    assert on_per_sample.lm_tokens == b * group_size * (p + t)


def test_attention_backends_without_shared_cache_support_fall_back_with_a_warning(
    tiny_model_dir, caplog
) -> None:
    from trainer.model import prefix

    model, _ = load_policy(tiny_model_dir)
    assert prefix.unsupported_reason(model) is None and prefix.use_shared_prefix(model, True)
    assert not prefix.use_shared_prefix(model, False)
    text = model.config.text_config
    text._attn_implementation = "flash_attention_2"  # what loading with attn_implementation sets
    try:
        with caplog.at_level("WARNING", logger="trainer.model.prefix"):
            assert not prefix.use_shared_prefix(model, True)
    finally:
        text._attn_implementation = "sdpa"
    assert "falling back to the per-sample path for attn_implementation 'flash_attention_2'" in caplog.text

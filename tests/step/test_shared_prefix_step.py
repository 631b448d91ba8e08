"""A whole GRPO step (T-GRPO on, reference KL, two updates per generation) gives the same samples,
metrics and parameter updates with ``shared_prefix`` on and off, and its ``compute/*`` metrics
count one vision pass and one prefill per question."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import pytest
import torch

from tests.helpers.exactness import assert_tensors_close, shared_prefix_calls
from trainer.core import metrics_keys as mk
from trainer.core.config import build_config
from trainer.model.loading import generation_kwargs, load_policy
from trainer.model.trainable import set_trainable, trainable_parameters
from trainer.step.context import StepContext
from trainer.step.grpo_step import grpo_step

# Parameter updates, per tensor: ||shared - per-sample|| / ||per-sample||; measured at most 2.7e-6.
UPDATE_REL = 1e-4
QUESTIONS = ("Which way does the square move across the frame?", "Where does it go?")


@dataclass
class Rec:
    id: str
    question: str
    video: str
    options: dict
    answer: str = "A"
    image: None = None
    mode: str = "think"
    location: str = ""


def run_step(tiny_model_dir, synthetic_dir, shared: bool, group_size: int = 4):
    cfg = build_config(
        {
            "model_name_or_path": str(tiny_model_dir),
            "shared_prefix": shared,
            "tune_mm_vision": True,
            "fps": 8.0,
            "max_frames": 8,
            "min_pixels": 3136,
            "max_pixels": 3136,
            "grpo_sample_size": group_size,
            "generation_max_length": 8,
            "temperature": 1.3,
            "grpo_beta": 0.04,
            "num_iterations": 2,
            "temporal_grpo": True,
            # A gradient even when every group's rewards tie (zero advantages; KL 0 at the start):
            # without it both paths' updates were all zero, and trivially equal.
            "entropy_coeff": 1.0,
            "max_grad_norm": 0.0,
        }
    )
    from accelerate import Accelerator

    torch.manual_seed(0)
    model, processor = load_policy(tiny_model_dir)
    ref_model = copy.deepcopy(model).eval().requires_grad_(False)
    model = set_trainable(model, cfg.model).train()
    # SGD: the update is the gradient itself, so equal updates mean equal gradients (Adam's
    # normalisation would blow float noise on near-zero gradients up to +-lr).
    optimizer = torch.optim.SGD(trainable_parameters(model), lr=0.5)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    sample_kwargs = generation_kwargs(processor, 8, temperature=1.3)
    ctx = StepContext(
        Accelerator(cpu=True), model, ref_model, processor, cfg, optimizer, scheduler, sample_kwargs
    )
    options = {"A": "left", "B": "right", "C": "up", "D": "down"}
    records = [
        Rec(f"m_000{i + 1}", q, str(synthetic_dir / "videos" / f"m_000{i + 1}.mp4"), options)
        for i, q in enumerate(QUESTIONS)
    ]
    start = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    torch.manual_seed(1)
    with shared_prefix_calls() as calls:
        metrics, micro = grpo_step(ctx, [records])
    updates = {n: p.detach() - start[n] for n, p in model.named_parameters() if p.requires_grad}
    return metrics, micro, updates, calls


@pytest.mark.slow
def test_a_step_is_the_same_on_both_paths_and_counts_the_prompt_once(tiny_model_dir, synthetic_dir) -> None:
    per_metrics, per_micro, per_updates, per_calls = run_step(tiny_model_dir, synthetic_dir, shared=False)
    metrics, micro, updates, calls = run_step(tiny_model_dir, synthetic_dir, shared=True)
    # Each run took the path it asked for (the library falls back to per-sample with only a warning):
    # ordered and shuffled sampling in the lean decode loop; the reference, old-policy and two
    # training forwards with the prompt once per group.
    assert per_calls == {}
    assert calls == {"decode_shared_prefix": 2, "shared_prefix_logits": 4}

    [mb], [per_mb] = micro, per_micro
    assert torch.equal(mb.rollout.completion_ids, per_mb.rollout.completion_ids)
    assert mb.rollout.texts == per_mb.rollout.texts
    for key in (mk.TOTAL_REWARD, mk.TEMPORAL_ACC_SHUFFLED, mk.ADVANTAGE):
        assert metrics[key] == per_metrics[key], key
    for key in (mk.LOSS, mk.KL_DIV, mk.POLICY_SEQ_LOG_PROB, mk.ENTROPY, mk.CLIP_RATIO):
        assert metrics[key] == pytest.approx(per_metrics[key], rel=1e-5, abs=1e-5), key
    # Real tokens only: after EOS the two paths give padding different positions (both unused).
    real = mb.rollout.completion_mask.bool()
    assert not real.all()  # some completions ended early, so padding is exercised
    torch.testing.assert_close(mb.logp_ref[real], per_mb.logp_ref[real], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mb.logp_old[real], per_mb.logp_old[real], rtol=1e-5, atol=1e-5)
    # Two SGD updates from the same start: every trainable parameter moves, and the same way on both
    # paths, tensor by tensor (an absolute 1e-5 on the weights passed tensors that barely move).
    assert all(float(u.norm()) > 0 for u in per_updates.values())
    assert_tensors_close(updates, per_updates, UPDATE_REL)

    b, g = mb.rollout.prompt.size, mb.rollout.group_size
    p, t = mb.rollout.prompt.length, mb.rollout.completion_ids.shape[1]
    # Vision passes per question: ordered + shuffled sampling, old-policy and reference log-probs,
    # two training forwards - never times G.
    assert metrics[mk.VISION_ITEMS] == per_metrics[mk.VISION_ITEMS] == 6 * b
    # Ordered and shuffled sampling: each prompt prefilled once.
    assert metrics[mk.PREFILL_TOKENS] == 2 * b * p
    assert per_metrics[mk.PREFILL_TOKENS] == 2 * b * g * p
    # Two training forwards: the prompt once per question, the completions on top.
    assert metrics[mk.TRAIN_FORWARD_TOKENS] == 2 * (b * p + b * g * (t - 1))
    assert per_metrics[mk.TRAIN_FORWARD_TOKENS] == 2 * b * g * (p + t)

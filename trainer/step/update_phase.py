"""The update phase of a GRPO step: ``num_iterations`` policy-gradient updates over the micro-batches.

Each micro-batch's GRPO loss (``trainer.update.grpo.grpo_loss``) is back-propagated with gradient sync
only on the last one (DDP ``no_sync``, DeepSpeed's accumulation flag), then one optimiser step.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from typing import Any

import torch

from trainer.step.context import MicroBatch, StepContext, UpdatePhase
from trainer.update import grpo
from trainer.update.logprobs import completion_logprobs_and_entropy
from trainer.update.sampler_mismatch import sampler_correction


def update_phase(ctx: StepContext, micro: list[MicroBatch]) -> UpdatePhase:
    """``num_iterations`` updates, each over every micro-batch; returns the mean loss statistics."""
    g = ctx.cfg.grpo
    start = time.perf_counter()
    total_groups = sum(mb.rollout.prompt.size for mb in micro)
    stats_sum: dict[str, float] = {}
    n_updates = 0
    grad_norm = 0.0
    for _ in range(g.num_iterations):
        for i, mb in enumerate(micro):
            last = i == len(micro) - 1
            with nullcontext() if last else ctx.accelerator.no_sync(ctx.model):
                loss, stats = micro_batch_loss(ctx, mb)
                # Each micro-batch weighs as many groups as it holds (dynamic sampling makes them differ).
                scaled = (
                    loss / len(micro)
                    if not g.dynamic_sampling
                    else loss * mb.rollout.prompt.size / total_groups
                )
                backward(ctx.accelerator, scaled, last)
            for key, value in stats.items():
                stats_sum[key] = stats_sum.get(key, 0.0) + float(value)
            stats_sum["loss"] = stats_sum.get("loss", 0.0) + float(loss.detach())
            n_updates += 1
        if ctx.cfg.optim.max_grad_norm > 0:
            grad_norm = float(
                ctx.accelerator.clip_grad_norm_(ctx.model.parameters(), ctx.cfg.optim.max_grad_norm)
            )
        ctx.optimizer.step()
        ctx.scheduler.step()
        ctx.optimizer.zero_grad(set_to_none=True)
    means = {key: value / n_updates for key, value in stats_sum.items()}
    return UpdatePhase(means=means, grad_norm=grad_norm, seconds=time.perf_counter() - start)


def micro_batch_loss(ctx: StepContext, mb: MicroBatch) -> tuple[torch.Tensor, dict[str, Any]]:
    """The GRPO loss of one micro-batch under the current policy (with grad) and its statistics."""
    g = ctx.cfg.grpo
    logp, entropy = completion_logprobs_and_entropy(
        ctx.model, mb.rollout, g.temperature, ctx.cfg.model.shared_prefix
    )
    mask = mb.rollout.completion_mask.to(logp.device)
    # Another engine sampled (vLLM): measure the mismatch, and correct the advantages by truncated
    # importance sampling when the cap is on; a no-op for transformers' own samples.
    advantages, mismatch = sampler_correction(
        mb.advantages.to(logp.device), logp, mb.logp_old, mb.rollout.sampler_logprobs, mask,
        g.vllm_importance_sampling_cap,
    )  # fmt: skip
    loss, stats = grpo.grpo_loss(
        logp,
        mb.logp_old.to(logp.device) if mb.logp_old is not None else None,
        mb.logp_ref.to(logp.device) if mb.logp_ref is not None else None,
        advantages,
        mask,
        alpha=g.grpo_alpha,
        beta=g.grpo_beta,
        eps_low=g.epsilon,
        eps_high=g.epsilon_high or g.epsilon,
        aggregation=g.loss_type,
        max_completion_length=max(g.generation_max_length, mask.shape[1]),
        entropy=entropy,
        entropy_coeff=g.entropy_coeff,
    )
    return loss, {**stats, **mismatch}


def backward(accelerator: Any, loss: torch.Tensor, last: bool) -> None:
    """``accelerator.backward``, telling DeepSpeed which micro-batch ends the step.

    Outside ``accelerator.accumulate`` accelerate's ``sync_gradients`` stays True, and under DeepSpeed
    every backward then runs ``engine.step()`` (an optimiser update per micro-batch). A step here has
    a variable number of micro-batches (gradient accumulation, dynamic sampling), so the earlier ones
    are marked as accumulation only; DDP and FSDP get the same from ``no_sync``.
    """
    if last or accelerator.distributed_type.name != "DEEPSPEED":
        accelerator.backward(loss)
        return
    state = accelerator.gradient_state
    state._set_sync_gradients(False)  # no public setter; accumulate() uses the same call
    try:
        accelerator.backward(loss)
    finally:
        state._set_sync_gradients(True)

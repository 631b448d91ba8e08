"""One GRPO step, in three parts with one job each, sharing a :class:`StepContext`.

``grpo_step`` runs them in order: :func:`trainer.step_rollout.rollout_phase` samples and scores a
group per question (dynamic sampling included) and computes the no-grad log-probs the loss needs;
:func:`trainer.step_update.update_phase` runs ``num_iterations`` policy updates over the micro-batches;
:func:`step_metrics` turns both into the step's metrics, averaged over processes.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from trainer import grpo
from trainer import metrics_keys as mk
from trainer.config import TrainConfig
from trainer.data.video import DecodeCache
from trainer.rollout import RolloutBatch
from trainer.scoring import Scores
from trainer.step_counts import ForwardCounts, count_forwards


@dataclass
class StepContext:
    """What every part of a step reads: the models, optimiser and settings of the run."""

    accelerator: Any
    model: Any  # the prepared (possibly DDP-wrapped) policy the update differentiates
    ref_model: Any  # frozen reference, or None (grpo_beta 0, or LoRA: the base model is the reference)
    processor: Any
    cfg: TrainConfig
    optimizer: Any
    scheduler: Any
    sample_kwargs: dict[str, Any]
    cache: DecodeCache | None = None
    # This process's share of the next questions in the data order (dynamic sampling's refills).
    refill: Callable[[], list[Any]] | None = None
    # A sampler other than transformers' generate (rollout_backend vllm: trainer.rollout_vllm), called
    # like generate_rollouts without the shared-prefix switch; None: generate_rollouts.
    sampler: Callable[..., RolloutBatch] | None = None

    @functools.cached_property
    def policy(self) -> Any:
        """The unwrapped policy: what generates and computes no-grad log-probs. Unwrapped once:
        ``unwrap_model`` inspects signatures and probes for DeepSpeed, ~3 ms a call (4 a step)."""
        return self.accelerator.unwrap_model(self.model)


@dataclass
class MicroBatch:
    """One micro-batch of rollouts with everything the update needs."""

    rollout: RolloutBatch
    scores: Scores
    advantages: torch.Tensor  # (B*G,), already scaled by grpo_alpha inside the loss
    logp_old: torch.Tensor | None  # (B*G, T) when num_iterations > 1
    logp_ref: torch.Tensor | None  # (B*G, T) when grpo_beta > 0


@dataclass
class RolloutPhase:
    """What the rollout phase produced: the micro-batches to train on and how it got them."""

    micro: list[MicroBatch] = field(default_factory=list)
    sampled_scores: list[Scores] = field(default_factory=list)  # every round's, before dropping groups
    temporal_stats: list[dict[str, float]] = field(default_factory=list)
    rounds: int = 0
    generate_s: float = 0.0
    score_s: float = 0.0
    prefill_tokens: int = 0  # prompt tokens the language model prefilled while sampling
    sampling_vision_items: int = 0  # images/videos the vision tower encoded while sampling
    forwards: ForwardCounts = field(default_factory=ForwardCounts)  # every model forward of the phase


@dataclass
class UpdatePhase:
    """The update phase's loss statistics, averaged over every micro-batch update."""

    means: dict[str, float]  # loss, kl, clip_ratio, entropy, policy_seq_log_prob
    grad_norm: float
    seconds: float
    forwards: ForwardCounts = field(default_factory=ForwardCounts)  # the training forwards


def grpo_step(ctx: StepContext, micro_records: list[list[Any]]) -> tuple[dict[str, float], list[MicroBatch]]:
    """One global step: rollouts for every micro-batch, then ``num_iterations`` policy updates.

    With ``dynamic_sampling``, groups whose rewards all agree are dropped and ``ctx.refill()`` is
    sampled, up to ``max_sampling_rounds`` rounds per micro-batch, until the micro-batch is full again.
    Returns the step's metrics (averaged over processes) and this process's micro-batches.
    """
    from trainer.step_rollout import rollout_phase
    from trainer.step_update import update_phase

    t0 = time.perf_counter()
    with count_forwards(ctx.policy, ctx.ref_model) as rollout_forwards:
        rollouts = rollout_phase(ctx, micro_records)
    with count_forwards(ctx.policy) as update_forwards:
        update = update_phase(ctx, rollouts.micro)
    rollouts.forwards, update.forwards = rollout_forwards, update_forwards
    local = step_metrics(ctx.cfg, rollouts, update, len(micro_records), time.perf_counter() - t0)
    return mean_over_processes(ctx.accelerator, local), rollouts.micro


def step_metrics(
    cfg: TrainConfig, rollouts: RolloutPhase, update: UpdatePhase, n_micro: int, step_s: float
) -> dict[str, float]:
    """This process's metrics of one step (the caller averages them over processes)."""
    g = cfg.grpo
    # Rewards over everything sampled: what the policy does, not what dynamic sampling kept.
    fmt = torch.cat([sc.format for sc in rollouts.sampled_scores])
    acc = torch.cat([sc.accuracy for sc in rollouts.sampled_scores])
    total = torch.cat([sc.total for sc in rollouts.sampled_scores])
    adv = torch.cat([mb.advantages for mb in rollouts.micro])
    lengths = torch.cat([mb.rollout.lengths for mb in rollouts.micro]).float()
    local = {
        mk.FORMAT_REWARD: float(fmt.mean()),
        mk.ACCURACY_REWARD: float(acc.mean()),
        mk.TOTAL_REWARD: float(total.mean()),
        # The mean advantage is 0 by construction; its mean size says how strong the signal is.
        mk.ADVANTAGE: float((g.grpo_alpha * adv).abs().mean()),
        mk.REWARD_STD: float(total.view(-1, g.grpo_sample_size).std(dim=1).mean()),
        # Over every group sampled, before dynamic sampling drops the flat ones.
        mk.ZERO_STD_FRACTION: grpo.zero_std_fraction(total, g.grpo_sample_size),
        mk.SAMPLING_ROUNDS: rollouts.rounds / n_micro,
        mk.POLICY_SEQ_LOG_PROB: update.means["policy_seq_log_prob"],
        mk.KL_DIV: update.means["kl"],
        mk.CLIP_RATIO: update.means["clip_ratio"],
        mk.ENTROPY: update.means["entropy"],
        mk.LOSS: update.means["loss"],
        mk.GRAD_NORM: update.grad_norm,
        mk.COMPLETION_LENGTH: float(lengths.mean()),
        mk.TIME_GENERATE_S: rollouts.generate_s,
        mk.TIME_SCORE_S: rollouts.score_s,
        mk.TIME_BACKWARD_S: update.seconds,
        mk.TOKENS_PER_S: float(lengths.sum()) / max(step_s, 1e-9),
        # Measured by hooks on the models (trainer.step_counts), this process's share.
        mk.VISION_ITEMS: float(rollouts.forwards.vision_items + update.forwards.vision_items),
        mk.PREFILL_TOKENS: float(rollouts.prefill_tokens),
        mk.TRAIN_FORWARD_TOKENS: float(update.forwards.lm_tokens),
    }
    # Measured only when another engine sampled (trainer.sampler_mismatch).
    for key, name in (("sampler_logp_diff", mk.SAMPLER_LOGP_DIFF), ("is_weight", mk.IS_WEIGHT)):
        if key in update.means:
            local[name] = update.means[key]
    if rollouts.temporal_stats:
        stats = rollouts.temporal_stats
        for key, name in (
            ("acc_ordered", mk.TEMPORAL_ACC_ORDERED),
            ("acc_shuffled", mk.TEMPORAL_ACC_SHUFFLED),
            ("bonus_rate", mk.TEMPORAL_BONUS_RATE),
        ):
            local[name] = sum(s[key] for s in stats) / len(stats)
    if torch.cuda.is_available():
        local[mk.PEAK_MEMORY_GB] = torch.cuda.max_memory_allocated() / 2**30
    return local


def all_agree(accelerator: Any, flag: bool) -> bool:
    """True on every process when any process saw the flag (so all stop at the same step)."""
    if accelerator.num_processes == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=accelerator.device)
    return bool(accelerator.reduce(t, reduction="sum").item() > 0)


def mean_over_processes(accelerator: Any, values: dict[str, float]) -> dict[str, float]:
    if accelerator.num_processes == 1:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], device=accelerator.device, dtype=torch.float64)
    t = accelerator.reduce(t, reduction="mean")
    return dict(zip(keys, t.tolist(), strict=True))

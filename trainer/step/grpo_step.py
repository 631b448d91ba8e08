"""One GRPO step, in three parts with one job each, sharing a :class:`StepContext`.

``grpo_step`` runs them in order: :func:`trainer.step.rollout_phase.rollout_phase` samples and
scores a group per question (dynamic sampling included) and computes the no-grad log-probs the loss
needs; :func:`trainer.step.update_phase.update_phase` runs ``num_iterations`` policy updates over the
micro-batches; :func:`step_metrics` turns both into the step's metrics, averaged over processes.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from trainer.core import metrics_keys as mk
from trainer.core.config import TrainConfig
from trainer.model.counts import count_forwards
from trainer.step.context import MicroBatch, RolloutPhase, StepContext, UpdatePhase, mean_over_processes
from trainer.step.rollout_phase import rollout_phase
from trainer.step.update_phase import update_phase
from trainer.update import grpo


def grpo_step(ctx: StepContext, micro_records: list[list[Any]]) -> tuple[dict[str, float], list[MicroBatch]]:
    """One global step: rollouts for every micro-batch, then ``num_iterations`` policy updates.

    With ``dynamic_sampling``, groups whose rewards all agree are dropped and ``ctx.refill()`` is
    sampled, up to ``max_sampling_rounds`` rounds per micro-batch, until the micro-batch is full again.
    Returns the step's metrics (averaged over processes) and this process's micro-batches.
    """
    t0 = time.perf_counter()
    with count_forwards(ctx.policy, ctx.ref_model) as rollout_forwards:
        rollouts = rollout_phase(ctx, micro_records)
    with count_forwards(ctx.policy) as update_forwards:
        update = update_phase(ctx, rollouts.micro)
    rollouts.forwards, update.forwards = rollout_forwards, update_forwards
    local = step_metrics(ctx.cfg, rollouts, update, len(micro_records), time.perf_counter() - t0)
    metrics = mean_over_processes(ctx.accelerator, local)
    # A reward that applied to no completion of the step (None everywhere) has no mean this step.
    return {k: v for k, v in metrics.items() if v == v}, rollouts.micro


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
        # The mean advantage is 0 by construction; its mean size says how strong the signal is. The
        # raw A the rollout cards show (trainer.run.loop.rollout_rows), not alpha*A: one meaning for
        # "advantage" on the Monitor (grpo_loss applies grpo_alpha).
        mk.ADVANTAGE: float(adv.abs().mean()),
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
        # Measured by hooks on the models (trainer.model.counts), this process's share.
        mk.VISION_ITEMS: float(rollouts.forwards.vision_items + update.forwards.vision_items),
        mk.PREFILL_TOKENS: float(rollouts.prefill_tokens),
        mk.TRAIN_FORWARD_TOKENS: float(update.forwards.lm_tokens),
    }
    # Measured only when another engine sampled (trainer.update.sampler_mismatch).
    for key, name in (("sampler_logp_diff", mk.SAMPLER_LOGP_DIFF), ("is_weight", mk.IS_WEIGHT)):
        if key in update.means:
            local[name] = update.means[key]
    for name in rollouts.sampled_scores[0].per_reward if rollouts.sampled_scores else ():
        applied = [v for sc in rollouts.sampled_scores for v in sc.per_reward[name] if v is not None]
        # NaN when it applied nowhere: every process sends the same keys; grpo_step drops it after.
        local[mk.reward_metric(name)] = sum(applied) / len(applied) if applied else float("nan")
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

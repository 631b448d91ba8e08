"""The rollout phase of a GRPO step: sample a group per question, score it, keep what teaches.

For each micro-batch of questions: generate G completions per question, score them (with the
T-GRPO bonus when on), drop flat groups under dynamic sampling and refill from fresh questions,
then compute the advantages and the no-grad log-probs (rollout policy, reference) the loss needs.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch

from trainer.core.config import TrainConfig
from trainer.core.errors import DataError
from trainer.data.video import DecodeCache
from trainer.rollout.hf import (
    PromptBatch,
    RolloutBatch,
    build_prompt_batch,
    generate_rollouts,
    shuffled_frames,
)
from trainer.score.dynamic_sampling import select_groups
from trainer.score.scoring import Scores, score_rollouts, temporal_bonus
from trainer.step.context import MicroBatch, RolloutPhase, StepContext, all_agree
from trainer.update import grpo
from trainer.update.logprobs import completion_logprobs

logger = logging.getLogger(__name__)


def rollout_phase(ctx: StepContext, micro_records: list[list[Any]]) -> RolloutPhase:
    """Sampled, scored and (under dynamic sampling) filtered micro-batches for one step."""
    phase = RolloutPhase()
    for recs in micro_records:
        _fill_micro_batch(ctx, recs, phase)
    return phase


def _fill_micro_batch(ctx: StepContext, recs: list[Any], phase: RolloutPhase) -> None:
    """Sample ``recs`` and, with dynamic sampling, refills until as many informative groups as
    questions are kept (or ``max_sampling_rounds`` is reached); appends to ``phase``."""
    g = ctx.cfg.grpo
    max_rounds = g.max_sampling_rounds if g.dynamic_sampling else 1
    need, have = len(recs), 0
    for round_ in range(1, max_rounds + 1):
        # A process whose micro-batch is already full sits a round out, unless generation is
        # collective (sharded weights, synced_gpus) and every process must take part.
        if have < need or ctx.sample_kwargs.get("synced_gpus"):
            phase.rounds += 1
            rollout, scores = _sample_and_score(ctx, recs, phase)
            phase.sampled_scores.append(scores)
            keep = list(range(rollout.prompt.size))
            if g.dynamic_sampling:
                keep = grpo.groups_with_spread(scores.total, g.grpo_sample_size)[: max(need - have, 0)]
                if not keep and have == 0 and round_ == max_rounds:
                    # Nothing informative in any round: train on the last one anyway (zero
                    # advantages, only the KL and entropy terms) so this process still takes
                    # part in the update.
                    keep = list(range(rollout.prompt.size))
                if keep and len(keep) < rollout.prompt.size:
                    rollout, scores = select_groups(rollout, scores, keep)
            if keep:
                have += len(keep)
                phase.micro.append(micro_batch(ctx, rollout, scores))
        # Every process runs the same rounds and draws the same refills (one data position).
        if round_ == max_rounds or not all_agree(ctx.accelerator, have < need):
            break
        if ctx.refill is None:
            raise ValueError("dynamic_sampling needs a refill function for fresh questions")
        recs = ctx.refill()


def _sample_and_score(ctx: StepContext, recs: list[Any], phase: RolloutPhase) -> tuple[RolloutBatch, Scores]:
    """G completions per question, scored (with the T-GRPO bonus when on); adds the seconds spent
    generating and scoring to ``phase``."""
    g = ctx.cfg.grpo
    prompt, recs = prompt_batch(ctx.processor, recs, ctx.cfg, ctx.cache)
    rollout = _sample(ctx, prompt)
    _add_sampling_work(phase, rollout)
    gen_s = rollout.seconds
    t_score = time.perf_counter()
    scores = score_rollouts(rollout.texts, recs, g.grpo_sample_size, ctx.reward_functions, step=ctx.step)
    if g.temporal_grpo:
        shuffled_prompt = build_prompt_batch(
            ctx.processor,
            recs,
            ctx.cfg.video,
            cache=ctx.cache,
            video_transform=shuffled_frames(
                torch.Generator().manual_seed(int(torch.randint(0, 2**31 - 1, (1,)).item()))
            ),
        )
        shuffled = _sample(ctx, shuffled_prompt)
        _add_sampling_work(phase, shuffled)
        gen_s += shuffled.seconds
        scores = temporal_bonus(
            scores,
            shuffled.texts,
            recs,
            g.grpo_sample_size,
            g.temporal_margin,
            g.temporal_bonus,
            g.accuracy_weight(),
        )
    if scores.temporal is not None:
        phase.temporal_stats.append(scores.temporal)
    phase.generate_s += gen_s
    phase.score_s += time.perf_counter() - t_score
    return rollout, scores


def _sample(ctx: StepContext, prompt: PromptBatch) -> RolloutBatch:
    """G completions per prompt from the run's sampler (transformers' generate, or vLLM)."""
    g = ctx.cfg.grpo
    if ctx.sampler is not None:
        return ctx.sampler(ctx.policy, ctx.processor, prompt, g.grpo_sample_size, ctx.sample_kwargs)
    return generate_rollouts(
        ctx.policy, ctx.processor, prompt, g.grpo_sample_size, ctx.sample_kwargs, ctx.cfg.model.shared_prefix
    )


def _add_sampling_work(phase: RolloutPhase, rollout: RolloutBatch) -> None:
    phase.prefill_tokens += rollout.prefill_tokens
    phase.sampling_vision_items += rollout.vision_items


def micro_batch(ctx: StepContext, rollout: RolloutBatch, scores: Scores) -> MicroBatch:
    """Advantages and the no-grad log-probs (rollout policy, reference) an update needs."""
    g = ctx.cfg.grpo
    policy = ctx.policy
    shared = ctx.cfg.model.shared_prefix
    advantages = grpo.group_advantages(scores.total, g.grpo_sample_size, scale=g.scale_rewards)
    # inference_mode: no autograd bookkeeping per op; the results are cloned out of it so the loss
    # (with grad) may use them.
    with torch.inference_mode():
        logp_old = None
        if g.num_iterations > 1:
            logp_old = completion_logprobs(policy, rollout, g.temperature, shared)
        logp_ref = None
        if g.grpo_beta > 0:
            logp_ref = _reference_logprobs(ctx.ref_model, policy, rollout, g.temperature, shared)
    logp_old, logp_ref = (None if t is None else t.clone() for t in (logp_old, logp_ref))
    return MicroBatch(rollout, scores, advantages, logp_old, logp_ref)


def prompt_batch(
    processor: Any, records: list[Any], cfg: TrainConfig, cache: DecodeCache | None
) -> tuple[Any, list[Any]]:
    """The prompt batch of ``records``; a record whose video cannot be decoded is dropped with a
    warning naming it, so one corrupt file does not end a long run."""
    try:
        return build_prompt_batch(processor, records, cfg.video, cache=cache), records
    except DataError:
        kept = []
        for record in records:
            try:
                build_prompt_batch(processor, [record], cfg.video, cache=cache)
                kept.append(record)
            except DataError as exc:
                logger.warning("skipping %s: %s", record.location, exc)
        if not kept:
            raise
        return build_prompt_batch(processor, kept, cfg.video, cache=cache), kept


def _reference_logprobs(
    ref_model: Any, policy: Any, rollout: RolloutBatch, temperature: float, shared_prefix: bool
) -> torch.Tensor:
    if ref_model is not None:
        return completion_logprobs(ref_model, rollout, temperature, shared_prefix)
    # LoRA: the reference is the base model, i.e. the policy with its adapters switched off.
    with policy.disable_adapter():
        return completion_logprobs(policy, rollout, temperature, shared_prefix)

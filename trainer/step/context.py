"""What the parts of a GRPO step share: the :class:`StepContext` they read and the records they pass.

:mod:`trainer.step.grpo_step` runs the parts in order; each phase imports this module only, so
there is no import circle between the step and its phases.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from trainer.core.config import TrainConfig
from trainer.data.video import DecodeCache
from trainer.model.counts import ForwardCounts
from trainer.rollout.hf import RolloutBatch
from trainer.score.reward_functions import LoadedReward, load_rewards, workspace_search
from trainer.score.scoring import Scores


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
    # A sampler other than transformers' generate (rollout_backend vllm: trainer.rollout.vllm_engine), called
    # like generate_rollouts without the shared-prefix switch; None: generate_rollouts.
    sampler: Callable[..., RolloutBatch] | None = None
    step: int = 0  # the optimizer step being taken (the reward functions' ``step`` context)

    @functools.cached_property
    def policy(self) -> Any:
        """The unwrapped policy: what generates and computes no-grad log-probs. Unwrapped once:
        ``unwrap_model`` inspects signatures and probes for DeepSpeed, ~3 ms a call (4 a step)."""
        return self.accelerator.unwrap_model(self.model)

    @functools.cached_property
    def reward_functions(self) -> list[LoadedReward]:
        """The run's reward functions (cfg.grpo's list), imported on first use: files are looked up
        in the working directory, then the workspace (trainer.score.reward_functions)."""
        return load_rewards(self.cfg.grpo.reward_specs(), search=workspace_search(self.cfg))


@dataclass
class MicroBatch:
    """One micro-batch of rollouts with everything the update needs."""

    rollout: RolloutBatch
    scores: Scores
    advantages: torch.Tensor  # (B*G,) group-relative A, not scaled: grpo_loss multiplies by grpo_alpha
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


def all_agree(accelerator: Any, flag: bool) -> bool:
    """True on every process when any process saw the flag (so all stop at the same step)."""
    if accelerator.num_processes == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=accelerator.device)
    return bool(accelerator.reduce(t, reduction="sum").item() > 0)


def max_over_processes(accelerator: Any, value: float) -> float:
    """The largest ``value`` of any process, on every process (e.g. a clock reading that must agree)."""
    if accelerator.num_processes == 1:
        return value
    t = torch.tensor([value], device=accelerator.device, dtype=torch.float64)
    return float(accelerator.gather(t).max().item())


def mean_over_processes(accelerator: Any, values: dict[str, float]) -> dict[str, float]:
    if accelerator.num_processes == 1:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], device=accelerator.device, dtype=torch.float64)
    t = accelerator.reduce(t, reduction="mean")
    return dict(zip(keys, t.tolist(), strict=True))

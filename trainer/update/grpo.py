"""The GRPO objective as small pure torch functions: advantages, the clipped surrogate, k3 KL, loss.

Shapes: ``B`` sequences (prompts x group size G, grouped per prompt: p0s0, p0s1, …, p1s0, …) by ``T``
completion tokens; ``mask`` (B, T) is 1 on real completion tokens and 0 on padding. Log-probs are
per token, of the sampled token. Nothing here touches a model, so every number can be checked by hand
(tests/update/test_grpo.py).

The loss for one batch (Shao et al. 2024, DeepSeekMath eq. 3, with TRL's loss variants)::

    ratio_t   = exp(logp_t - logp_old_t)
    surr_t    = -min(ratio_t * alpha*A, clip(ratio_t, 1 - eps_low, 1 + eps_high) * alpha*A)
    kl_t      = exp(logp_ref_t - logp_t) - (logp_ref_t - logp_t) - 1          (k3)
    loss      = agg(surr + beta * kl, mask) = agg(surr) + beta * agg(kl)  [- c * agg(entropy)]

``grpo_alpha`` (``alpha``) multiplies the advantages A before the surrogate. Because the clip is
taken per token and ``min(x*alpha*A, y*alpha*A) = alpha*min(x*A, y*A)`` for alpha >= 0, this is the
same as multiplying the whole policy-gradient term by alpha: alpha weighs the reward signal against
the beta*KL term, and alpha = 0 leaves only the KL pull to the reference. With
``scale="none"`` (A = r - mean_group(r)) it is exactly scaling the rewards by alpha; with
``scale="group"``/``"batch"`` scaling the rewards would be divided out again by the std, which is
why alpha is applied to the advantages and not to the rewards.

The optional entropy bonus ``c = entropy_coeff`` (verl's ``entropy_coeff``; 0 turns it off) is the
entropy of the whole next-token distribution at each completion position, not of the sampled token.
That is the point of it: an answer the policy no longer samples gets no gradient from the surrogate
or from the sampled-token k3 KL, and a group that all agrees has zero advantages, so once a choice
dies out nothing brings it back; the entropy gradient reaches every token's logit.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = [
    "AGGREGATIONS",
    "SCALES",
    "clipped_surrogate",
    "group_advantages",
    "groups_with_spread",
    "grpo_loss",
    "k3_kl",
    "zero_std_fraction",
]

SCALES = ("group", "batch", "none")


def _grouped(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """(B*G,) or (B, G) rewards -> (B, G) float rewards, checked."""
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    if rewards.dim() == 2:
        if rewards.size(1) != group_size:
            raise ValueError(f"rewards of shape {tuple(rewards.shape)} are not groups of {group_size}")
    elif rewards.dim() != 1 or rewards.numel() % group_size != 0:
        raise ValueError(
            f"rewards of shape {tuple(rewards.shape)} cannot be split into groups of {group_size}"
        )
    if rewards.numel() == 0:
        raise ValueError("rewards are empty")
    rewards = rewards.detach()
    if not rewards.is_floating_point():
        rewards = rewards.float()
    if not torch.isfinite(rewards).all():
        raise ValueError("rewards contain NaN or inf")
    return rewards.reshape(-1, group_size)


def _has_spread(grouped: torch.Tensor) -> torch.Tensor:
    """(B, G) -> (B,) bool: do the rewards of a group differ at all (exact comparison)?"""
    return grouped.amax(dim=1) != grouped.amin(dim=1)


def group_advantages(
    rewards: torch.Tensor, group_size: int, scale: str = "group", eps: float = 1e-4
) -> torch.Tensor:
    """Group-relative advantages, (B*G,) or (B, G) rewards -> (B*G,) advantages.

    ``A_i = (r_i - mean_group(r)) / (std + eps)`` where std is

    - ``"group"``: the std of the rewards of the prompt's own group (GRPO, DeepSeekMath);
    - ``"batch"``: the std of all rewards in the batch (Hu et al., REINFORCE++; TRL's
      ``scale_rewards="batch"``); the mean stays the group's;
    - ``"none"``: no division at all, ``A_i = r_i - mean_group(r)`` (Dr. GRPO, Liu et al. 2025).

    The std is the unbiased one (Bessel's correction, divide by n - 1), as ``torch.std`` in the
    DeepSeekMath/open-r1 code and TRL's ``nanstd``; eps (1e-4, TRL's value) keeps nearly flat groups
    finite. A group whose rewards are all equal gets advantages of exactly 0 in every mode (its
    mean can differ from its members by a rounding ulp, which a tiny std would blow up), so it
    teaches nothing; ``zero_std_fraction`` counts such groups. With ``group_size == 1`` every group
    is flat. Rewards are treated as constants (detached).
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    grouped = _grouped(rewards, group_size)
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    if scale == "group":
        std = grouped.std(dim=1, keepdim=True) if group_size > 1 else torch.zeros_like(grouped[:, :1])
        centred = centred / (std + eps)
    elif scale == "batch":
        std = grouped.std() if grouped.numel() > 1 else torch.zeros_like(grouped[0, 0])
        centred = centred / (std + eps)
    advantages = torch.where(_has_spread(grouped)[:, None], centred, torch.zeros_like(centred))
    return advantages.reshape(-1)


def groups_with_spread(rewards: torch.Tensor, group_size: int) -> list[int]:
    """Indices of the groups whose rewards are not all equal (the ones with nonzero advantages).

    Takes (B*G,) or (B, G) rewards, like :func:`group_advantages`.
    """
    return torch.nonzero(_has_spread(_grouped(rewards, group_size))).flatten().tolist()


def zero_std_fraction(rewards: torch.Tensor, group_size: int) -> float:
    """Fraction of groups whose rewards are all equal (no spread, so zero advantages), in [0, 1].

    Takes (B*G,) or (B, G) rewards, like :func:`group_advantages`.
    """
    grouped = _grouped(rewards, group_size)
    return float((~_has_spread(grouped)).float().mean().item())


def k3_kl(logp_policy: torch.Tensor, logp_ref: torch.Tensor) -> torch.Tensor:
    """Per-token estimate of KL(policy || ref), any matching shapes (B, T) -> (B, T).

    Schulman's k3 estimator (http://joschu.net/blog/kl-approx.html), as in DeepSeekMath eq. 4:
    with d = logp_ref - logp_policy, ``exp(d) - d - 1``; it is >= 0 for every d, 0 exactly when the
    two log-probs agree, and unbiased for tokens sampled from the policy.
    """
    if logp_policy.shape != logp_ref.shape:
        raise ValueError(
            f"logp_policy and logp_ref shapes differ: {tuple(logp_policy.shape)} and {tuple(logp_ref.shape)}"
        )
    delta = logp_ref - logp_policy
    return torch.exp(delta) - delta - 1


def clipped_surrogate(
    logp: torch.Tensor,
    logp_old: torch.Tensor,
    advantages: torch.Tensor,
    eps_low: float,
    eps_high: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The PPO/GRPO clipped objective per token, as a loss (negated).

    logp, logp_old (B, T); advantages (B,) broadcast over the tokens (or already (B, T)).
    Returns ``per_token_loss`` (B, T) ``= -min(ratio*A, clip(ratio, 1-eps_low, 1+eps_high)*A)`` with
    ``ratio = exp(logp - logp_old)``, and ``is_clipped`` (B, T) bool: the clip is active there, so the
    token gets no gradient (ratio > 1+eps_high with A > 0, or ratio < 1-eps_low with A < 0; the
    "clip_ratio" TRL logs). Gradients flow through ``logp`` only.
    """
    if logp.shape != logp_old.shape:
        raise ValueError(f"logp {tuple(logp.shape)} and logp_old {tuple(logp_old.shape)} differ")
    if eps_low < 0 or eps_high < 0:
        raise ValueError(f"eps_low and eps_high must be >= 0, got {eps_low}, {eps_high}")
    if advantages.dim() not in (1, 2) or advantages.size(0) != logp.size(0):
        raise ValueError(f"advantages {tuple(advantages.shape)} do not match logp {tuple(logp.shape)}")
    advantages = advantages.detach()
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)
    ratio = torch.exp(logp - logp_old.detach())
    clipped = torch.clamp(ratio, 1 - eps_low, 1 + eps_high)
    per_token_loss = -torch.min(ratio * advantages, clipped * advantages)
    is_clipped = ((ratio > 1 + eps_high) & (advantages > 0)) | ((ratio < 1 - eps_low) & (advantages < 0))
    return per_token_loss, is_clipped


Aggregation = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


def _per_sequence_mean(values: torch.Tensor, mask: torch.Tensor, max_completion_length: int) -> torch.Tensor:
    # GRPO paper: 1/G sum_i 1/|o_i| sum_t. Long and short completions weigh the same per sequence, so
    # each token of a long one counts less (the length bias Dr. GRPO points out).
    return ((values * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)).mean()


def _token_mean(values: torch.Tensor, mask: torch.Tensor, max_completion_length: int) -> torch.Tensor:
    # DAPO / TRL "bnpo": every real token in the batch weighs the same.
    return (values * mask).sum() / mask.sum().clamp(min=1)


def _dr_grpo_sum(values: torch.Tensor, mask: torch.Tensor, max_completion_length: int) -> torch.Tensor:
    # Dr. GRPO: a constant divisor (sequences x max length), so no length- or batch-dependent weight.
    return (values * mask).sum() / (mask.size(0) * max_completion_length)


# loss_type -> fn(per_token_values (B, T), mask (B, T), max_completion_length) -> scalar.
AGGREGATIONS: dict[str, Aggregation] = {
    "grpo": _per_sequence_mean,
    "bnpo": _token_mean,
    "token": _token_mean,
    "dr_grpo": _dr_grpo_sum,
}


def _check_loss_args(
    logp: torch.Tensor,
    mask: torch.Tensor,
    entropy: torch.Tensor | None,
    aggregation: str,
    alpha: float,
    beta: float,
    entropy_coeff: float,
    max_completion_length: int | None,
) -> int:
    """Check :func:`grpo_loss`'s arguments (ValueError naming the bad one) and return dr_grpo's
    divisor: ``max_completion_length``, or T when it is None."""
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, got {aggregation!r}")
    if alpha < 0 or beta < 0 or entropy_coeff < 0:
        raise ValueError(f"alpha, beta and entropy_coeff must be >= 0, got {alpha}, {beta}, {entropy_coeff}")
    if entropy_coeff > 0 and entropy is None:
        raise ValueError("entropy_coeff > 0 needs the per-token entropy")
    if entropy is not None and entropy.shape != logp.shape:
        raise ValueError(f"entropy {tuple(entropy.shape)} does not match logp {tuple(logp.shape)}")
    if logp.dim() != 2 or mask.shape != logp.shape:
        raise ValueError(f"logp {tuple(logp.shape)} and mask {tuple(mask.shape)} must both be (B, T)")
    max_len = logp.size(1) if max_completion_length is None else max_completion_length
    if max_len < logp.size(1):
        raise ValueError(f"max_completion_length {max_len} is shorter than the completions ({logp.size(1)})")
    return max_len


def _pin_padding(
    is_real: torch.Tensor,
    logp: torch.Tensor,
    logp_old: torch.Tensor | None,
    logp_ref: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The log-probs (B, T) with their padded positions (``is_real`` False) pinned to 0: ratio 1,
    KL 0, and no gradient there.

    Padding may hold anything (-inf from masked logits, stale log-probs); exp() of it would turn the
    masked-out zeros into 0 * inf = NaN, in the loss and in the gradient. ``logp_old`` and
    ``logp_ref`` come back detached; ``logp_old`` None becomes ``logp.detach()`` (the single-update
    case, ratio 1), ``logp_ref`` None stays None (no reference).
    """
    logp = torch.where(is_real, logp, 0.0)
    logp_old = logp.detach() if logp_old is None else torch.where(is_real, logp_old.detach(), 0.0)
    logp_ref = None if logp_ref is None else torch.where(is_real, logp_ref.detach(), 0.0)
    return logp, logp_old, logp_ref


def grpo_loss(
    logp: torch.Tensor,
    logp_old: torch.Tensor | None,
    logp_ref: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    alpha: float = 0.5,
    beta: float = 0.1,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    aggregation: str = "grpo",
    max_completion_length: int | None = None,
    entropy: torch.Tensor | None = None,
    entropy_coeff: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The GRPO loss (see the module docstring for the formula and what alpha means).

    logp (B, T) policy log-probs, with grad; logp_old (B, T) the log-probs at sampling time (None:
    ``logp.detach()``, the single-update case where the ratio is 1); logp_ref (B, T) the frozen
    reference (None or ``beta == 0``: no KL term); advantages (B,); mask (B, T) 0/1 or bool.
    ``aggregation`` is a key of :data:`AGGREGATIONS`; ``max_completion_length`` is dr_grpo's
    divisor (None: T; must be >= T). ``entropy`` (B, T), with grad, is the per-token entropy of the
    policy's distribution; with ``entropy_coeff > 0`` the loss subtracts ``entropy_coeff * agg(entropy)``.

    Returns the scalar loss and detached 0-d tensors (``float()`` them when logging):

    - ``policy_loss``: agg(surrogate) with the alpha-scaled advantages;
    - ``kl_loss``: ``beta * agg(kl)``, the amount the KL adds to the loss (0 without KL);
    - ``kl``: masked mean of the per-token k3 KL over all real tokens (``grpo/kl_div``; measured
      whenever ``logp_ref`` is given, even with ``beta == 0``; 0 without a reference);
    - ``clip_ratio``: fraction of real tokens whose clip is active (``grpo/clip_ratio``);
    - ``policy_seq_log_prob``: mean over sequences of the sum of their token log-probs
      (``grpo/policy_seq_log_prob``);
    - ``entropy``: masked mean of the per-token entropy over all real tokens (``grpo/entropy``;
      0 when ``entropy`` is not given).
    """
    max_len = _check_loss_args(
        logp, mask, entropy, aggregation, alpha, beta, entropy_coeff, max_completion_length
    )
    aggregate = AGGREGATIONS[aggregation]
    is_real = mask != 0
    mask = mask.to(logp.dtype)
    logp, logp_old, logp_ref = _pin_padding(is_real, logp, logp_old, logp_ref)

    per_token_loss, is_clipped = clipped_surrogate(logp, logp_old, alpha * advantages, eps_low, eps_high)
    policy_loss = aggregate(per_token_loss, mask, max_len)
    n_tokens = mask.sum().clamp(min=1)

    zero = torch.zeros((), dtype=logp.dtype, device=logp.device)
    kl_mean, kl_loss = zero, zero
    loss = policy_loss
    if logp_ref is not None:
        per_token_kl = k3_kl(logp, logp_ref)
        kl_mean = (per_token_kl * mask).sum() / n_tokens
        if beta != 0:
            kl_loss = beta * aggregate(per_token_kl, mask, max_len)
            loss = policy_loss + kl_loss
    entropy_mean = zero
    if entropy is not None:
        entropy = torch.where(is_real, entropy, 0.0)
        entropy_mean = (entropy * mask).sum() / n_tokens
        if entropy_coeff != 0:
            loss = loss - entropy_coeff * aggregate(entropy, mask, max_len)

    stats = {
        "policy_loss": policy_loss.detach(),
        "kl_loss": kl_loss.detach(),
        "kl": kl_mean.detach(),
        "clip_ratio": ((is_clipped.to(logp.dtype) * mask).sum() / n_tokens).detach(),
        "policy_seq_log_prob": (logp.detach() * mask).sum(dim=1).mean(),
        "entropy": entropy_mean.detach(),
    }
    return loss, stats

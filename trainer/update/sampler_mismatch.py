"""The sampler/trainer mismatch when another engine (vLLM) samples the rollouts.

vLLM computes the log-probs of the tokens it samples with its own kernels (paged attention, fused
ops, other reduction orders), so for the same weights they differ slightly from the training
forward's. GRPO's ratio ``exp(logp - logp_old)`` uses the trainer's ``logp_old``; the samples
themselves came from vLLM's distribution. Truncated importance sampling (Yao et al. 2025, "Your
efficient RL framework secretly brings you off-policy RL training"; TRL's
``vllm_importance_sampling_correction``) reweights each token's policy-gradient term by

    w_t = min(exp(logp_old_t - logp_sampler_t), cap)

(detached), so the update estimates the gradient for samples drawn from the trainer's policy.
Pure tensors in and out; the numbers are checked by hand in tests/update/test_sampler_mismatch.py.
"""

from __future__ import annotations

import torch

__all__ = ["corrected_advantages", "mean_abs_logp_diff", "sampler_correction", "truncated_is_weights"]


def _check(logp_old: torch.Tensor, logp_sampler: torch.Tensor, mask: torch.Tensor) -> None:
    if logp_old.shape != logp_sampler.shape or logp_old.shape != mask.shape or logp_old.dim() != 2:
        raise ValueError(
            f"logp_old {tuple(logp_old.shape)}, logp_sampler {tuple(logp_sampler.shape)} and mask "
            f"{tuple(mask.shape)} must all be the same (B, T)"
        )


def truncated_is_weights(
    logp_old: torch.Tensor, logp_sampler: torch.Tensor, mask: torch.Tensor, cap: float
) -> torch.Tensor:
    """Per-token weights (B, T) ``min(exp(logp_old - logp_sampler), cap)``, 1 on padding.

    >>> w = truncated_is_weights(torch.tensor([[-1.0, -2.0]]), torch.tensor([[-1.5, -0.5]]),
    ...                          torch.tensor([[1, 1]]), cap=1.5)
    >>> [round(x, 4) for x in w[0].tolist()]
    [1.5, 0.2231]
    """
    _check(logp_old, logp_sampler, mask)
    if cap <= 0:
        raise ValueError(f"cap must be > 0, got {cap}")
    is_real = mask != 0
    # Padding holds anything (0 from the sampler, -inf from masked logits): pin it before exp().
    delta = torch.where(is_real, logp_old.detach().float() - logp_sampler.float(), 0.0)
    return torch.clamp(torch.exp(delta), max=cap).to(logp_old.dtype)


def corrected_advantages(
    advantages: torch.Tensor,
    logp_old: torch.Tensor,
    logp_sampler: torch.Tensor,
    mask: torch.Tensor,
    cap: float,
) -> torch.Tensor:
    """Advantages (B,) -> per-token advantages (B, T) ``A * w_t``.

    Multiplying the advantage is the same as multiplying the clipped surrogate: for ``w >= 0``,
    ``-min(r*wA, clip(r)*wA) = w * -min(r*A, clip(r)*A)``, and the sign of ``wA`` is that of ``A``
    so the clip fires on the same tokens. The KL and entropy terms are not reweighted (as TRL).
    """
    if advantages.dim() != 1 or advantages.size(0) != logp_old.size(0):
        raise ValueError(f"advantages {tuple(advantages.shape)} do not match logp {tuple(logp_old.shape)}")
    weights = truncated_is_weights(logp_old, logp_sampler, mask, cap)
    return advantages.detach().unsqueeze(1) * weights


def mean_abs_logp_diff(logp_old: torch.Tensor, logp_sampler: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean over real tokens of ``|logp_sampler - logp_old|`` (nats): how far the two engines disagree.

    >>> mean_abs_logp_diff(torch.tensor([[-1.0, -2.0, 0.0]]), torch.tensor([[-1.5, -1.0, 9.0]]),
    ...                    torch.tensor([[1, 1, 0]]))
    0.75
    """
    _check(logp_old, logp_sampler, mask)
    is_real = mask != 0
    diff = torch.where(is_real, (logp_sampler.float() - logp_old.detach().float()).abs(), 0.0)
    return float(diff.sum() / is_real.sum().clamp(min=1))


def sampler_correction(
    advantages: torch.Tensor,
    logp: torch.Tensor,
    logp_old: torch.Tensor | None,
    logp_sampler: torch.Tensor | None,
    mask: torch.Tensor,
    cap: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The advantages the GRPO loss should take for one micro-batch, and the mismatch stats.

    ``logp`` (B, T) the policy's log-probs in this update (with grad); ``logp_old`` those at
    sampling time (None: ``logp`` itself, the first update of the step); ``logp_sampler`` what the
    sampler reported (None: the policy sampled, nothing to correct). ``cap`` 0 turns the
    correction off but the mismatch is still measured. Stats: ``sampler_logp_diff`` (nats) and,
    when correcting, ``is_weight`` (mean token weight: well below 1 means the caps bind).
    """
    if logp_sampler is None:
        return advantages, {}
    logp_sampler = logp_sampler.to(logp.device)
    old = logp.detach() if logp_old is None else logp_old.to(logp.device)
    stats = {"sampler_logp_diff": mean_abs_logp_diff(old, logp_sampler, mask)}
    if cap <= 0:
        return advantages, stats
    weights = truncated_is_weights(old, logp_sampler, mask, cap)
    is_real = mask != 0
    stats["is_weight"] = float(weights[is_real].float().mean()) if is_real.any() else 1.0
    return advantages.detach().unsqueeze(1) * weights, stats

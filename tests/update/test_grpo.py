"""trainer.update.grpo: every number below is worked out by hand in the comment beside it."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.update.grpo import (
    AGGREGATIONS,
    clipped_surrogate,
    group_advantages,
    grpo_loss,
    k3_kl,
    zero_std_fraction,
)

F64 = torch.float64
E_MINUS_2 = math.e - 2  # k3 at d = 1: e^1 - 1 - 1


def t(values: list) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


def assert_close(got: torch.Tensor, expected: list | float) -> None:
    torch.testing.assert_close(got, torch.as_tensor(expected, dtype=got.dtype), atol=1e-6, rtol=0)


# --- group_advantages -------------------------------------------------------------------------------

# Two groups of three. Group 1: mean 0.5, deviations (0.5, -0.5, 0), unbiased var (0.25+0.25+0)/2 = 0.25,
# std 0.5. Group 2: mean 4, deviations (-2, 0, 2), unbiased var (4+0+4)/2 = 4, std 2.
REWARDS = [1.0, 0.0, 0.5, 2.0, 4.0, 6.0]


def test_group_scale() -> None:
    # 0.5/(0.5+1e-4) = 0.99980004, 2/(2+1e-4) = 0.99995000
    expected = [0.99980004, -0.99980004, 0.0, -0.99995000, 0.0, 0.99995000]
    assert_close(group_advantages(t(REWARDS), 3, "group"), expected)


def test_batch_scale() -> None:
    # Batch mean 13.5/6 = 2.25; squared deviations 1.5625 + 5.0625 + 3.0625 + 0.0625 + 3.0625 + 14.0625
    # = 26.875; unbiased var 26.875/5 = 5.375; std 2.31840462. Centred on the GROUP mean still:
    # 0.5/(2.31840462+1e-4) = 0.21565618, 2/2.31850462 = 0.86262473.
    expected = [0.21565618, -0.21565618, 0.0, -0.86262473, 0.0, 0.86262473]
    assert_close(group_advantages(t(REWARDS), 3, "batch"), expected)


def test_no_scale() -> None:
    assert_close(group_advantages(t(REWARDS), 3, "none"), [0.5, -0.5, 0.0, -2.0, 0.0, 2.0])


def test_grouped_input_and_eps() -> None:
    # (B, G) input gives the same flat result; eps 0 divides by the std exactly: 0.5/0.5 = 1, 2/2 = 1.
    got = group_advantages(t(REWARDS).reshape(2, 3), 3, "group", eps=0.0)
    assert got.shape == (6,)
    assert_close(got, [1.0, -1.0, 0.0, -1.0, 0.0, 1.0])


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_flat_groups_get_exactly_zero(scale: str) -> None:
    # 0.3 in float32 does not average back to itself exactly; flat groups are zeroed, not divided by eps.
    rewards = torch.tensor([0.3, 0.3, 0.3, 1.0, 0.0, 0.5, 0.7, 0.7, 0.7], dtype=torch.float32)
    got = group_advantages(rewards, 3, scale)
    assert got[:3].tolist() == [0.0, 0.0, 0.0]
    assert got[6:].tolist() == [0.0, 0.0, 0.0]
    assert got[3].item() > 0 > got[4].item()
    assert zero_std_fraction(rewards, 3) == pytest.approx(2 / 3, abs=1e-6)


def test_zero_std_fraction() -> None:
    assert zero_std_fraction(t(REWARDS), 3) == 0.0
    assert zero_std_fraction(t([1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.5, 0.5]), 2) == 0.75
    # Group size 1: every group is flat, every advantage 0.
    assert zero_std_fraction(t([1.0, 0.0]), 1) == 1.0
    assert group_advantages(t([1.0, 0.0]), 1, "group").tolist() == [0.0, 0.0]


def test_integer_rewards_become_float() -> None:
    got = group_advantages(torch.tensor([1, 0, 0, 0]), 2, "none")
    assert got.dtype == torch.float32
    assert got.tolist() == [0.5, -0.5, 0.0, 0.0]


@pytest.mark.parametrize(
    ("rewards", "group_size", "scale", "message"),
    [
        (torch.zeros(5), 2, "group", r"cannot be split into groups of 2"),
        (torch.zeros(2, 3), 2, "group", r"are not groups of 2"),
        (torch.zeros(4), 0, "group", r"group_size must be >= 1"),
        (torch.zeros(4), 2, "std", r"scale must be one of group, batch, none, got 'std'"),
        (torch.tensor([0.0, float("nan")]), 2, "group", r"NaN or inf"),
        (torch.zeros(0), 2, "group", r"rewards are empty"),
    ],
)
def test_group_advantages_rejects(rewards: torch.Tensor, group_size: int, scale: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        group_advantages(rewards, group_size, scale)


# --- k3_kl ------------------------------------------------------------------------------------------


def test_k3_at_known_points() -> None:
    policy = t([0.0, 0.0, 0.0, -1.0])
    ref = t([0.0, 1.0, -1.0, -1.0 + math.log(2)])
    # d = ref - policy = 0, 1, -1, ln 2:  e^0-0-1 = 0;  e-1-1 = 0.71828183;  e^-1+1-1 = 0.36787944;
    # 2 - ln 2 - 1 = 0.30685282.
    assert_close(k3_kl(policy, ref), [0.0, 0.71828183, 0.36787944, 0.30685282])


def test_k3_shape_mismatch() -> None:
    with pytest.raises(ValueError, match=r"shapes differ: \(2,\) and \(3,\)"):
        k3_kl(torch.zeros(2), torch.zeros(3))


# --- clipped_surrogate ------------------------------------------------------------------------------


def test_clip_at_both_edges() -> None:
    # logp_old = 0, so ratio = exp(logp). eps_low 0.2 (floor 0.8), eps_high 0.28 (ceiling 1.28).
    ratios = [1.5, 0.5, 1.5, 0.5, 1.1]
    logp = torch.log(t([ratios])).requires_grad_(True)
    logp_old = torch.zeros(1, 5, dtype=F64)
    # Advantages per token via a (B, T) tensor: +1, -1, -1, +1, +2.
    advantages = t([[1.0, -1.0, -1.0, 1.0, 2.0]])
    loss, is_clipped = clipped_surrogate(logp, logp_old, advantages, eps_low=0.2, eps_high=0.28)
    # 1.5 with A=+1: -min(1.5, 1.28) = -1.28, clipped (above 1+eps_high, positive A).
    # 0.5 with A=-1: -min(-0.5, -0.8) = 0.8, clipped (below 1-eps_low, negative A).
    # 1.5 with A=-1: -min(-1.5, -1.28) = 1.5, not clipped (the pessimistic side is the unclipped one).
    # 0.5 with A=+1: -min(0.5, 0.8) = -0.5, not clipped.
    # 1.1 with A=+2: inside the range, -2.2.
    assert_close(loss, [[-1.28, 0.8, 1.5, -0.5, -2.2]])
    assert is_clipped.tolist() == [[True, True, False, False, False]]
    # Clipped tokens get no gradient; the others d(-A*exp(logp))/dlogp = -A*ratio: 1.5, -0.5, -2.2.
    loss.sum().backward()
    assert_close(logp.grad, [[0.0, 0.0, 1.5, -0.5, -2.2]])


def test_surrogate_broadcasts_sequence_advantages() -> None:
    logp = torch.zeros(2, 3, dtype=F64)
    loss, is_clipped = clipped_surrogate(logp, logp, t([2.0, -1.0]), 0.2, 0.2)
    # ratio 1 everywhere: -A per token.
    assert_close(loss, [[-2.0, -2.0, -2.0], [1.0, 1.0, 1.0]])
    assert not is_clipped.any()


def test_surrogate_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"advantages \(3,\) do not match logp \(2, 3\)"):
        clipped_surrogate(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3), 0.2, 0.2)
    with pytest.raises(ValueError, match="eps_low and eps_high must be >= 0"):
        clipped_surrogate(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2), -0.1, 0.2)


# --- aggregations -----------------------------------------------------------------------------------

VALUES = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
PADDED = [[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]  # sequence 2 has one real token


@pytest.mark.parametrize(
    ("name", "mask", "max_len", "expected"),
    [
        ("grpo", PADDED, 3, 3.0),  # (mean(1,2,3) + mean(4)) / 2 = (2 + 4) / 2
        ("bnpo", PADDED, 3, 2.5),  # (1+2+3+4) / 4 tokens
        ("token", PADDED, 3, 2.5),
        ("dr_grpo", PADDED, 3, 10 / 6),  # (1+2+3+4) / (2 sequences * 3)
        ("dr_grpo", PADDED, 4, 1.25),  # (1+2+3+4) / (2 * 4)
        # An empty sequence counts as 0 in the GRPO mean (TRL clamps its length to 1): (2 + 0) / 2.
        ("grpo", [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]], 3, 1.0),
        ("bnpo", [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]], 3, 0.0),
    ],
)
def test_aggregations(name: str, mask: list, max_len: int, expected: float) -> None:
    assert_close(AGGREGATIONS[name](t(VALUES), t(mask), max_len), expected)


# --- grpo_loss --------------------------------------------------------------------------------------

LOGP = [[-1.0, -2.0, -3.0], [-0.5, -1.5, -9.0]]
MASK = [[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]]
ADVANTAGES = [1.0, -2.0]
# d = ref - logp: (0, 1, 0) and (0, 1, 9); the padded token's huge k3 (e^9 - 10) must be masked out.
REF = [[-1.0, -1.0, -3.0], [-0.5, -0.5, 0.0]]


def _loss(**kwargs: object) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    args: dict = {
        "logp": t(LOGP),
        "logp_old": None,
        "logp_ref": None,
        "advantages": t(ADVANTAGES),
        "mask": t(MASK),
        "alpha": 0.5,
        "beta": 0.0,
        "eps_low": 0.2,
        "eps_high": 0.2,
        "aggregation": "grpo",
        "max_completion_length": None,
    }
    args.update(kwargs)
    return grpo_loss(**args)


@pytest.mark.parametrize(
    ("aggregation", "max_len", "expected"),
    [
        # On-policy, ratio 1: per-token loss -alpha*A = -0.5 (sequence 1, 3 tokens) and +1.0 (sequence 2,
        # 2 real tokens).
        ("grpo", None, 0.25),  # (-0.5 + 1.0) / 2
        ("bnpo", None, 0.1),  # (3 * -0.5 + 2 * 1.0) / 5
        ("dr_grpo", 4, 0.0625),  # 0.5 / (2 * 4)
    ],
)
def test_loss_on_policy(aggregation: str, max_len: int | None, expected: float) -> None:
    loss, stats = _loss(aggregation=aggregation, max_completion_length=max_len)
    assert_close(loss, expected)
    assert_close(stats["policy_loss"], expected)
    assert_close(stats["kl_loss"], 0.0)
    assert_close(stats["kl"], 0.0)
    assert_close(stats["clip_ratio"], 0.0)
    # Sums of real-token log-probs: -6 and -2; their mean -4.
    assert_close(stats["policy_seq_log_prob"], -4.0)


def test_alpha_scales_the_policy_term_linearly() -> None:
    # Off-policy with some clipping, so the linearity is not only the trivial ratio-1 case.
    logp_old = t([[-1.3, -2.0, -2.5], [-0.1, -1.5, -9.0]])
    base, _ = _loss(logp_old=logp_old, alpha=1.0)
    for alpha in (0.0, 0.5, 2.0, 3.7):
        loss, stats = _loss(logp_old=logp_old, alpha=alpha)
        assert_close(loss, alpha * base.item())
        assert_close(stats["policy_loss"], alpha * base.item())


def test_beta_adds_exactly_beta_times_aggregated_kl() -> None:
    # k3 per real token: (0, e-2, 0) and (0, e-2). GRPO aggregation: ((e-2)/3 + (e-2)/2) / 2 = (e-2)*5/12
    # = 0.29928410; masked token mean (the logged kl): 2(e-2)/5 = 0.28731273.
    no_kl, _ = _loss(logp_ref=t(REF), beta=0.0)
    loss, stats = _loss(logp_ref=t(REF), beta=0.1)
    assert_close(no_kl, 0.25)
    assert_close(loss, 0.25 + 0.1 * E_MINUS_2 * 5 / 12)  # 0.27992841
    assert_close(stats["kl_loss"], 0.1 * E_MINUS_2 * 5 / 12)
    assert_close(stats["kl"], 2 * E_MINUS_2 / 5)
    # beta 0 still measures the KL (for the grpo/kl_div curve) without adding it.
    assert_close(_loss(logp_ref=t(REF), beta=0.0)[1]["kl"], 2 * E_MINUS_2 / 5)
    # bnpo aggregates the KL like the policy term: 2(e-2)/5 tokens.
    loss_bnpo, _ = _loss(logp_ref=t(REF), beta=0.1, aggregation="bnpo")
    assert_close(loss_bnpo, 0.1 + 0.1 * 2 * E_MINUS_2 / 5)


def test_no_reference_means_no_kl_term() -> None:
    loss, stats = _loss(logp_ref=None, beta=0.1)
    assert_close(loss, 0.25)
    assert_close(stats["kl"], 0.0)
    assert_close(stats["kl_loss"], 0.0)


def test_clip_ratio_counts_real_tokens_only() -> None:
    # Sequence 1 (A=+1): ratios e^0.3 = 1.35 (clipped), 1, 1; sequence 2 (A=-2): ratio e^-0.5 = 0.61
    # (clipped), 1, and a padded token with ratio e^-5 that would be clipped but is masked. 2 of 5.
    logp_old = t([[-1.3, -2.0, -3.0], [0.0, -1.5, -4.0]])
    _, stats = _loss(logp_old=logp_old)
    assert_close(stats["clip_ratio"], 0.4)


def test_gradients_flow_only_through_logp() -> None:
    logp = t(LOGP).requires_grad_(True)
    logp_old = t(LOGP).requires_grad_(True)
    logp_ref = t(REF).requires_grad_(True)
    advantages = t(ADVANTAGES).requires_grad_(True)
    loss, stats = _loss(logp=logp, logp_old=logp_old, logp_ref=logp_ref, advantages=advantages, beta=0.1)
    loss.backward()
    assert logp_old.grad is None and logp_ref.grad is None and advantages.grad is None
    assert not any(value.requires_grad for value in stats.values())
    # d/dlogp of the policy term at ratio 1: -alpha*A / (|o_i| * B): -0.5/6 = -0.08333333 and
    # 1.0/4 = 0.25. Of the KL term: beta * (1 - e^d) / (|o_i| * B): d=1 gives 0.1*(1-e)/6 = -0.02863031
    # (sequence 1) and 0.1*(1-e)/4 = -0.04294547 (sequence 2). Padded token: 0.
    expected = [
        [-0.5 / 6, -0.5 / 6 + 0.1 * (1 - math.e) / 6, -0.5 / 6],
        [0.25, 0.25 + 0.1 * (1 - math.e) / 4, 0.0],
    ]
    assert_close(logp.grad, expected)


def test_garbage_in_padding_changes_nothing() -> None:
    # -inf from masked logits, NaN or huge stale values at padded positions must not leak (0 * inf).
    logp = t([[-1.0, -2.0, -3.0], [-0.5, -1.5, float("-inf")]]).requires_grad_(True)
    old = t([[-1.0, -2.0, -3.0], [-0.5, -1.5, float("nan")]])
    ref = t([[-1.0, -1.0, -3.0], [-0.5, -0.5, 1e4]])
    loss, stats = _loss(logp=logp, logp_old=old, logp_ref=ref, beta=0.1)
    assert_close(loss, 0.25 + 0.1 * E_MINUS_2 * 5 / 12)
    assert_close(stats["policy_seq_log_prob"], -4.0)
    loss.backward()
    assert torch.isfinite(logp.grad).all() and logp.grad[1, 2].item() == 0.0


# Per-token entropies; the padded one (sequence 2, token 3) is garbage that must not count.
ENTROPY = [[1.0, 2.0, 3.0], [0.5, 1.5, 99.0]]


@pytest.mark.parametrize(
    ("aggregation", "expected_bonus"),
    [
        ("grpo", 1.5),  # per-sequence means (6/3 = 2, 2/2 = 1), averaged: 1.5
        ("bnpo", 1.6),  # (1 + 2 + 3 + 0.5 + 1.5) / 5 real tokens
        ("dr_grpo", 8.0 / 6),  # 8 / (2 sequences x 3 tokens)
    ],
)
def test_entropy_bonus_is_subtracted_per_aggregation(aggregation: str, expected_bonus: float) -> None:
    base, _ = _loss(aggregation=aggregation)
    loss, stats = _loss(aggregation=aggregation, entropy=t(ENTROPY), entropy_coeff=0.1)
    assert_close(loss, base.item() - 0.1 * expected_bonus)
    assert_close(stats["entropy"], 1.6)  # always the token mean over real tokens


def test_entropy_is_logged_but_not_trained_when_coeff_is_zero() -> None:
    logp, entropy = t(LOGP).requires_grad_(), t(ENTROPY).requires_grad_()
    loss, stats = _loss(logp=logp, entropy=entropy)
    assert_close(loss, 0.25)
    assert_close(stats["entropy"], 1.6)
    loss.backward()
    assert logp.grad is not None and entropy.grad is None


def test_entropy_gradient_skips_padding() -> None:
    entropy = t(ENTROPY).requires_grad_()
    loss, _ = _loss(entropy=entropy, entropy_coeff=0.1)
    loss.backward()
    # grpo aggregation: d loss / d H_t = -0.1 / (2 sequences x |o_i|): -1/60 for sequence 1, -1/40 for 2.
    assert_close(entropy.grad, [[-1 / 60, -1 / 60, -1 / 60], [-1 / 40, -1 / 40, 0.0]])


def test_bool_mask_is_accepted() -> None:
    loss, _ = _loss(mask=t(MASK).bool())
    assert_close(loss, 0.25)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"aggregation": "dapo"}, r"aggregation must be one of grpo, bnpo, token, dr_grpo, got 'dapo'"),
        ({"alpha": -1.0}, r"alpha, beta and entropy_coeff must be >= 0"),
        ({"beta": -0.1}, r"alpha, beta and entropy_coeff must be >= 0"),
        ({"entropy_coeff": -0.1}, r"alpha, beta and entropy_coeff must be >= 0"),
        ({"entropy_coeff": 0.1}, r"entropy_coeff > 0 needs the per-token entropy"),
        ({"entropy": torch.ones(2, 4, dtype=F64)}, r"entropy \(2, 4\) does not match logp \(2, 3\)"),
        ({"max_completion_length": 2}, r"max_completion_length 2 is shorter than the completions \(3\)"),
        ({"mask": torch.ones(2, 4)}, r"must both be \(B, T\)"),
    ],
)
def test_grpo_loss_rejects(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _loss(**kwargs)


# --- against TRL ------------------------------------------------------------------------------------


def _trl_loss(logp, old, ref, advantages, mask, beta, eps_low, eps_high, loss_type, max_len):  # noqa: ANN001
    """TRL 1.16.0 GRPOTrainer._compute_loss (trl/trainer/grpo_trainer.py, lines 3083-3166) with
    importance_sampling_level="token", no vLLM, entropy or off-policy masks, one accumulation step."""
    advantages = advantages.unsqueeze(1)
    coef_1 = torch.exp(logp - old)
    per_token_kl = torch.exp(ref - logp) - (ref - logp) - 1
    coef_2 = torch.clamp(coef_1, 1 - eps_low, 1 + eps_high)
    per_token_loss = -torch.min(coef_1 * advantages, coef_2 * advantages)
    per_token_loss = per_token_loss + beta * per_token_kl
    if loss_type == "grpo":
        return ((per_token_loss * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    if loss_type == "bnpo":
        return (per_token_loss * mask).sum() / mask.sum().clamp(min=1.0)
    return (per_token_loss * mask).sum() / (per_token_loss.size(0) * max_len)


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo"])
def test_matches_trl_formula(loss_type: str) -> None:
    generator = torch.Generator().manual_seed(0)
    logp = -torch.rand(6, 7, generator=generator, dtype=F64) * 3
    old = logp + (torch.rand(6, 7, generator=generator, dtype=F64) - 0.5) * 0.8  # some tokens clip
    ref = logp + (torch.rand(6, 7, generator=generator, dtype=F64) - 0.5)
    lengths = torch.tensor([7, 5, 1, 3, 7, 6])
    mask = (torch.arange(7)[None, :] < lengths[:, None]).to(F64)
    rewards = t([1.0, 0.3, 0.0, 1.0, 1.0, 0.7])
    advantages = group_advantages(rewards, 3, "group")
    alpha, beta = 0.5, 0.1
    ours, _ = grpo_loss(logp, old, ref, advantages, mask, alpha, beta, 0.2, 0.28, loss_type, 9)
    # TRL has no alpha: it is the advantages' scale, so hand TRL the scaled advantages.
    theirs = _trl_loss(logp, old, ref, alpha * advantages, mask, beta, 0.2, 0.28, loss_type, 9)
    assert_close(ours, theirs.item())

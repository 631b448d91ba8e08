"""Truncated importance sampling and the sampler/trainer mismatch, against numbers worked by hand."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.update.sampler_mismatch import (
    corrected_advantages,
    mean_abs_logp_diff,
    sampler_correction,
    truncated_is_weights,
)

OLD = torch.tensor([[-1.0, -2.0, -0.5], [-0.2, -3.0, 0.0]])
SAMPLER = torch.tensor([[-1.5, -0.5, -0.5], [-0.2, -4.0, -9.0]])
MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])


def test_weights_are_the_capped_ratio_and_one_on_padding() -> None:
    w = truncated_is_weights(OLD, SAMPLER, MASK, cap=2.0)
    # exp(0.5)=1.6487, exp(-1.5)=0.2231, exp(0)=1; exp(0)=1, exp(1)=2.718 -> capped at 2; padding 1.
    expected = [math.exp(0.5), math.exp(-1.5), 1.0, 1.0, 2.0, 1.0]
    assert w.flatten().tolist() == pytest.approx(expected, abs=1e-6)


def test_advantages_are_scaled_per_token() -> None:
    adv = corrected_advantages(torch.tensor([1.0, -2.0]), OLD, SAMPLER, MASK, cap=2.0)
    assert adv.shape == (2, 3)
    assert adv[0].tolist() == pytest.approx([math.exp(0.5), math.exp(-1.5), 1.0], abs=1e-6)
    assert adv[1].tolist() == pytest.approx([-2.0, -4.0, -2.0], abs=1e-6)


def test_mean_abs_diff_counts_real_tokens_only() -> None:
    # |(-1.5)-(-1)|=0.5, 1.5, 0, 0, 1.0 over 5 real tokens (the padded 9.0 is ignored).
    assert mean_abs_logp_diff(OLD, SAMPLER, MASK) == pytest.approx(3.0 / 5)


def test_correction_hook() -> None:
    adv = torch.tensor([1.0, -2.0])
    same, stats = sampler_correction(adv, OLD, None, None, MASK, cap=2.0)
    assert same is adv and stats == {}  # transformers sampled: nothing to correct
    off, stats = sampler_correction(adv, OLD, None, SAMPLER, MASK, cap=0.0)
    assert off is adv and stats == {"sampler_logp_diff": pytest.approx(0.6)}
    on, stats = sampler_correction(adv, OLD, None, SAMPLER, MASK, cap=2.0)
    assert on.shape == (2, 3) and stats["sampler_logp_diff"] == pytest.approx(0.6)
    mean_w = (math.exp(0.5) + math.exp(-1.5) + 1.0 + 1.0 + 2.0) / 5
    assert stats["is_weight"] == pytest.approx(mean_w, abs=1e-6)


def test_shape_errors_name_the_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        truncated_is_weights(OLD, SAMPLER[:, :2], MASK, cap=2.0)
    with pytest.raises(ValueError, match="cap"):
        truncated_is_weights(OLD, SAMPLER, MASK, cap=0.0)

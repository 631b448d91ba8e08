"""Plot helpers: smoothing, ETA, and the Runs tab's figures built from run-DB data."""

from __future__ import annotations

import math

import pytest

from studio import plots
from trainer.core import metrics_keys as mk


def test_ema_matches_hand_computed_values() -> None:
    # w = 0.5: acc1 = 0.5*2 = 1 -> 1/(1-0.5) = 2; acc2 = 0.5*1 + 0.5*4 = 2.5 -> 2.5/0.75 = 3.333...
    # NaN is skipped: acc3 = 0.5*2.5 + 0.5*6 = 4.25 -> 4.25/0.875 = 4.857142...
    out = plots.ema([2.0, 4.0, math.nan, 6.0], 0.5)
    assert out[0] == pytest.approx(2.0, abs=1e-6)
    assert out[1] == pytest.approx(10 / 3, abs=1e-6)
    assert math.isnan(out[2])
    assert out[3] == pytest.approx(4.25 / 0.875, abs=1e-6)
    assert plots.ema([1.0, 3.0], 0.0) == [1.0, 3.0]
    with pytest.raises(ValueError, match=r"smoothing weight must be in \[0, 1\), got 1"):
        plots.ema([1.0], 1)


def test_eta_and_duration() -> None:
    # 2 s per step between steps 10 and 20 (20 s), 80 steps left -> 160 s.
    assert plots.eta_s([10, 15, 20], [100.0, 110.0, 120.0], 100) == pytest.approx(160.0)
    assert plots.eta_s([10], [100.0], 100) is None
    assert plots.eta_s([10, 20], [100.0, 120.0], None) is None
    assert plots.format_duration(3725) == "1h 02m 05s"
    assert plots.format_duration(65) == "1m 05s"
    assert plots.format_duration(None) == "-"


def test_overlay_figure_one_line_per_run_per_metric(ctx) -> None:
    a, b = ctx.store.create_run("a"), ctx.store.create_run("b")
    ctx.store.log_metrics(a.id, 1, {mk.TOTAL_REWARD: 0.1, mk.KL_DIV: 0.0})
    ctx.store.log_metrics(b.id, 1, {mk.TOTAL_REWARD: 0.2})
    data = ctx.store.compare_runs([a.id, b.id])
    fig = plots.overlay_figure({"#1 a": data[a.id], "#2 b": data[b.id]}, [mk.TOTAL_REWARD, mk.KL_DIV])
    lines = [(t.name, t.showlegend, list(t.y)) for t in fig.data]
    assert lines == [("#1 a", True, [0.1]), ("#1 a", False, [0.0]), ("#2 b", True, [0.2])]
    assert plots.metric_names(data.values()) == [mk.KL_DIV, mk.TOTAL_REWARD]


def test_the_vllm_sampler_mismatch_is_charted_and_comparable_once_logged() -> None:
    from studio.monitor_charts import present_by_panel

    logged = [mk.LOSS, mk.SAMPLER_LOGP_DIFF, mk.IS_WEIGHT]
    assert present_by_panel(logged)["Optimisation"] == [mk.LOSS, mk.SAMPLER_LOGP_DIFF, mk.IS_WEIGHT]
    assert mk.SAMPLER_LOGP_DIFF not in present_by_panel([mk.LOSS])["Optimisation"]  # hf runs: no chart
    assert {mk.SAMPLER_LOGP_DIFF, mk.IS_WEIGHT} <= set(mk.ALL_METRICS)  # the Runs compare list
    assert plots.metric_names([{mk.SAMPLER_LOGP_DIFF: None, mk.LOSS: None}]) == [
        mk.LOSS,
        mk.SAMPLER_LOGP_DIFF,
    ]


def test_the_grpo_panel_charts_every_reward_metric_of_the_run_after_the_total() -> None:
    from studio.monitor_charts import present_by_panel

    logged = [mk.TOTAL_REWARD, mk.reward_metric("format"), mk.reward_metric("brevity"), mk.KL_DIV, mk.LOSS]
    assert present_by_panel(logged)["GRPO"] == [
        mk.KL_DIV,
        mk.TOTAL_REWARD,
        "reward/brevity",
        "reward/format",
    ]
    assert present_by_panel([mk.LOSS])["GRPO"] == []
    assert plots.panel_metrics(("a", "reward/"), ["reward/z", "a", "rewardless", "reward/a"]) == [
        "a",
        "reward/a",
        "reward/z",
    ]

"""Plot helpers: smoothing, incremental merging, ETA, and figures built from run-DB data."""

from __future__ import annotations

import math

import pytest

from studio import plots
from trainer.core import metrics_keys as mk
from trainer.rundb import MetricSeries


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


def test_merge_points_appends_and_overwrites_relogged_steps() -> None:
    first = {"a": MetricSeries("a", (1, 2), (0.1, 0.2), (10.0, 11.0))}
    cache, last = plots.merge_points({}, first)
    assert (cache["a"], last) == (([1, 2], [0.1, 0.2], [10.0, 11.0]), 2)
    more = {
        "a": MetricSeries("a", (2, 3), (0.25, 0.3), (12.0, 13.0)),
        "b": MetricSeries("b", (3,), (5.0,), (13.0,)),
    }
    cache2, last2 = plots.merge_points(cache, more)
    assert cache2["a"] == ([1, 2, 3], [0.1, 0.25, 0.3], [10.0, 12.0, 13.0])
    assert (cache2["b"], last2) == (([3], [5.0], [13.0]), 3)
    assert cache["a"] == ([1, 2], [0.1, 0.2], [10.0, 11.0])  # the input is not mutated


def test_eta_and_duration() -> None:
    # 2 s per step between steps 10 and 20 (20 s), 80 steps left -> 160 s.
    assert plots.eta_s([10, 15, 20], [100.0, 110.0, 120.0], 100) == pytest.approx(160.0)
    assert plots.eta_s([10], [100.0], 100) is None
    assert plots.eta_s([10, 20], [100.0, 120.0], None) is None
    assert plots.format_duration(3725) == "1h 02m 05s"
    assert plots.format_duration(65) == "1m 05s"
    assert plots.format_duration(None) == "-"


def test_panel_figure_from_store_data(ctx) -> None:
    run = ctx.store.create_run("r")
    for step in (1, 2, 3):
        ctx.store.log_metrics(run.id, step, {mk.TOTAL_REWARD: step / 10, mk.KL_DIV: 0.01 * step})
    cache, last = plots.merge_points({}, ctx.store.metrics_since(run.id))
    assert last == 3
    assert ctx.store.metrics_since(run.id, after_step=last) == {}
    fig = plots.panel_figure("GRPO", mk.SEED_GRPO_METRICS, cache, smoothing=0.0)
    titles = [a.text for a in fig.layout.annotations]
    assert titles == [mk.KL_DIV, mk.TOTAL_REWARD]  # only the metrics that have points
    by_name = {t.name: t for t in fig.data}
    assert list(by_name[mk.TOTAL_REWARD].y) == pytest.approx([0.1, 0.2, 0.3])
    assert list(by_name[mk.TOTAL_REWARD].x) == [1, 2, 3]
    smoothed = plots.panel_figure("GRPO", [mk.TOTAL_REWARD], cache, smoothing=0.5)
    assert len(smoothed.data) == 2  # raw (faint) + smoothed
    assert list(smoothed.data[1].y) == pytest.approx(plots.ema([0.1, 0.2, 0.3], 0.5))


def test_empty_panel_says_it_waits() -> None:
    fig = plots.panel_figure("Timings", mk.TIMING_METRICS, {})
    assert [a.text for a in fig.layout.annotations] == ["waiting for the first logged step"]


def test_constant_metric_gets_a_padded_axis() -> None:
    cache = {mk.LEARNING_RATE: ([1, 2, 3], [1e-3, 1e-3, 1e-3], [0.0, 1.0, 2.0])}
    fig = plots.panel_figure("Optimisation", [mk.LEARNING_RATE], cache)
    assert tuple(fig.layout.yaxis.range) == pytest.approx((0.0005, 0.0015))


def test_overlay_figure_one_line_per_run_per_metric(ctx) -> None:
    a, b = ctx.store.create_run("a"), ctx.store.create_run("b")
    ctx.store.log_metrics(a.id, 1, {mk.TOTAL_REWARD: 0.1, mk.KL_DIV: 0.0})
    ctx.store.log_metrics(b.id, 1, {mk.TOTAL_REWARD: 0.2})
    data = ctx.store.compare_runs([a.id, b.id])
    fig = plots.overlay_figure({"#1 a": data[a.id], "#2 b": data[b.id]}, [mk.TOTAL_REWARD, mk.KL_DIV])
    lines = [(t.name, t.showlegend, list(t.y)) for t in fig.data]
    assert lines == [("#1 a", True, [0.1]), ("#1 a", False, [0.0]), ("#2 b", True, [0.2])]
    assert plots.metric_names(data.values()) == [mk.KL_DIV, mk.TOTAL_REWARD]

"""Plotly figures of run metrics, and the small pure helpers behind them (smoothing, merging, ETA).

The Monitor's live charts are drawn in the page (``studio.monitor_charts``); the figures here are
the Runs and Evaluate tabs' (built whole: they change when the user asks, not every tick).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from trainer.core import metrics_keys as mk
from trainer.rundb import MetricSeries

# name -> (steps, values, wall_times), as plain lists so a gr.State can hold and extend them.
Series = dict[str, tuple[list[int], list[float], list[float]]]

# The Monitor's panels: title -> metric names (one chart each). A name ending in "/" is a prefix: every
# metric of the run under it, sorted (``reward/`` -> one chart per reward of the run's grpo.rewards).
PANELS: dict[str, tuple[str, ...]] = {
    # Held-out accuracy beside the train accuracy reward, on the first screen: the climb a newcomer
    # waits for (it has points only at eval_steps; the chart appears with the first one).
    "GRPO": (
        *mk.SEED_GRPO_METRICS[:4],
        mk.EVAL_ACCURACY,
        mk.TOTAL_REWARD,
        mk.REWARD_PREFIX,
        *[m for m in mk.SEED_GRPO_METRICS[4:] if m != mk.TOTAL_REWARD],
    ),
    "Optimisation": (
        mk.LOSS,
        mk.LEARNING_RATE,
        mk.GRAD_NORM,
        mk.CLIP_RATIO,
        mk.COMPLETION_LENGTH,
        mk.REWARD_STD,
        mk.ENTROPY,
        mk.ZERO_STD_FRACTION,
        mk.SAMPLING_ROUNDS,
        *mk.SAMPLER_METRICS,  # vLLM runs only: a chart appears once the metric has points
    ),
    "Timings": (
        mk.TIME_GENERATE_S,
        mk.TIME_SCORE_S,
        mk.TIME_BACKWARD_S,
        mk.TIME_STEP_S,
        mk.TOKENS_PER_S,
        mk.VISION_ITEMS,
        mk.PREFILL_TOKENS,
        mk.TRAIN_FORWARD_TOKENS,
    ),
}
PLOT_COLUMNS = 3
PALETTE = ("#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3", "#ff6692", "#b6e880")


def panel_metrics(panel: Sequence[str], names: Iterable[str]) -> list[str]:
    """The metrics of ``names`` a panel shows, in its order; a prefix entry (``reward/``) takes every
    name under it, sorted."""
    names = set(names)
    out: list[str] = []
    for entry in panel:
        if entry.endswith("/"):
            out += sorted(n for n in names if n.startswith(entry) and n not in out)
        elif entry in names:
            out.append(entry)
    return out


def ema(values: Sequence[float], weight: float) -> list[float]:
    """TensorBoard-style smoothing: ``s_t = weight * s_{t-1} + (1 - weight) * x_t``, debiased.

    The debias divides by ``1 - weight**n`` (n = points seen) so the curve starts at the first
    value instead of at 0. NaN points stay NaN and do not move the average. ``weight`` in [0, 1).
    """
    if not 0 <= weight < 1:
        raise ValueError(f"smoothing weight must be in [0, 1), got {weight}")
    out: list[float] = []
    acc, n = 0.0, 0
    for x in values:
        if math.isnan(x):
            out.append(math.nan)
            continue
        n += 1
        acc = weight * acc + (1 - weight) * x
        out.append(acc / (1 - weight**n))
    return out


def last_step(cache: Series) -> int | None:
    steps = [s[-1] for s, _, _ in cache.values() if s]
    return max(steps) if steps else None


def eta_s(steps: Sequence[int], wall_times: Sequence[float], total: int | None) -> float | None:
    """Seconds left at the average pace of the logged steps (None without two points or a total)."""
    if total is None or len(steps) < 2 or steps[-1] <= steps[0]:
        return None
    per_step = (wall_times[-1] - wall_times[0]) / (steps[-1] - steps[0])
    return max(0.0, (total - steps[-1]) * per_step)


def format_duration(seconds: float | None) -> str:
    """``3725`` -> ``"1h 02m 05s"``; ``None`` -> ``"-"``."""
    if seconds is None or math.isnan(seconds):
        return "-"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    if h:
        return f"{h}h {m:02d}m {sec:02d}s"
    return f"{m}m {sec:02d}s" if m else f"{sec}s"


def overlay_figure(
    runs: Mapping[str, Mapping[str, MetricSeries]], names: Sequence[str], smoothing: float = 0.0
) -> go.Figure:
    """One subplot per metric, one colored line per run (legend: run labels)."""
    names = list(names) or [mk.TOTAL_REWARD]
    rows = math.ceil(len(names) / PLOT_COLUMNS)
    cols = min(PLOT_COLUMNS, len(names))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=names, horizontal_spacing=0.08)
    for r, (label, metrics) in enumerate(runs.items()):
        color = PALETTE[r % len(PALETTE)]
        for i, name in enumerate(names):
            row, col = divmod(i, cols)
            series = metrics.get(name)
            if series is None:
                continue
            values = ema(series.values, smoothing) if smoothing > 0 else list(series.values)
            fig.add_trace(
                go.Scatter(
                    x=list(series.steps),
                    y=values,
                    mode="lines",
                    line={"color": color, "width": 2},
                    name=label,
                    legendgroup=label,
                    showlegend=i == 0,
                ),
                row=row + 1,
                col=col + 1,
            )
    _style(fig, "Runs compared", height=280 * rows + 60)
    return fig


def metric_names(runs: Iterable[Mapping[str, MetricSeries]]) -> list[str]:
    """Every metric any of the runs logged, the seed GRPO metrics first."""
    seen = {name for metrics in runs for name in metrics}
    known = [n for n in mk.ALL_METRICS + mk.EVAL_METRICS + mk.TEMPORAL_METRICS if n in seen]
    return known + sorted(seen - set(known))


def _style(fig: go.Figure, title: str, height: int) -> None:
    fig.update_layout(
        title={"text": title, "x": 0.01, "font": {"size": 16}},
        height=max(height, 300),
        margin={"l": 40, "r": 20, "t": 70, "b": 30},
        template="plotly_white",
        legend={"orientation": "v", "x": 1.02, "y": 1, "xanchor": "left"},
    )
    fig.update_annotations(font_size=12)
    fig.update_xaxes(title_text="step", title_font_size=10)
    fig.update_yaxes(tickformat=".4~g")


def task_bars_figure(
    tasks: Sequence[str], series: Sequence[tuple[str, Sequence[float | None], Sequence[str]]], title: str
) -> go.Figure:
    """Grouped bars: accuracy per task (x) for each model (one colour each: base, step N, ...);
    each bar's text carries its accuracy and, for checkpoints, the change against the base."""
    fig = go.Figure()
    for label, values, texts in series:
        fig.add_bar(
            name=label,
            x=list(tasks),
            y=[v if v is not None else 0.0 for v in values],
            text=list(texts),
            textposition="outside",
            cliponaxis=False,
            hovertemplate=f"{label}<br>%{{x}}: %{{y:.1%}}<extra></extra>",
        )
    fig.update_layout(
        barmode="group",
        title={"text": title, "x": 0.01, "font": {"size": 16}},
        height=380,
        margin={"l": 50, "r": 20, "t": 60, "b": 40},
        template="plotly_white",
        yaxis={"title": "accuracy", "tickformat": ".0%", "range": [0, 1.15]},
        legend={"orientation": "h", "y": -0.15},
    )
    return fig


def answer_distribution_figure(distributions: Mapping[str, Mapping[str, int]], title: str) -> go.Figure:
    """Grouped bars of how often each model chose each letter ("none": no readable answer): a model
    that always says "A" shows one tall bar."""
    letters = sorted({k for d in distributions.values() for k in d}, key=lambda k: (k == "none", k))
    fig = go.Figure()
    for label, counts in distributions.items():
        total = sum(counts.values()) or 1
        fig.add_bar(
            name=label,
            x=letters,
            y=[counts.get(k, 0) / total for k in letters],
            customdata=[counts.get(k, 0) for k in letters],
            hovertemplate=f"{label}<br>%{{x}}: %{{customdata}} answers (%{{y:.0%}})<extra></extra>",
        )
    fig.update_layout(
        barmode="group",
        title={"text": title, "x": 0.01, "font": {"size": 16}},
        height=300,
        margin={"l": 50, "r": 20, "t": 60, "b": 40},
        template="plotly_white",
        yaxis={"title": "share of answers", "tickformat": ".0%"},
        legend={"orientation": "h", "y": -0.2},
    )
    return fig

"""What the Monitor's live charts need from the server: panel layouts once, then only new points.

The Monitor used to rebuild every Plotly figure (three panels, ~26 subplots, every point of the run)
on each 3 s tick; the browser re-rendered all of it, its main thread stayed busy and its JS heap grew
with the run's length. Now the page holds the points itself (``studio/static/monitor_charts.js``) and
each tick sends a *delta*, a JSON object:

    {"run_id": 7, "reset": true|false,
     "panels": {title: {"layout": {...}, "metrics": [{"name", "color", "xaxis", "yaxis"}, ...]}},
     "points": {name: {"steps": [...], "values": [...], "replace": true|false}}}

- ``reset``: the page drops what it holds (another run, or a fresh session) and takes everything in
  the delta; ``panels`` then lists every panel, ``points`` every metric (history thinned to
  ``SENT_POINTS``, see :func:`thin`).
- ``panels`` otherwise lists only panels whose metrics changed (a metric logged for the first time).
- ``points[name].replace``: a point the page already has changed (a resumed run re-logs the steps
  after its checkpoint): the page replaces that metric's whole series; otherwise it appends, keeping
  only steps after its last one, so a delta applied twice or late changes nothing.
- NaN is sent as ``null`` (JSON has no NaN; Plotly draws a gap).

The server keeps, per browser session, a mirror of the points it sent (``plots.Series``): it is what
the delta is computed against. Smoothing is the page's job (the slider's value never costs a tick).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from plotly.subplots import make_subplots

from studio import plots
from trainer.rundb import MetricSeries

# Points per metric sent on a reset, and kept by the page: older history thinned, the newest
# RECENT_POINTS at full resolution. 26 metrics x 2 traces x 1,500 points keep a 10,000-step run's
# page small and its redraws quick.
SENT_POINTS = 1500
RECENT_POINTS = 500
WAITING_TEXT = "waiting for the first logged step"


def thin(steps: Sequence[int], values: Sequence[float], budget: int = SENT_POINTS,
         recent: int = RECENT_POINTS) -> tuple[list[int], list[float]]:  # fmt: skip
    """At most ``budget`` points: the last ``recent`` kept as they are, the older ones evenly thinned
    (every k-th, the first always kept) into the rest of the budget.

    ``budget`` > ``recent`` >= 0. Example: 10 points, budget 6, recent 2 -> the 8 older points thinned
    to 4 (every 2nd: steps 0, 2, 4, 6) + the last 2 (8, 9).
    """
    if not budget > recent >= 0:
        raise ValueError(f"need budget > recent >= 0, got budget={budget}, recent={recent}")
    n = len(steps)
    if n <= budget:
        return list(steps), list(values)
    cut = n - recent
    stride = math.ceil(cut / (budget - recent))
    keep = list(range(0, cut, stride)) + list(range(cut, n))
    return [steps[i] for i in keep], [values[i] for i in keep]


def _json_values(values: Sequence[float]) -> list[float | None]:
    return [None if math.isnan(v) else v for v in values]


def panel_spec(title: str, present: Sequence[str]) -> dict[str, Any]:
    """One panel's Plotly layout and where each metric is drawn; ``present`` are the metrics of the
    panel that have points, in the panel's order. No metric yet: a layout that says it waits.

    Cached: make_subplots takes ~50 ms, and every viewer's reset asks for the same few layouts.
    Callers must not mutate the result.
    """
    return _panel_spec(title, tuple(present))


@functools.lru_cache(maxsize=128)
def _panel_spec(title: str, present: tuple[str, ...]) -> dict[str, Any]:
    if not present:
        layout = {
            "annotations": [{"text": WAITING_TEXT, "showarrow": False, "font": {"size": 14},
                             "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5}],
            "xaxis": {"visible": False},
            "yaxis": {"visible": False},
        }  # fmt: skip
        return {"layout": {**layout, **_style(title, height=160)}, "metrics": []}
    rows = math.ceil(len(present) / plots.PLOT_COLUMNS)
    fig = make_subplots(
        rows=rows, cols=plots.PLOT_COLUMNS, subplot_titles=list(present), horizontal_spacing=0.08
    )
    fig.update_annotations(font_size=12)
    fig.update_xaxes(title_text="step", title_font_size=10)
    fig.update_yaxes(tickformat=".4~g")
    # The template stays a name: its expanded JSON would be ~10 kB per panel per reset.
    layout = {k: v for k, v in fig.layout.to_plotly_json().items() if k != "template"}
    layout.update(_style(title, height=260 * rows))
    metrics = []
    for i, name in enumerate(present):
        index = "" if i == 0 else str(i + 1)  # make_subplots numbers axes row by row: x, x2, x3, ...
        color = plots.PALETTE[i % len(plots.PALETTE)]
        metrics.append({"name": name, "color": color, "xaxis": f"x{index}", "yaxis": f"y{index}"})
    return {"layout": layout, "metrics": metrics}


def _style(title: str, height: int) -> dict[str, Any]:
    return {
        "title": {"text": title, "x": 0.01, "font": {"size": 16}},
        "height": max(height, 300) if height > 160 else height,
        "margin": {"l": 50, "r": 20, "t": 70, "b": 30},
        "template": "plotly_white",
        "showlegend": False,
    }


def present_by_panel(series: plots.Series) -> dict[str, list[str]]:
    """Each panel's metrics that have points, in the panel's order."""
    return {
        title: [n for n in names if series.get(n, ([], [], []))[0]] for title, names in plots.PANELS.items()
    }


def _merge_one(held: tuple[list[int], list[float], list[float]], new: MetricSeries) -> bool:
    """Merge ``new`` into ``held`` in place; True when a held point changed or one was inserted
    before the end (the page must then replace the series; otherwise it only appends)."""
    steps, values, walls = held
    changed = False
    for step, value, wall in zip(new.steps, new.values, new.wall_times, strict=True):
        if not steps or step > steps[-1]:
            steps.append(step)
            values.append(value)
            walls.append(wall)
            continue
        i = next((j for j in range(len(steps) - 1, -1, -1) if steps[j] <= step), -1)
        if i >= 0 and steps[i] == step:
            same = values[i] == value or (math.isnan(values[i]) and math.isnan(value))
            values[i], walls[i] = value, wall
            changed = changed or not same
        else:
            steps.insert(i + 1, step)
            values.insert(i + 1, value)
            walls.insert(i + 1, wall)
            changed = True
    return changed


def chart_delta(held: plots.Series, fetched: Mapping[str, MetricSeries], run_id: int,
                reset: bool) -> tuple[plots.Series, dict[str, Any] | None]:  # fmt: skip
    """Merge freshly ``fetched`` points into the session's mirror ``held``; return the new mirror
    and the delta for the page (None when the page already has everything).

    ``held`` is not mutated (a gr.State value may be shared by concurrent events).
    """
    out: plots.Series = {name: (list(s), list(v), list(w)) for name, (s, v, w) in held.items()}
    before = present_by_panel(out)
    points: dict[str, dict[str, Any]] = {}
    for name, series in fetched.items():
        if not series.steps:
            continue
        start = len(out.get(name, ([], [], []))[0])
        target = out.setdefault(name, ([], [], []))
        changed = _merge_one(target, series)
        steps, values, _ = target
        if changed:
            sent_steps, sent_values = thin(steps, values)
            points[name] = {"steps": sent_steps, "values": _json_values(sent_values), "replace": True}
        elif len(steps) > start:
            points[name] = {"steps": steps[start:], "values": _json_values(values[start:]), "replace": False}
    after = present_by_panel(out)
    if reset:
        panels = {title: panel_spec(title, names) for title, names in after.items()}
        points = {}
        for name, (steps, values, _) in out.items():
            if steps:
                sent_steps, sent_values = thin(steps, values)
                points[name] = {"steps": sent_steps, "values": _json_values(sent_values), "replace": True}
    else:
        panels = {title: panel_spec(title, names) for title, names in after.items() if names != before[title]}
    if not reset and not panels and not points:
        return out, None
    return out, {"run_id": run_id, "reset": reset, "panels": panels, "points": points}


def delta_json(delta: dict[str, Any]) -> str:
    """The delta as the chart component's value (compact; ``allow_nan=False`` proves NaN became null)."""
    return json.dumps(delta, separators=(",", ":"), allow_nan=False)

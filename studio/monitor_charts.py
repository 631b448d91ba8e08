"""What the Monitor's live charts need from the server: panel layouts once, then only new points.

The Monitor used to rebuild every Plotly figure (three panels, ~26 subplots, every point of the run)
on each 3 s tick, through a gr.Timer event with eight outputs: the browser re-rendered all of it,
its main thread stayed busy and its JS heap grew with the run's length. Now the page polls
(``studio/static/monitor_charts.js``, a plain request to the chart component's server function, not
a Gradio event) saying what it holds, and gets a *delta*, a JSON object:

    request:  {"run_id": 7, "attempt": 2 | null, "last_step": 41 | null, "metrics": [names held]}
    delta:    {"reset": true|false,
               "panels": {title: {"title", "metrics": [{"name", "color"}, ...], "waiting": str|null}},
               "points": {name: {"steps": [...], "values": [...]}}}

- ``reset``: the page holds nothing of this run's attempt (another run, a fresh page, or a resume
  re-logged steps after its checkpoint): it drops what it holds and takes everything; ``panels``
  lists every panel, ``points`` every metric, history thinned to ``SENT_POINTS`` (:func:`thin`).
- Otherwise the points of steps from ``last_step`` on (the last held step is read again: an eval
  point is logged for a step after its training metrics), and ``panels`` only for panels whose
  metrics changed (a metric logged for the first time). The page appends only steps after the last
  one it holds, so a delta applied twice or late changes nothing.
- NaN is sent as ``null`` (JSON has no NaN; Plotly draws a gap).

The protocol is stateless on the server: nothing is kept per viewer.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from studio import plots
from trainer.rundb import MetricSeries

# Points per metric sent on a reset; the page keeps at most 2x this: older history thinned, the newest
# RECENT_POINTS at full resolution. 26 metrics x 2 traces x 3,000 points keep a 10,000-step run's
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
    """One panel: its metrics that have points (``present``, in the panel's order), each drawn as
    its own small chart in the page with its colour. No metric yet: the page says it waits.

    One chart per metric rather than one figure of subplots: a Plotly redraw lays out the whole
    figure, so appending a point to one panel of 9 subplots cost ~150 ms of the page's main thread
    (measured, 2 cores) against ~20 ms per small chart, and only the charts on screen are redrawn.
    """
    palette = plots.PALETTE
    metrics = [{"name": name, "color": palette[i % len(palette)]} for i, name in enumerate(present)]
    return {"title": title, "metrics": metrics, "waiting": WAITING_TEXT if not present else None}


def present_by_panel(names: Collection[str]) -> dict[str, list[str]]:
    """Each panel's metrics among ``names``, in the panel's order."""
    return {title: plots.panel_metrics(panel, names) for title, panel in plots.PANELS.items()}


def chart_delta(
    fetched: Mapping[str, MetricSeries], held: Collection[str], reset: bool
) -> dict[str, Any] | None:
    """The delta for a page holding the metrics ``held``, given the points ``fetched`` for it (every
    point on a reset, else those from its last step on); None when there is nothing to send."""
    points = {
        name: {"steps": list(s.steps), "values": list(s.values)} for name, s in fetched.items() if s.steps
    }
    if reset:
        for name, p in points.items():
            steps, values = thin(p["steps"], p["values"])
            points[name] = {"steps": steps, "values": values}
        panels = {title: panel_spec(title, names) for title, names in present_by_panel(set(points)).items()}
    else:
        before = present_by_panel(set(held))
        after = present_by_panel(set(held) | set(points))
        panels = {title: panel_spec(title, names) for title, names in after.items() if names != before[title]}
        if not points:
            return None
    for p in points.values():
        p["values"] = _json_values(p["values"])
    return {"reset": reset, "panels": panels, "points": points}

"""The Monitor's chart deltas (studio.monitor_charts) and its tick: what is sent, and when nothing is."""

from __future__ import annotations

import json
import math

import pytest

from studio import monitor_charts, plots
from studio.context import StudioContext
from studio.supervisor import Supervisor
from studio.tabs import monitor
from trainer.core import metrics_keys as mk
from trainer.rundb import MetricSeries, Owner


def series(name: str, steps: list[int], values: list[float]) -> MetricSeries:
    return MetricSeries(name, tuple(steps), tuple(values), tuple(float(s) for s in steps))


def test_thin_keeps_the_recent_points_and_every_kth_older_one() -> None:
    # 10 points, budget 6, recent 2: the 8 older ones into 4 slots -> stride ceil(8/4) = 2.
    steps, values = monitor_charts.thin(list(range(10)), [s * 10.0 for s in range(10)], budget=6, recent=2)
    assert steps == [0, 2, 4, 6, 8, 9]
    assert values == [0.0, 20.0, 40.0, 60.0, 80.0, 90.0]
    # 11 points, budget 5, recent 1: 10 older into 4 slots -> stride ceil(10/4) = 3: 0, 3, 6, 9.
    assert monitor_charts.thin(list(range(11)), [0.0] * 11, budget=5, recent=1)[0] == [0, 3, 6, 9, 10]
    assert monitor_charts.thin([1, 2], [1.0, 2.0], budget=6, recent=2) == ([1, 2], [1.0, 2.0])
    with pytest.raises(ValueError, match="budget > recent"):
        monitor_charts.thin([1], [1.0], budget=2, recent=2)


def test_a_10000_step_history_is_sent_in_at_most_the_budget() -> None:
    steps = list(range(1, 10_001))
    sent, _ = monitor_charts.thin(steps, [1.0] * len(steps))
    assert len(sent) <= monitor_charts.SENT_POINTS
    assert sent[-monitor_charts.RECENT_POINTS :] == steps[-monitor_charts.RECENT_POINTS :]
    assert sent[0] == 1


def test_first_delta_resets_with_layouts_then_only_new_points_are_sent() -> None:
    first = {mk.TOTAL_REWARD: series(mk.TOTAL_REWARD, [1, 2], [0.1, 0.2])}
    held, delta = monitor_charts.chart_delta({}, first, run_id=7, reset=True)
    assert delta is not None and delta["reset"] is True and delta["run_id"] == 7
    assert list(delta["panels"]) == list(plots.PANELS)  # every panel, the empty ones say they wait
    grpo = delta["panels"]["GRPO"]
    assert [m["name"] for m in grpo["metrics"]] == [mk.TOTAL_REWARD]
    assert (grpo["metrics"][0]["xaxis"], grpo["metrics"][0]["yaxis"]) == ("x", "y")
    waiting = delta["panels"]["Timings"]
    assert (
        waiting["metrics"] == []
        and waiting["layout"]["annotations"][0]["text"] == monitor_charts.WAITING_TEXT
    )
    assert delta["points"] == {mk.TOTAL_REWARD: {"steps": [1, 2], "values": [0.1, 0.2], "replace": True}}

    # The same points again (the last held step is always re-read): nothing to send.
    again, none = monitor_charts.chart_delta(
        held, {mk.TOTAL_REWARD: series(mk.TOTAL_REWARD, [2], [0.2])}, 7, False
    )
    assert none is None and again == held

    # Step 3 and a first KL point: the new points only, and the GRPO panel laid out again for kl.
    more = {
        mk.TOTAL_REWARD: series(mk.TOTAL_REWARD, [2, 3], [0.2, 0.3]),
        mk.KL_DIV: series(mk.KL_DIV, [3], [0.01]),
    }
    held2, delta2 = monitor_charts.chart_delta(held, more, 7, False)
    assert delta2 is not None and delta2["reset"] is False
    assert delta2["points"][mk.TOTAL_REWARD] == {"steps": [3], "values": [0.3], "replace": False}
    assert delta2["points"][mk.KL_DIV] == {"steps": [3], "values": [0.01], "replace": False}
    assert list(delta2["panels"]) == ["GRPO"]
    names = [m["name"] for m in delta2["panels"]["GRPO"]["metrics"]]
    assert names == [mk.KL_DIV, mk.TOTAL_REWARD]  # the panel's order, not arrival order
    assert [m["xaxis"] for m in delta2["panels"]["GRPO"]["metrics"]] == ["x", "x2"]
    assert held[mk.TOTAL_REWARD][0] == [1, 2]  # the input is not mutated
    assert held2[mk.TOTAL_REWARD][0] == [1, 2, 3]


def test_a_relogged_step_with_another_value_replaces_the_series() -> None:
    held, _ = monitor_charts.chart_delta({}, {"a": series("a", [1, 2, 3], [1.0, 2.0, 3.0])}, 1, True)
    # A resumed run logs step 3 again with another value, and step 4.
    _, delta = monitor_charts.chart_delta(held, {"a": series("a", [3, 4], [3.5, 4.0])}, 1, False)
    assert delta is not None
    assert delta["points"]["a"] == {"steps": [1, 2, 3, 4], "values": [1.0, 2.0, 3.5, 4.0], "replace": True}
    # A point inserted before the end (an eval written late for an older step) also replaces.
    _, inserted = monitor_charts.chart_delta(held, {"a": series("a", [2, 3], [2.0, 3.0])}, 1, False)
    assert inserted is None
    held_gap, _ = monitor_charts.chart_delta({}, {"b": series("b", [1, 3], [1.0, 3.0])}, 1, True)
    _, late = monitor_charts.chart_delta(held_gap, {"b": series("b", [2, 3], [2.0, 3.0])}, 1, False)
    assert late is not None and late["points"]["b"]["steps"] == [1, 2, 3] and late["points"]["b"]["replace"]


def test_nan_is_sent_as_null() -> None:
    _, delta = monitor_charts.chart_delta({}, {"a": series("a", [1, 2], [math.nan, 1.0])}, 1, True)
    assert delta is not None
    text = monitor_charts.delta_json(delta)
    assert json.loads(text)["points"]["a"]["values"] == [None, 1.0]


# ---- the tick ----------------------------------------------------------------------------------


def is_skip(value: object) -> bool:
    import gradio as gr

    return isinstance(value, type(gr.skip())) and value == gr.skip()


def tick_outputs(out: tuple) -> dict:
    keys = ("state", "status", "progress", "charts", "log", "rollout_steps", "picker", "timer")
    return dict(zip(keys, out, strict=True))


VISIBLE = {"visible": True, "log_open": False, "rollouts_open": True}


def test_the_tick_sends_only_what_changed_and_stops_the_timer_when_the_run_ends(ctx: StudioContext) -> None:
    run = ctx.store.create_run("r")
    ctx.store.claim_run(run.id)
    for step in (1, 2):
        ctx.store.log_metrics(run.id, step, {mk.TOTAL_REWARD: step / 10})
    h = monitor.MonitorHandlers(ctx, Supervisor(ctx))

    first = tick_outputs(h.tick(run.id, monitor.empty_state(), VISIBLE))
    delta = json.loads(first["charts"])
    assert delta["reset"] is True and delta["seq"] == 1
    assert delta["points"][mk.TOTAL_REWARD]["steps"] == [1, 2]
    assert "running" in first["status"] and "step 2" in first["progress"]
    assert first["timer"].active is True
    assert is_skip(first["log"])  # the log section is closed: the log is not read

    # Nothing new: the status and the charts are not sent again, the timer is left alone.
    second = tick_outputs(h.tick(run.id, first["state"], VISIBLE))
    assert is_skip(second["charts"]) and is_skip(second["status"]) and is_skip(second["timer"])

    # The eval point of step 2, logged after a tick had seen step 2's training metrics, still arrives.
    ctx.store.log_metrics(run.id, 2, {mk.EVAL_ACCURACY: 0.75})
    third = tick_outputs(h.tick(run.id, second["state"], VISIBLE))
    assert json.loads(third["charts"])["points"][mk.EVAL_ACCURACY]["steps"] == [2]

    # The log, once its section is open.
    opened = tick_outputs(h.tick(run.id, third["state"], {**VISIBLE, "log_open": True}))
    assert isinstance(opened["log"], str)

    ctx.store.end_run(run.id, Owner.current(), "finished")
    ended = tick_outputs(h.tick(run.id, opened["state"], VISIBLE))
    assert "finished" in ended["status"] and ended["timer"].active is False


def test_a_hidden_monitor_reads_nothing_and_showing_it_again_resets_the_charts(ctx: StudioContext) -> None:
    run = ctx.store.create_run("r")
    ctx.store.claim_run(run.id)
    ctx.store.log_metrics(run.id, 1, {mk.TOTAL_REWARD: 0.1})
    h = monitor.MonitorHandlers(ctx, Supervisor(ctx))
    shown = tick_outputs(h.tick(run.id, monitor.empty_state(), VISIBLE))
    view, st = h.hide(VISIBLE), shown["state"]
    hidden = tick_outputs(h.tick(run.id, st, view))
    assert all(is_skip(hidden[k]) for k in ("status", "progress", "charts", "log", "rollout_steps", "picker"))
    assert hidden["timer"].active is False
    view, st = h.show(view, hidden["state"])
    again = tick_outputs(h.tick(run.id, st, view))
    delta = json.loads(again["charts"])
    assert delta["reset"] is True and delta["points"][mk.TOTAL_REWARD]["steps"] == [1]
    assert delta["seq"] > json.loads(shown["charts"])["seq"]  # a new value: the page applies it
    assert again["timer"].active is True and "running" in again["status"]

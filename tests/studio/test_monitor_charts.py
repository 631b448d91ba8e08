"""The Monitor's chart deltas (studio.monitor_charts) and its tick: what is sent, and when nothing is."""

from __future__ import annotations

import json
import math
import time

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


def test_a_reset_sends_every_panel_then_only_new_points_are_sent() -> None:
    first = {mk.TOTAL_REWARD: series(mk.TOTAL_REWARD, [1, 2], [0.1, 0.2])}
    delta = monitor_charts.chart_delta(first, held=(), reset=True)
    assert delta is not None and delta["reset"] is True
    assert list(delta["panels"]) == list(plots.PANELS)  # every panel, the empty ones say they wait
    grpo = delta["panels"]["GRPO"]
    assert [m["name"] for m in grpo["metrics"]] == [mk.TOTAL_REWARD]
    assert grpo["waiting"] is None and grpo["metrics"][0]["color"] == plots.PALETTE[0]
    waiting = delta["panels"]["Timings"]
    assert waiting["metrics"] == [] and waiting["waiting"] == monitor_charts.WAITING_TEXT
    assert delta["points"] == {mk.TOTAL_REWARD: {"steps": [1, 2], "values": [0.1, 0.2]}}

    # Nothing fetched after the page's last step: nothing to send.
    assert monitor_charts.chart_delta({}, held=[mk.TOTAL_REWARD], reset=False) is None

    # Step 3 and a first KL point: the points, and the GRPO panel laid out again for kl.
    more = {
        mk.TOTAL_REWARD: series(mk.TOTAL_REWARD, [2, 3], [0.2, 0.3]),
        mk.KL_DIV: series(mk.KL_DIV, [3], [0.01]),
    }
    delta2 = monitor_charts.chart_delta(more, held=[mk.TOTAL_REWARD], reset=False)
    assert delta2 is not None and delta2["reset"] is False
    assert delta2["points"][mk.TOTAL_REWARD] == {"steps": [2, 3], "values": [0.2, 0.3]}
    assert delta2["points"][mk.KL_DIV] == {"steps": [3], "values": [0.01]}
    assert list(delta2["panels"]) == ["GRPO"]
    names = [m["name"] for m in delta2["panels"]["GRPO"]["metrics"]]
    assert names == [mk.KL_DIV, mk.TOTAL_REWARD]  # the panel's order, not arrival order
    assert [m["color"] for m in delta2["panels"]["GRPO"]["metrics"]] == list(plots.PALETTE[:2])
    # Points of metrics the page holds already: no panel is laid out again.
    delta3 = monitor_charts.chart_delta(more, held=[mk.TOTAL_REWARD, mk.KL_DIV], reset=False)
    assert delta3 is not None and delta3["panels"] == {}


def test_a_reset_thins_a_long_history_and_nan_is_sent_as_null() -> None:
    steps = list(range(1, 4001))
    long = {"a": series("a", steps, [math.nan] + [1.0] * 3999)}
    delta = monitor_charts.chart_delta(long, held=(), reset=True)
    assert delta is not None
    sent = delta["points"]["a"]
    assert len(sent["steps"]) <= monitor_charts.SENT_POINTS and sent["steps"][-1] == 4000
    assert sent["values"][0] is None
    json.dumps(delta, allow_nan=False)  # the page's JSON.parse takes it


# ---- the live component's poll, and the events its news fire -----------------------------------


def is_skip(value: object) -> bool:
    import gradio as gr

    return isinstance(value, type(gr.skip())) and value == gr.skip()


def test_a_poll_sends_what_the_page_lacks_and_says_when_the_run_ends(ctx: StudioContext) -> None:
    run = ctx.store.create_run("r", config={"optim": {"max_steps": 10}})
    ctx.store.claim_run(run.id)
    for step in (1, 2):
        ctx.store.log_metrics(run.id, step, {mk.TOTAL_REWARD: step / 10, mk.TIME_STEP_S: 2.0})
    h = monitor.MonitorHandlers(ctx, Supervisor(ctx))

    first = h.poll({"run_id": run.id, "attempt": None, "last_step": None, "metrics": []})
    assert first["active"] is True and first["attempt"] == 1 and first["rollouts"] is None
    assert first["delta"]["reset"] is True and first["delta"]["points"][mk.TOTAL_REWARD]["steps"] == [1, 2]
    # 8 steps left at the median 2.0 s a step.
    assert "step 2 / 10 (20 %) - ETA 16s" in first["progress"]
    holds = {"run_id": run.id, "attempt": 1, "last_step": 2, "metrics": [mk.TOTAL_REWARD, mk.TIME_STEP_S]}

    # Nothing new: the last held step is read again, nothing to append; the news are the same.
    same = h.poll(holds)
    assert same["delta"]["reset"] is False and same["delta"]["panels"] == {}
    assert same["news"] == first["news"]

    # The eval point of step 2, logged after the page had step 2's training metrics, still arrives.
    ctx.store.log_metrics(run.id, 2, {mk.EVAL_ACCURACY: 0.75})
    late = h.poll(holds)
    assert late["delta"]["points"][mk.EVAL_ACCURACY] == {"steps": [2], "values": [0.75]}
    assert list(late["delta"]["panels"]) == ["GRPO"]  # beside the train accuracy reward

    # A page holding another attempt's points (a resume re-logs steps) gets everything again.
    assert h.poll({**holds, "attempt": 2})["delta"]["reset"] is True

    # The log's size is in the news only while the page has the log open.
    assert h.poll({**holds, "log_open": True})["news"] != same["news"]

    ctx.store.end_run(run.id, Owner.current(), "finished")
    ended = h.poll(holds)
    assert ended["active"] is False and ended["news"] != same["news"]
    assert "step 2 / 2 (100 %)" in ended["progress"]  # a finished run's last step is its whole run

    assert "999" in h.poll({"run_id": 999})["error"]  # a run that cannot be read: the error, named


def test_a_poll_of_a_time_budgeted_run_counts_down_its_budget(ctx: StudioContext) -> None:
    # Only a time budget: 60 s, max_steps 100000. 32 steps at 1.1 s, 35.2 s trained at the last one
    # (logged with a wall time ahead of the clock, so no time has passed since: exact numbers).
    config = {"optim": {"max_steps": 100_000}, "run": {"max_train_seconds": 60.0}}
    run = ctx.store.create_run("r", config=config)
    ctx.store.claim_run(run.id)
    ahead = time.time() + 3600
    for step in range(1, 33):
        values = {mk.TOTAL_REWARD: 0.5, mk.TIME_STEP_S: 1.1, mk.TIME_TRAIN_S: 1.1 * step}
        ctx.store.log_metrics(run.id, step, values, wall_time=ahead)
    h = monitor.MonitorHandlers(ctx, Supervisor(ctx))
    request = {"run_id": run.id, "attempt": None, "last_step": None, "metrics": []}
    # 35.2 / 60 = 59 % of the budget, 60 - 35.2 = 24.8 s left (not 99968 x 1.1 s).
    assert "step 32 (59 % of the 1m 00s time budget) - ETA 25s" in h.poll(request)["progress"]

    ctx.store.end_run(run.id, Owner.current(), "finished")
    assert "step 32 / 32 (100 %)" in h.poll(request)["progress"]  # ended by its budget at step 32


def test_news_update_the_status_rollouts_and_open_log_only_when_they_changed(ctx: StudioContext) -> None:
    run = ctx.store.create_run("r")
    ctx.store.claim_run(run.id)
    h = monitor.MonitorHandlers(ctx, Supervisor(ctx))
    closed, opened = monitor.initial_view(), {"log_open": True}
    st, status, log, steps, picker = h.on_news(run.id, monitor.empty_state(), closed)
    assert "running" in status and is_skip(log)
    assert picker.choices == [(f"#{run.id} r (running)", run.id)]
    st2, status2, log2, steps2, picker2 = h.on_news(run.id, st, closed)
    assert is_skip(status2) and is_skip(steps2) and is_skip(picker2)  # nothing changed, nothing sent
    _, _, log3, _, _ = h.on_news(run.id, st2, opened)
    assert isinstance(log3, str)
    ctx.store.end_run(run.id, Owner.current(), "aborted", reason="stopped by the user")
    _, status4, _, _, picker4 = h.on_news(run.id, st2, closed)
    assert "aborted" in status4 and "stopped by the user" in status4
    assert picker4.choices == [(f"#{run.id} r (aborted)", run.id)]


def test_refresh_rereads_the_runs_and_asks_the_page_to_poll(ctx: StudioContext) -> None:
    first = ctx.store.create_run("a")
    h = monitor.MonitorHandlers(ctx, Supervisor(ctx))
    picker, value = h.refresh(None)
    assert (
        picker.choices == [(f"#{first.id} a (queued)", first.id)] and json.loads(value)["run_id"] == first.id
    )
    second = ctx.store.create_run("b")
    picker2, value2 = h.refresh(first.id)  # the picked run stays picked; the new one is listed
    assert [v for _, v in picker2.choices] == [second.id, first.id]
    assert json.loads(value2)["run_id"] == first.id and value2 != value  # a new nonce: the page polls


def test_the_rollout_step_follows_the_newest_unless_an_older_one_is_read(ctx: StudioContext) -> None:
    from trainer.rundb import Rollout

    def log_rollout(run_id: int, step: int) -> None:
        rollout = Rollout(step=step, prompt_id="q", group_index=0, question="?", completion="(A)")
        ctx.store.log_rollouts(run_id, [rollout])

    first, second = ctx.store.create_run("a"), ctx.store.create_run("b")
    h = monitor.MonitorHandlers(ctx, Supervisor(ctx))
    log_rollout(first.id, 8)
    st, _, _, steps, _ = h.on_news(first.id, monitor.empty_state(), monitor.initial_view(), None)
    assert steps.value == 8
    log_rollout(first.id, 16)
    st, _, _, newer, _ = h.on_news(first.id, st, monitor.initial_view(), 8)  # the newest was shown
    assert newer.value == 16
    log_rollout(first.id, 24)
    _, _, _, kept, _ = h.on_news(first.id, st, monitor.initial_view(), 8)  # an older one is read
    assert kept.value == 8
    # Another run, with step 8 of the first still in the picker: never a value outside the choices.
    _, _, _, other, _ = h.on_news(second.id, st, monitor.initial_view(), 8)
    assert other.value is None and other.choices == []

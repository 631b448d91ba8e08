"""The app builds, serves HTTP, and its tabs' helpers show what the run DB holds."""

from __future__ import annotations

import os
import socket
import time
import urllib.request

import pytest

from studio import choices
from studio.context import StudioContext
from studio.tabs import monitor_views, runs
from trainer.core import metrics_keys as mk
from trainer.core.errors import StudioError
from trainer.rundb import ENDED_EARLY_EVENT, Owner, Rollout

LEAKS = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # see gradio_loops


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@LEAKS
def test_app_builds_six_tabs_in_order_with_findable_widgets(ctx: StudioContext, gradio_loops: None) -> None:
    import gradio as gr

    from studio.app import create_app

    demo = create_app(ctx)
    tabs = [b for b in demo.blocks.values() if isinstance(b, gr.Tab)]
    assert [t.label for t in tabs] == ["Datasets", "Train", "Monitor", "Runs", "Chat", "Evaluate"]
    ids = {b.elem_id for b in demo.blocks.values()}
    for elem_id in ("datasets-upload", "datasets-register", "train-launch", "train-grpo_alpha", "monitor-run",
                    "monitor-abort", "monitor-resume", "runs-table", "runs-delete"):  # fmt: skip
        assert elem_id in ids, elem_id
    assert sum(isinstance(b, gr.Timer) for b in demo.blocks.values()) >= 1
    # Every tab re-reads its lists when it is selected and when the page loads.
    config = demo.get_config_file()
    elem = {c["id"]: c.get("props", {}).get("elem_id") for c in config["components"]}
    on: dict[str, set] = {"select": set(), "load": set()}
    for dep in config["dependencies"]:
        for _target, event in dep["targets"]:
            if event in on:
                on[event].update(elem[o] for o in dep["outputs"])
    lists = {"datasets-registry", "datasets-pick", "train-dataset-pick", "monitor-run", "runs-table",
             "runs-select", "chat-model-a", "chat-model-b", "chat-sample-dataset", "eval-run",
             "eval-checkpoint", "eval-dataset"}  # fmt: skip
    assert lists <= on["select"] and lists <= on["load"], lists - (on["select"] & on["load"])


@LEAKS
def test_app_launches_and_answers_http(ctx: StudioContext, gradio_loops: None) -> None:
    from studio.app import launch_app

    abandoned = ctx.datasets_dir / ".staging" / "0123456789abcdef"
    abandoned.mkdir(parents=True)
    os.utime(abandoned, (time.time() - 2 * 24 * 3600,) * 2)
    demo, url = launch_app(ctx, port=free_port(), prevent_thread_lock=True)
    assert not abandoned.exists()  # cleaned at start
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            page = response.read().decode()
            assert response.status == 200
        assert "gradio" in page.lower()
        with urllib.request.urlopen(url + "config", timeout=30) as response:
            config = response.read().decode()
        assert '"title": "Video GRPO Studio"' in config.replace('":"', '": "')
        assert "tab-monitor" in config
    finally:
        demo.close()


def test_runs_table_reports_status_best_eval_and_duration(ctx: StudioContext) -> None:
    a = ctx.store.create_run("a")
    ctx.store.claim_run(a.id)
    ctx.store.log_metrics(a.id, 5, {mk.TOTAL_REWARD: 0.5, mk.EVAL_ACCURACY: 0.4})
    ctx.store.log_metrics(a.id, 9, {mk.EVAL_ACCURACY: 0.3})
    ckpt = ctx.store.add_checkpoint(a.id, 9, "/x/checkpoint-9", {})
    ctx.store.add_evaluation(ckpt.id, "eval", accuracy=0.55, format_rate=1.0)
    ctx.store.end_run(a.id, Owner.current(), "failed", error="boom")
    b = ctx.store.create_run("b")
    run_a = ctx.store.get_run(a.id)
    rows = runs.run_rows(ctx, [run_a, ctx.store.get_run(b.id)], now=run_a.ended_at)
    assert [r[:3] for r in rows] == [[a.id, "a", "failed"], [b.id, "b", "queued"]]
    assert rows[0][5:] == [9, "0.550", "boom"]
    assert rows[1][4:7] == ["-", "-", "-"]


def test_config_diff_lists_only_differing_keys() -> None:
    diff = runs.config_diff(
        {
            "#1": {"grpo": {"grpo_beta": 0.1, "grpo_alpha": 0.5}},
            "#2": {"grpo": {"grpo_beta": 0.04, "grpo_alpha": 0.5}},
        }
    )
    assert diff == [["grpo.grpo_beta", "0.1", "0.04"]]
    assert runs.config_diff({"#1": {"a": 1}, "#2": {}}) == [["a", "1", "-"]]


def test_delete_runs_refuses_active_and_removes_rows_and_files(ctx: StudioContext) -> None:
    out = ctx.runs_dir / "old"
    out.mkdir(parents=True)
    old = ctx.store.create_run("old", output_dir=str(out))
    ctx.store.claim_run(old.id)
    with pytest.raises(StudioError, match=f"Run #{old.id} is running: abort it before deleting"):
        runs.delete_runs(ctx, [old.id], delete_files=True)
    ctx.store.end_run(old.id, Owner.current(), "finished")
    assert runs.delete_runs(ctx, [old.id], delete_files=True) == [f"#{old.id} old"]
    assert ctx.store.list_runs() == [] and not out.exists()


def rollout(g: int, completion: str, acc: float) -> Rollout:
    return Rollout(
        step=1, prompt_id="q1", group_index=g, question="Which way?", completion=completion,
        options={"A": "left", "B": "right"}, correct_letter="B", accuracy_reward=acc, format_reward=1.0,
        total_reward=acc, advantage=acc - 0.5,
    )  # fmt: skip


def test_completions_are_shown_side_by_side_with_think_answer_and_scores() -> None:
    group = [
        rollout(1, "<think>it moves <b>left</b></think> <answer>(A) left</answer>", 0.0),
        rollout(0, "<think>moves right</think> <answer>(B) right</answer>", 1.0),
        rollout(2, "no tags at all", 0.0),
    ]
    assert [monitor_views.is_correct(r) for r in group] == [False, True, False]
    page = monitor_views.completions_html(group)
    order = [page.index(f'vgrpo-index">#{g}<') for g in (0, 1, 2)]
    assert order == sorted(order)
    assert page.count("&#10003; correct") == 1 and page.count("&#10007; wrong") == 2
    assert "it moves &lt;b&gt;left&lt;/b&gt;" in page
    assert "advantage 0.500" in page and "advantage -0.500" in page
    assert "(no &lt;answer&gt; block)" in page and "no tags at all" in page


def test_progress_status_and_eta(ctx: StudioContext) -> None:
    assert "step 30 / 120 (25 %) - ETA 3m 00s" in monitor_views.progress_html(30, 120, 180.0)
    assert "step 3</div>" in monitor_views.progress_html(3, None, None)
    series = {mk.TIME_STEP_S: ([1, 2, 3], [2.0, 4.0, 3.0], [0.0, 1.0, 2.0])}
    assert monitor_views.run_eta_s(series, 10) == pytest.approx(7 * 3.0)
    run = ctx.store.create_run("r")
    ctx.store.claim_run(run.id)
    ctx.store.end_run(
        run.id, Owner.current(), "failed", error="trainer process died", traceback="Traceback\nValueError: x"
    )
    failed = ctx.store.get_run(run.id)
    text = monitor_views.status_markdown(failed)
    assert "failed" in text and "**Error:** trainer process died" in text and "ValueError: x" in text
    assert choices.run_choices(ctx.store.list_runs()) == [(f"#{run.id} r (failed)", run.id)]


def test_a_time_budget_drives_the_bar_and_the_eta_when_it_is_further_along() -> None:
    # 60 s budget, max_steps 100000, 32 steps at 1.1 s a step, the last logged at 35.2 s (wall 1000.0).
    steps = list(range(13, 33))
    series = {
        mk.TIME_STEP_S: (steps, [1.1] * 20, [1000.0] * 20),
        mk.TIME_TRAIN_S: ([31, 32], [34.1, 35.2], [998.9, 1000.0]),
    }
    # Steps alone: 99968 x 1.1 s (about 30 h); the budget ends the run 60 - 35.2 = 24.8 s from the
    # last point, 20.8 s at wall 1004.0 (4 s trained since).
    assert monitor_views.run_eta_s(series, 100_000) == pytest.approx(99_968 * 1.1)
    assert monitor_views.run_eta_s(series, 100_000, budget_s=60.0) == pytest.approx(24.8)
    assert monitor_views.run_eta_s(series, 100_000, budget_s=60.0, now=1004.0) == pytest.approx(20.8)
    assert monitor_views.train_s(series, now=1004.0) == pytest.approx(39.2)
    # Steps further along than time: the steps' ETA (8 x 1.1 s) is the nearer end.
    assert monitor_views.run_eta_s(series, 40, budget_s=600.0) == pytest.approx(8 * 1.1)
    # Percent: the further along; 39.2 / 60 = 65 % of the budget against 0.03 % of the steps.
    page = monitor_views.progress_html(32, 100_000, 20.8, budget_s=60.0, trained_s=39.2)
    assert "step 32 (65 % of the 1m 00s time budget) - ETA 21s" in page and "width:65.3%" in page
    # 30 of 40 steps (75 %) beats 39.2 / 600 s (7 %): the steps' line.
    assert "step 30 / 40 (75 %) - ETA 11s" in monitor_views.progress_html(30, 40, 11.0, None, 600.0, 39.2)
    # Finished early at step 32 (the Monitor makes the total the last step): 32 / 32.
    assert "step 32 / 32 (100 %)" in monitor_views.progress_html(32, 32, 0.0, None, 60.0, 60.4)


def test_the_time_budget_is_the_stored_max_train_seconds(ctx: StudioContext) -> None:
    from studio.supervisor import Supervisor

    run = ctx.store.create_run("r", config={"run": {"max_train_seconds": 60.0}})
    assert monitor_views.time_budget_s(Supervisor(ctx), run.id) == 60.0
    other = ctx.store.create_run("s", config={"optim": {"max_steps": 40}})
    assert monitor_views.time_budget_s(Supervisor(ctx), other.id) == 0.0


def test_a_run_a_limit_ended_early_says_so_once_finished(ctx: StudioContext) -> None:
    run = ctx.store.create_run("r")
    ctx.store.claim_run(run.id)
    ctx.store.add_event(run.id, ENDED_EARLY_EVENT, "mean accuracy reward 0.812 ... at step 57")
    running = ctx.store.get_run(run.id)
    assert monitor_views.ended_early_message(ctx, running) is None  # not while it still runs
    ctx.store.end_run(run.id, Owner.current(), "finished")
    finished = ctx.store.get_run(run.id)
    message = monitor_views.ended_early_message(ctx, finished)
    assert message == "mean accuracy reward 0.812 ... at step 57"
    text = monitor_views.status_markdown(finished, ended_early=message)
    assert "finished" in text and "**Ended early:** mean accuracy reward 0.812 ... at step 57" in text


def test_total_steps_falls_back_to_the_stored_max_steps(ctx: StudioContext) -> None:
    from studio.supervisor import Supervisor

    run = ctx.store.create_run("r", config={"optim": {"max_steps": 40}})
    assert monitor_views.total_steps(Supervisor(ctx), run.id) == 40
    other = ctx.store.create_run("s", config={"optim": {"max_steps": -1}})
    assert monitor_views.total_steps(Supervisor(ctx), other.id) is None


def test_cards_show_every_reward_and_a_numerical_rollout_shows_its_reference() -> None:
    numerical = [
        Rollout(
            step=3, prompt_id="q7", group_index=g, question="How many cars pass?", completion=completion,
            problem_type="numerical", reference="12", accuracy_reward=acc, format_reward=1.0,
            total_reward=acc, advantage=acc - 0.45,
            rewards={"format": 1.0, "accuracy": acc, "brevity": None if g else 0.25},
        )
        for g, completion, acc in ((0, "<answer>12</answer>", 1.0), (1, "<answer>20</answer>", 0.4))
    ]  # fmt: skip
    question = monitor_views.question_html(numerical[0])
    assert "numerical question, reference answer:" in question and ">12</b>" in question
    assert "<ul" not in question  # no options
    assert [monitor_views.is_correct(r) for r in numerical] == [True, False]  # accuracy >= 0.5
    page = monitor_views.completions_html(numerical)
    assert "&#10003; accuracy 1.000" in page and "&#10007; accuracy 0.400" in page  # its value, no letter
    assert 'data-reward="brevity">brevity 0.250<' in page and 'data-reward="brevity">brevity n/a<' in page
    assert 'data-reward="accuracy">accuracy 0.400<' in page
    # A multiple-choice rollout without the rewards column (written before it) keeps the seed's two.
    old = monitor_views.completions_html([rollout(0, "<answer>(B) right</answer>", 1.0)])
    assert "format 1.000" in old and "accuracy 1.000" in old and "&#10003; correct" in old
    assert "(A) left" in monitor_views.question_html(rollout(0, "", 1.0))

"""The Evaluate tab: the command it launches, and how stored evaluations are shown."""

from __future__ import annotations

import html
import sys
import time
from pathlib import Path

import pytest
import yaml
from studio_helpers import finished_run_with_checkpoints, wait_for

from studio.context import StudioContext
from studio.supervisor import Supervisor
from studio.tabs.evaluate import (
    checkpoint_choices,
    confusion_counts,
    confusion_figure,
    create_evaluate_tab,
    eval_command,
    evaluation_view,
    job_status,
    record_rows,
    start_evaluation,
    type_rows,
)
from studio.tabs.evaluate.datasets import dataset_for_run
from studio.tabs.evaluate.tab import EvaluateHandlers
from trainer.core.errors import ConfigError
from trainer.core.paths import TINY_MODEL_DIR, TINY_QWEN3_VL_DIR
from trainer.rundb import Owner

RESULTS = [
    {
        "id": "q1",
        "correct": "A",
        "chosen": "A",
        "is_correct": True,
        "format_ok": True,
        "completion": "<answer>(A)",
    },
    {"id": "q2", "correct": "A", "chosen": "B", "is_correct": False, "format_ok": True, "completion": "x"},
    {"id": "q3", "correct": "B", "chosen": None, "is_correct": False, "format_ok": False, "completion": "y"},
    {"id": "q4", "correct": "C", "chosen": "A", "is_correct": False, "format_ok": True, "completion": "z"},
]


@pytest.fixture()
def ctx(tmp_path: Path) -> StudioContext:
    return StudioContext(tmp_path / "ws", f"sqlite:///{tmp_path / 'runs.db'}")


def test_eval_command_lists_every_flag(tmp_path):
    cmd = eval_command(
        "/out/checkpoint-5", "synthetic_motion_eval%50", "sqlite:///x.db", tmp_path, run_id=3,
        max_records=16, batch_size=4, json_path=tmp_path / "e.json", python="py",
    )  # fmt: skip
    assert cmd == [
        "py", "-m", "trainer.cli", "eval", "--checkpoint", "/out/checkpoint-5",
        "--dataset_use", "synthetic_motion_eval%50", "--db", "sqlite:///x.db", "--workspace", str(tmp_path),
        "--batch_size", "4", "--run", "3", "--max_records", "16", "--json", str(tmp_path / "e.json"),
    ]  # fmt: skip
    # Base + all checkpoints of the run instead of one checkpoint.
    both = eval_command("", "d", "u", tmp_path, run_id=3, python="py", compare=True)
    assert both[4:8] == ["--checkpoints", "all", "--base", "--dataset_use"] and "--checkpoint" not in both
    with pytest.raises(ConfigError, match="pick a run to compare"):
        start_evaluation(StudioContext(tmp_path), "", "d", None, compare=True)
    # No run, all records: those flags are left out.
    assert "--run" not in eval_command("m", "d", "u", tmp_path) and "--max_records" not in eval_command(
        "m", "d", "u", tmp_path, max_records=0
    )


def test_start_evaluation_starts_a_job_through_the_supervisor(ctx):
    from studio.supervisor import Supervisor

    calls = []

    class Recording(Supervisor):
        def start_job(self, kind, command, params, log_path, *, run_id=None):
            calls.append((kind, command, dict(params), log_path, run_id))
            return ctx.store.create_job(kind, params, run_id=run_id, log_path=str(log_path))

    run = ctx.store.create_run("r")
    job = start_evaluation(ctx, str(TINY_MODEL_DIR), "synthetic_motion_eval", run.id, 8, 2, Recording(ctx))
    ((kind, cmd, params, log_path, run_id),) = calls
    assert (kind, run_id, job.run_id, job.status) == ("evaluate", run.id, run.id, "queued")
    assert params == {"checkpoint": str(TINY_MODEL_DIR), "dataset": "synthetic_motion_eval", "max_records": 8}
    assert cmd[:3] == [sys.executable, "-m", "trainer.cli"]
    assert cmd[cmd.index("--run") + 1] == str(run.id) and cmd[cmd.index("--max_records") + 1] == "8"
    assert cmd[cmd.index("--db") + 1] == ctx.db_url
    assert log_path.parent == ctx.workspace / "logs" and job.log_path == str(log_path)


@pytest.mark.parametrize(
    ("checkpoint", "dataset", "batch", "message"),
    [
        ("", "synthetic_motion_eval", 8, "pick a checkpoint"),
        ("/m", " ", 8, "pick a dataset"),
        ("/m", "synthetic_motion_eval", 0, "batch size must be >= 1, got 0"),
    ],
)
def test_start_evaluation_names_the_missing_field(ctx, checkpoint, dataset, batch, message):
    with pytest.raises(ConfigError, match=message):
        start_evaluation(ctx, checkpoint, dataset, None, 0, batch)


NO_THINK_RUN = {
    "model": {"model_name_or_path": str(TINY_MODEL_DIR)},
    "data": {
        "dataset_use": "synthetic_motion_no_think_train",
        "eval_dataset_use": "synthetic_motion_no_think_eval",
    },
}


def recording(ctx: StudioContext, calls: list) -> Supervisor:
    """A supervisor that records the jobs it is asked to start instead of starting them."""

    class Recording(Supervisor):
        def start_job(self, kind, command, params, log_path, *, run_id=None):
            calls.append(command)
            return ctx.store.create_job(kind, params, run_id=run_id, log_path=str(log_path))

    return Recording(ctx)


def test_a_no_think_checkpoint_is_not_started_on_a_think_set(ctx, tmp_path):
    """Evaluate picked the think eval set for a no_think run (accuracy 0.000, format 0.000, no
    warning) where the Train tab refuses the pairing: now refused before a job starts, in its words."""
    run = ctx.store.create_run("grpo-nt", config=NO_THINK_RUN)
    ckpt = tmp_path / "out" / "checkpoint-40"
    ckpt.mkdir(parents=True)
    (ckpt / "train_config.yaml").write_text(yaml.safe_dump(NO_THINK_RUN))
    calls: list = []
    handlers = EvaluateHandlers(ctx, recording(ctx, calls))
    status = handlers.on_start(run.id, str(ckpt), "synthetic_motion_eval", 8, 2, False)
    assert html.unescape(status) == (
        "**Not started:** dataset_use 'synthetic_motion_eval' is think but checkpoint-40's dataset_use "
        "'synthetic_motion_no_think_train' is no_think: evaluate on a set with the same answer format "
        "(a name with no_think expects <answer> only)"
    )
    with pytest.raises(
        ConfigError, match="is think but run grpo-nt's dataset_use 'synthetic_motion_no_think_train'"
    ):
        start_evaluation(ctx, "", "synthetic_motion_eval", run.id, 8, 2, recording(ctx, calls), compare=True)
    assert calls == [] and ctx.store.jobs() == []
    # Its own format starts; a plain model folder (no run config in it) is not refused either.
    assert handlers.on_start(run.id, str(ckpt), "synthetic_motion_no_think_eval%50", 8, 2, False).startswith(
        "Evaluation job #"
    )
    start_evaluation(ctx, str(TINY_MODEL_DIR), "synthetic_motion_eval", run.id, 8, 2, recording(ctx, calls))
    assert len(calls) == 2


def test_picking_a_run_offers_the_eval_set_of_its_answer_format(ctx):
    no_think = ctx.store.create_run("nt", config=NO_THINK_RUN).id
    without_eval = {**NO_THINK_RUN, "data": {"dataset_use": "synthetic_motion_no_think_train%10"}}
    no_eval_set = ctx.store.create_run("nt-no-eval", config=without_eval).id
    think = ctx.store.create_run("t", config={"data": {"dataset_use": "synthetic_motion_train"}}).id
    model = ctx.store.create_run("eval-m", config={"model": {"model_name_or_path": "/m"}}).id
    assert dataset_for_run(ctx, no_think, "synthetic_motion_eval") == "synthetic_motion_no_think_eval"
    assert dataset_for_run(ctx, no_eval_set, "synthetic_motion_eval") == "synthetic_motion_no_think_eval"
    # A set already in the run's format stays (a user's pick); no run or no trained format: as is.
    assert (
        dataset_for_run(ctx, no_think, "synthetic_motion_no_think_eval%50")
        == "synthetic_motion_no_think_eval%50"
    )
    assert dataset_for_run(ctx, think, "synthetic_motion_eval") == "synthetic_motion_eval"
    assert dataset_for_run(ctx, model, "synthetic_motion_eval") == "synthetic_motion_eval"
    assert dataset_for_run(ctx, None, None) is None
    # The handler behind the run picker: checkpoint list, then the dataset.
    assert EvaluateHandlers(ctx, Supervisor(ctx)).on_run(no_think, "synthetic_motion_eval")[1] == (
        "synthetic_motion_no_think_eval"
    )


def test_confusion_counts_by_hand():
    rows, cols, counts = confusion_counts(RESULTS)
    assert rows == ["A", "B", "C"]
    assert cols == ["A", "B", "C", "none"]
    assert counts == [[1, 1, 0, 0], [0, 0, 0, 1], [1, 0, 0, 0]]
    heatmap = confusion_figure(RESULTS).data[0]
    assert [list(r) for r in heatmap.z] == counts
    assert list(heatmap.x) == ["chose A", "chose B", "chose C", "chose none"]


def test_record_rows_mark_right_wrong_and_missing_choice():
    assert record_rows(RESULTS[1:3]) == [
        ["q2", "A", "B", "✗", "✓", "x"],
        ["q3", "B", "none", "✗", "✗", "y"],
    ]


# Two OCR records beside RESULTS' four multiple-choice ones (rows as ``vgrpo eval`` stores them).
OCR_RESULTS = [
    {"id": "o1", "correct": "a b c", "chosen": "a x c", "is_correct": False, "format_ok": True,
     "completion": "<answer>a x c</answer>", "problem_type": "OCR", "value": 1 / 3},
    {"id": "o2", "correct": "STOP", "chosen": "STOP", "is_correct": True, "format_ok": True,
     "completion": "<answer>STOP</answer>", "problem_type": "OCR", "value": 0.0},
]  # fmt: skip


def test_type_rows_by_hand_and_confusion_keeps_option_letters():
    # multiple choice: 1 of 4 right, Wilson 95%: centre (0.25 + 0.48018) / 1.96073 = 0.37240,
    # half 1.95996 * sqrt(0.046875 + 0.060025) / 1.96073 = 0.32681 -> 0.046-0.699.
    # OCR WERs 1/3 and 0: mean 1/6, s = (1/3)/sqrt(2), half = z * s / sqrt(2) = z / 6 = 0.32666,
    # cut at 0 -> 0.000-0.493.
    assert type_rows(RESULTS + OCR_RESULTS) == [
        ["multiple choice", 4, "accuracy", 0.25, "0.046–0.699"],
        ["OCR", 2, "wer", 0.1667, "0.000–0.493"],
    ]
    assert type_rows(OCR_RESULTS[:1]) == [["OCR", 1, "wer", 0.3333, ""]]  # one record: no interval
    assert confusion_counts(RESULTS + OCR_RESULTS) == confusion_counts(RESULTS)
    # Only other types: the empty grid says why it is empty instead of looking like no evaluation.
    empty = confusion_figure(OCR_RESULTS)
    assert [a.text for a in empty.layout.annotations] == [
        "No multiple-choice record: the other problem types<br>are scored in the per-type table"
    ]
    assert not confusion_figure(RESULTS).layout.annotations


def test_evaluation_view_shows_the_newest_or_the_picked_evaluation(ctx, tmp_path):
    store = ctx.store
    run = store.create_run("grpo-x", config={"model": {"model_name_or_path": "/models/base"}})
    out = tmp_path / "out"  # offered checkpoints must exist on disk
    for s in (10, 20):
        (out / f"checkpoint-{s}").mkdir(parents=True)
    c10 = store.add_checkpoint(run.id, 10, str(out / "checkpoint-10"), {})
    c20 = store.add_checkpoint(run.id, 20, str(out / "checkpoint-20"), {})
    first = store.add_evaluation(
        c10.id, "synthetic_motion_eval", accuracy=0.25, format_rate=0.75, results=RESULTS
    )
    second = store.add_evaluation(
        c20.id, "synthetic_motion_eval", accuracy=0.5, format_rate=1.0, results=RESULTS[:2]
    )

    view = evaluation_view(ctx, run.id)
    assert view.selected == second.id
    assert [row[:6] for row in view.summary] == [
        [second.id, 20, "synthetic_motion_eval", 2, 0.5, 1.0],
        [first.id, 10, "synthetic_motion_eval", 4, 0.25, 0.75],
    ]
    assert "**Accuracy 50.0%** · format rate 100.0% · 2 records" in view.headline
    assert [r[0] for r in view.records] == ["q1", "q2"]
    assert view.types == [["multiple choice", 2, "accuracy", 0.5, "0.095–0.905"]]

    picked = evaluation_view(ctx, run.id, first.id)
    assert picked.selected == first.id and len(picked.records) == 4
    assert evaluation_view(ctx, None).summary == []
    assert checkpoint_choices(ctx, run.id) == [
        ("grpo-x · step 20", str(out / "checkpoint-20")),
        ("grpo-x · step 10", str(out / "checkpoint-10")),
        ("grpo-x · base model", "/models/base"),
        ("embedded tiny model", str(TINY_MODEL_DIR)),
    ]
    # save_total_limit removed checkpoint-10: never offered again, its evaluation still shown.
    ctx.store.mark_checkpoints_deleted(run.id, [str(out / "checkpoint-10")])
    offered = [path for _, path in checkpoint_choices(ctx, run.id)][:2]
    assert offered == [str(out / "checkpoint-20"), "/models/base"]
    assert [row[1] for row in evaluation_view(ctx, run.id).summary] == [20, 10]


# Building gr.Blocks leaves asyncio loops and sockets unclosed inside gradio (ResourceWarning at
# garbage collection); they are collected here, under this filter, so no later test trips on them.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_tab_builds_with_its_element_ids(ctx):
    import gc

    import gradio as gr

    with gr.Blocks():
        widgets = create_evaluate_tab(ctx)
    ids = {name: w.elem_id for name, w in widgets.items() if name not in ("timer", "checkpoint_offered")}
    assert ids == {
        "run": "eval-run", "checkpoint": "eval-checkpoint", "dataset": "eval-dataset", "start": "eval-start",
        "cancel": "eval-cancel", "status": "eval-status", "jobs": "eval-jobs", "summary": "eval-summary",
        "pick": "eval-pick", "headline": "eval-headline", "plot": "eval-confusion", "records": "eval-records",
        "types": "eval-types",
        "compare_pick": "eval-compare-pick", "task_bars": "eval-task-bars", "task_table": "eval-task-table",
        "answer_dist": "eval-answer-dist", "fail_model": "eval-fail-model", "fail_record": "eval-fail-record",
        "fail_video": "eval-fail-video", "fail_detail": "eval-fail-detail", "export_csv": "eval-export-csv",
        "export_json": "eval-export-json", "compare_refresh": "eval-compare-refresh",
    }  # fmt: skip
    gc.collect()
    assert widgets["dataset"].value == "synthetic_motion_eval"


def test_launched_evaluation_is_a_job_that_lands_in_the_run_db(ctx, tiny_model_dir):
    """The real command as a job: its status, progress and result are in the run database."""
    from studio.supervisor import Supervisor

    run = ctx.store.create_run("grpo-y")
    job = start_evaluation(ctx, str(tiny_model_dir), "synthetic_motion_eval", run.id, 4, 4, Supervisor(ctx))
    assert (job.kind, job.run_id, job.status) == ("evaluate", run.id, "queued")
    deadline = time.monotonic() + 180
    while ctx.store.get_job(job.id).is_active:
        assert time.monotonic() < deadline, Path(job.log_path).read_text()
        time.sleep(0.2)
    done = ctx.store.get_job(job.id)
    (evaluation,) = ctx.store.evaluations(run.id)
    assert (done.status, done.progress_done, done.progress_total) == ("finished", 4, 4)
    assert done.result["evaluation_id"] == evaluation.id
    assert job_status(done).startswith(
        f"Evaluation job #{job.id} **finished** · tiny-qwen2.5-vl on synthetic_motion_eval"
    )
    assert len(evaluation.results) == 4
    view = evaluation_view(ctx, run.id)
    assert view.selected == evaluation.id
    assert [r[0] for r in view.records] == ["m_2001", "m_2002", "m_2003", "m_2004"]
    (ckpt,) = ctx.store.checkpoints(run.id)
    assert (ckpt.step, ckpt.path) == (0, str(tiny_model_dir.resolve()))


def test_evaluation_job_on_a_qwen3_vl_checkpoint(ctx, tmp_path):
    """A checkpoint of the 32 px-token family, trained with its rescaled pixel budgets (the video
    section of its train_config.yaml), answers every record in format through the same job."""
    import shutil

    import yaml

    from studio.supervisor import Supervisor

    checkpoint = tmp_path / "qwen3-run" / "checkpoint-4"
    shutil.copytree(TINY_QWEN3_VL_DIR, checkpoint)
    video = {"fps": 8.0, "max_frames": 8, "min_pixels": 4096, "max_pixels": 4096}
    (checkpoint / "train_config.yaml").write_text(yaml.safe_dump({"video": video}))
    run = ctx.store.create_run("qwen3-run")
    job = start_evaluation(ctx, str(checkpoint), "synthetic_motion_eval", run.id, 4, 4, Supervisor(ctx))
    done = wait_for(
        lambda: not ctx.store.get_job(job.id).is_active and ctx.store.get_job(job.id), 180, "eval"
    )
    assert (done.status, done.progress_done) == ("finished", 4), Path(job.log_path).read_text()
    assert job_status(done).startswith(
        f"Evaluation job #{job.id} **finished** · checkpoint-4 on synthetic_motion_eval"
    )
    (evaluation,) = ctx.store.evaluations(run.id)
    assert evaluation.format_rate == 1.0 and len(evaluation.results) == 4
    assert evaluation_view(ctx, run.id).selected == evaluation.id


def test_job_status_reads_progress_result_or_error(ctx):
    run = ctx.store.create_run("r")
    job = ctx.store.create_job("evaluate", {"checkpoint": "/m/checkpoint-8", "dataset": "d"}, run_id=run.id)
    assert job_status(job) == f"Evaluation job #{job.id} **starting** · checkpoint-8 on d · `starting`"
    owner = Owner.current()
    ctx.store.claim_job(job.id, owner)
    ctx.store.set_job_progress(job.id, owner, 3, 8)
    assert job_status(ctx.store.get_job(job.id)).endswith(
        f"**running** · checkpoint-8 on d · `3 of 8 records · pid {owner.pid}`"
    )
    ctx.store.end_job(job.id, owner, "finished", result={"accuracy": 0.5, "format_rate": 1.0})
    assert job_status(ctx.store.get_job(job.id)).endswith("`accuracy 0.500 · format rate 1.000`")
    failed = ctx.store.create_job("evaluate", {"checkpoint": "/m", "dataset": "d"}, owner=owner)
    ctx.store.claim_job(failed.id, owner)
    ctx.store.end_job(failed.id, owner, "failed", error="ConfigError: checkpoint not found: /m")
    log = "x\nvgrpo: error: checkpoint not found: /m\n"
    assert job_status(ctx.store.get_job(failed.id), log).endswith(
        "**failed** · m on d · `vgrpo: error: checkpoint not found: /m`"
    )


def test_the_tab_opens_on_a_run_worth_evaluating_not_the_newest_failure(ctx: StudioContext) -> None:
    from studio.tabs.evaluate.views import default_run

    def ended(name: str, status: str) -> int:
        run = ctx.store.create_run(name)
        ctx.store.claim_run(run.id)
        ctx.store.end_run(run.id, Owner.current(), status, error="boom" if status == "failed" else None)
        return run.id

    done = ended("done", "finished")
    with_ckpt = ended("stopped", "aborted")
    ctx.store.add_checkpoint(with_ckpt, 4, "/out/stopped/checkpoint-4", {})
    crashed = ended("crashed", "failed")  # the newest: failed before any checkpoint
    items = [(f"#{i}", i) for i in (crashed, with_ckpt, done)]  # newest first, as the picker lists
    assert default_run(ctx, items) == done
    assert default_run(ctx, items[:2]) == with_ckpt  # nothing finished: one with a checkpoint
    assert default_run(ctx, items[:1]) == crashed  # only a failure: still shown
    assert default_run(ctx, []) is None


def test_a_stale_wrong_answer_index_reaches_the_handler_and_is_refused_there(ctx: StudioContext) -> None:
    from studio.tabs.evaluate.compare import CompareHandlers

    # No comparison for this run: whatever index the page still holds (or text typed in the box).
    for index in (0, 7, "abc", None):
        assert CompareHandlers(ctx).on_record(None, None, None, index) == (None, "No wrong answer picked.")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # gradio's loops
def test_a_deleted_runs_checkpoint_leaves_the_pick_for_the_newest_checkpoint(ctx, tmp_path):
    """As Chat (issue 23): after the picked run was deleted, showing the tab moved the run picker on
    but kept the deleted run's checkpoint picked (no row names it any more, so it read as a folder
    typed by hand). It falls back to the newest checkpoint offered; a typed folder stays."""
    import gc

    import gradio as gr

    from studio.tabs.evaluate import refresh_lists

    old_run, old = finished_run_with_checkpoints(ctx, tmp_path, "old", (2, 4))
    new_run, new = finished_run_with_checkpoints(ctx, tmp_path, "new", (3, 6))
    with gr.Blocks():
        widgets = create_evaluate_tab(ctx, Supervisor(ctx))
    refresh = refresh_lists(ctx, widgets)
    # The user picks the old run (its checkpoints are offered) and its newest checkpoint.
    *_, offered = EvaluateHandlers(ctx, Supervisor(ctx)).on_run(old_run.id, "synthetic_motion_eval")
    assert old[-1] in offered
    ctx.store.delete_run(old_run.id)
    run, checkpoint, _, offered = refresh.fn(old_run.id, old[-1], "synthetic_motion_eval", offered)
    values = [v for _, v in checkpoint.choices]
    assert run.value == new_run.id and not set(old) & set(values) and offered == values
    assert checkpoint.value == new[-1]
    typed = str(tmp_path / "my-model")
    _, checkpoint, _, _ = refresh.fn(new_run.id, typed, "synthetic_motion_eval", offered)
    assert checkpoint.value == typed
    gc.collect()

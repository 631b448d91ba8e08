"""Evaluate tab: run `vgrpo eval` on a checkpoint in the background and browse stored evaluations.

"Run evaluation" starts ``python -m trainer.cli eval ... --job <id>`` through the supervisor as an
evaluation *job* (log file under ``<workspace>/logs/``): the job's status, owner, progress and result
live in the run database, so a page reload or a studio restart finds it again, and it can be
cancelled. Results are read back from the run DB only, so evaluations made by training, by the
command line or by an earlier studio session show up the same way: accuracy, format rate, a
confusion heatmap and the per-record table.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from studio import choices
from studio.context import StudioContext
from studio.live import Refresh
from studio.processes import tail_text
from studio.supervisor import Supervisor
from studio.tabs.evaluate_compare import create_compare_section
from trainer.core.errors import ConfigError, StudioError
from trainer.data import list_datasets
from trainer.eval.benchmark import NO_ANSWER, stored_answer, stored_choice
from trainer.rundb import Evaluation, Job

logger = logging.getLogger(__name__)

INTRO = (
    "Evaluate a checkpoint (or any model folder) on a dataset with greedy answers. The evaluation runs "
    "in the background and is stored in the run database against the checkpoint; pick a run to see "
    "its evaluations: accuracy, format rate, which option was chosen for which answer, and every record. "
    "Tick **Base + all checkpoints** to compare the run's base model and checkpoints per task."
)
DEFAULT_DATASET = "synthetic_motion_eval"
POLL_S = 2.0
RECORD_HEADERS = ["id", "correct", "chosen", "ok", "format ok", "completion"]
SUMMARY_HEADERS = ["eval", "step", "dataset", "records", "accuracy", "format rate", "when"]


# ---- the command and its launch (no gradio) -------------------------------------------------------


def eval_command(
    checkpoint: str,
    dataset: str,
    db_url: str,
    workspace: Path,
    run_id: int | None = None,
    max_records: int | None = None,
    batch_size: int = 8,
    json_path: Path | None = None,
    python: str = sys.executable,
    compare: bool = False,
) -> list[str]:
    """The ``vgrpo eval`` argument list (no shell) the tab starts; ``compare``: the run's base model
    and all its checkpoints instead of ``checkpoint``."""
    models = ["--checkpoints", "all", "--base"] if compare else ["--checkpoint", checkpoint]
    cmd = [python, "-m", "trainer.cli", "eval", *models, "--dataset_use", dataset]
    cmd += ["--db", db_url, "--workspace", str(workspace), "--batch_size", str(int(batch_size))]
    if run_id is not None:
        cmd += ["--run", str(int(run_id))]
    if max_records:
        cmd += ["--max_records", str(int(max_records))]
    if json_path is not None:
        cmd += ["--json", str(json_path)]
    return cmd


def start_evaluation(
    ctx: StudioContext,
    checkpoint: str | None,
    dataset: str | None,
    run_id: int | None = None,
    max_records: float | None = None,
    batch_size: float | None = 8,
    supervisor: Supervisor | None = None,
    compare: bool = False,
) -> Job:
    """Check the form and start the command as an evaluation job; ConfigError names the bad field."""
    checkpoint = (checkpoint or "").strip()
    dataset = (dataset or "").strip()
    if compare and run_id is None:
        raise ConfigError("pick a run to compare its base model with its checkpoints")
    if compare:
        checkpoint = checkpoint or "base + all checkpoints"
    if not checkpoint:
        raise ConfigError("pick a checkpoint or type a model folder")
    if not dataset:
        raise ConfigError("pick a dataset (a registered name, optionally name%N)")
    if max_records is not None and max_records < 0:
        raise ConfigError(f"max records must be >= 0 (0: all), got {max_records}")
    if batch_size is None or batch_size < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}")
    supervisor = supervisor or Supervisor(ctx)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    log = ctx.workspace / "logs" / f"eval-{stamp}.log"
    limit = int(max_records) if max_records else None
    cmd = eval_command(
        checkpoint,
        dataset,
        ctx.db_url,
        ctx.workspace,
        run_id=run_id,
        max_records=limit,
        batch_size=int(batch_size),
        compare=compare,
    )
    params = {"checkpoint": "base + all checkpoints" if compare else checkpoint, "dataset": dataset,
              "max_records": limit}  # fmt: skip
    job = supervisor.start_job(
        "evaluate", cmd, params, log, run_id=int(run_id) if run_id is not None else None
    )
    logger.info("evaluation job %d started: pid %s, log %s", job.id, job.pid, log)
    return job


def job_status(job: Job, log_tail: str = "") -> str:
    """One line on an evaluation job, read from the run database: progress, result, or why it ended."""
    head = f"Evaluation #{job.id} **{_JOB_WORDS.get(job.status, job.status)}**"
    if job.status == "running":
        total = f" of {job.progress_total}" if job.progress_total else ""
        detail = f"{job.progress_done}{total} records · pid {job.pid}"
    elif job.status == "finished" and job.result:
        accuracy, format_rate = job.result.get("accuracy", 0.0), job.result.get("format_rate", 0.0)
        detail = f"accuracy {accuracy:.3f} · format rate {format_rate:.3f}"
    elif job.status == "failed":
        lines = [line.strip() for line in log_tail.splitlines() if line.strip()]
        errors = [line for line in lines if "error" in line.lower()]
        detail = (errors[-1] if errors else (job.error or "").splitlines()[0] if job.error else "").strip(
            "` "
        )
    elif job.status == "aborted":
        detail = ""  # the headline says "cancelled": the user's stop, not an error
    else:
        detail = "starting"
    params = job.params
    what = f"{Path(str(params.get('checkpoint', '?'))).name} on {params.get('dataset', '?')}"
    return f"{head} · {what}" + (f" · `{detail}`" if detail else "")


_JOB_WORDS = {
    "queued": "starting",
    "running": "running",
    "finished": "finished",
    "failed": "failed",
    "aborted": "cancelled",
}
JOB_HEADERS = ["job", "run", "checkpoint", "dataset", "status", "progress", "started"]


def job_rows(jobs: Sequence[Job]) -> list[list[Any]]:
    rows = []
    for job in jobs:
        total = job.progress_total
        progress = f"{job.progress_done}/{total}" if total else "-"
        started = datetime.fromtimestamp(job.started_at or job.created_at).strftime("%m-%d %H:%M:%S")
        checkpoint = Path(str(job.params.get("checkpoint", "?"))).name
        rows.append(
            [
                job.id,
                job.run_id or "-",
                checkpoint,
                job.params.get("dataset", "?"),
                _JOB_WORDS.get(job.status, job.status),
                progress,
                started,
            ]
        )
    return rows


# ---- what a stored evaluation looks like (no gradio) ------------------------------------------------


def confusion_counts(results: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[str], list[list[int]]]:
    """``(correct letters, chosen letters, counts)``: ``counts[i][j]`` records whose answer is
    ``rows[i]`` and whose chosen option is ``cols[j]`` ("none" when no option was read)."""
    pairs = [(stored_answer(r), stored_choice(r)) for r in results]
    rows = sorted({c for c, _ in pairs})
    chosen = {c for _, c in pairs} | set(rows)
    cols = sorted(chosen - {NO_ANSWER}) + ([NO_ANSWER] if NO_ANSWER in chosen else [])
    counts = [[0] * len(cols) for _ in rows]
    for correct, pick in pairs:
        counts[rows.index(correct)][cols.index(pick)] += 1
    return rows, cols, counts


def confusion_figure(results: Sequence[Mapping[str, Any]], title: str = "") -> go.Figure:
    """A heatmap of :func:`confusion_counts` (the diagonal is the correct answers)."""
    rows, cols, counts = confusion_counts(results)
    fig = go.Figure(
        go.Heatmap(
            z=counts,
            x=[f"chose {c}" for c in cols],
            y=[f"answer {r}" for r in rows],
            text=counts,
            texttemplate="%{text}",
            colorscale="Blues",
            showscale=False,
            hovertemplate="%{y}, %{x}: %{z} records<extra></extra>",
        )
    )
    fig.update_layout(
        title=title or "Confusion (rows: correct option, columns: chosen)",
        yaxis={"autorange": "reversed"},
        height=340,
        margin={"l": 70, "r": 20, "t": 50, "b": 40},
    )
    return fig


def record_rows(results: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    """The per-record table: id, correct, chosen, ok, format ok, completion."""
    return [
        [
            r.get("id"),
            stored_answer(r),
            stored_choice(r),
            "✓" if r.get("is_correct") else "✗",
            "✓" if r.get("format_ok") else "✗",
            r.get("completion", ""),
        ]
        for r in results
    ]


def summary_rows(evaluations: Sequence[Evaluation], steps: Mapping[int, int]) -> list[list[Any]]:
    """One row per evaluation, newest first; ``steps`` maps checkpoint id -> step."""
    return [
        [
            e.id,
            steps.get(e.checkpoint_id, "?"),
            e.dataset,
            len(e.results),
            round(e.accuracy, 4),
            round(e.format_rate, 4),
            datetime.fromtimestamp(e.created_at).strftime("%Y-%m-%d %H:%M:%S"),
        ]
        for e in sorted(evaluations, key=lambda e: e.id, reverse=True)
    ]


def headline(evaluation: Evaluation, step: int | str) -> str:
    return (
        f"### Evaluation #{evaluation.id} · step {step} · `{evaluation.dataset}`\n"
        f"**Accuracy {evaluation.accuracy:.1%}** · format rate {evaluation.format_rate:.1%} · "
        f"{len(evaluation.results)} records"
    )


@dataclass
class EvalView:
    """Everything the tab shows for one run (and one of its evaluations)."""

    summary: list[list[Any]]
    choices: list[tuple[str, int]]
    selected: int | None
    headline: str
    figure: go.Figure | None
    records: list[list[Any]]


def evaluation_view(ctx: StudioContext, run_id: int | None, eval_id: int | None = None) -> EvalView:
    """The run's evaluations and the chosen one (the newest when ``eval_id`` is not among them)."""
    if run_id is None:
        return EvalView([], [], None, "Pick a run to see its evaluations.", None, [])
    evaluations = ctx.store.evaluations(int(run_id))
    steps = {c.id: c.step for c in ctx.store.checkpoints(int(run_id), include_deleted=True)}
    if not evaluations:
        return EvalView([], [], None, "No evaluation stored for this run yet.", None, [])
    by_id = {e.id: e for e in evaluations}
    chosen = by_id.get(int(eval_id)) if eval_id is not None else None
    chosen = chosen or max(evaluations, key=lambda e: e.id)
    step = steps.get(chosen.checkpoint_id, "?")
    options = [
        (f"#{e.id} · step {steps.get(e.checkpoint_id, '?')} · {e.dataset} · acc {e.accuracy:.3f}", e.id)
        for e in sorted(evaluations, key=lambda e: e.id, reverse=True)
    ]
    return EvalView(
        summary=summary_rows(evaluations, steps),
        choices=options,
        selected=chosen.id,
        headline=headline(chosen, step),
        figure=confusion_figure(chosen.results, f"Confusion · eval #{chosen.id} · step {step}"),
        records=record_rows(chosen.results),
    )


def run_choices(ctx: StudioContext) -> list[tuple[str, int]]:
    return choices.run_choices(ctx.store.list_runs())


def default_run(ctx: StudioContext, items: Sequence[tuple[str, int]]) -> int | None:
    """The run to show first: the newest one with a stored evaluation, else the newest run."""
    for _, run_id in items:
        if ctx.store.evaluations(run_id):
            return run_id
    return items[0][1] if items else None


def checkpoint_choices(ctx: StudioContext, run_id: int | None) -> list[tuple[str, str]]:
    """The run's checkpoints still on disk (newest first), its base model, and the embedded tiny model."""
    return choices.read_checkpoint_choices(ctx.store, run_id).items


# ---- the tab --------------------------------------------------------------------------------------


def create_evaluate_tab(ctx: StudioContext, supervisor: Supervisor | None = None) -> dict[str, Any]:
    """Build the Evaluate tab's widgets in the current gr.Tab; returns the key widgets by name."""
    import gradio as gr

    supervisor = supervisor or Supervisor(ctx)
    shown = gr.State(None)  # the id of the ended job whose run the view last jumped to
    runs = _safe(lambda: run_choices(ctx), [])
    first_run = _safe(lambda: default_run(ctx, runs), None)
    datasets = [e.name for e in list_datasets(ctx.workspace)]
    first_view = _safe(lambda: evaluation_view(ctx, first_run), evaluation_view(ctx, None))

    gr.Markdown(INTRO)
    with gr.Row(equal_height=False):
        run = gr.Dropdown(runs, value=first_run, label="Run", scale=3, elem_id="eval-run")
        checkpoint = gr.Dropdown(
            _safe(lambda: checkpoint_choices(ctx, first_run), []), label="Checkpoint or model folder",
            allow_custom_value=True, scale=4, elem_id="eval-checkpoint",
        )  # fmt: skip
        dataset = gr.Dropdown(
            datasets, value=DEFAULT_DATASET if DEFAULT_DATASET in datasets else None, label="Eval dataset",
            info="a registered name, or name%N for a seeded N % sample", allow_custom_value=True, scale=3,
            elem_id="eval-dataset",
        )  # fmt: skip
    with gr.Row(equal_height=True):
        max_records = gr.Number(
            value=64, precision=0, minimum=0, label="Max records (0: all)", elem_id="eval-max-records"
        )
        batch_size = gr.Number(value=8, precision=0, minimum=1, label="Batch size", elem_id="eval-batch-size")
        compare = gr.Checkbox(False, label="Base + all checkpoints", elem_id="eval-compare")
        start = gr.Button("Run evaluation", variant="primary", elem_id="eval-start")
        cancel = gr.Button("Cancel evaluation", variant="stop", elem_id="eval-cancel")
        refresh = gr.Button("↻ Refresh", elem_id="eval-refresh")
    status = gr.Markdown(elem_id="eval-status")
    with gr.Accordion("Evaluation log (tail)", open=False):
        log_box = gr.Textbox(lines=8, max_lines=8, show_label=False, interactive=False, elem_id="eval-log")
    with gr.Accordion("Evaluation jobs (all runs)", open=False):
        jobs_table = gr.Dataframe(
            headers=JOB_HEADERS, value=_safe(lambda: job_rows(ctx.store.jobs(kind="evaluate")), []),
            interactive=False, max_height=220, elem_id="eval-jobs",
        )  # fmt: skip
    summary = gr.Dataframe(
        headers=SUMMARY_HEADERS, value=first_view.summary, interactive=False, label="Evaluations of this run",
        max_height=220, elem_id="eval-summary",
    )  # fmt: skip
    pick = gr.Dropdown(
        first_view.choices, value=first_view.selected, label="Show evaluation", elem_id="eval-pick"
    )
    head = gr.Markdown(first_view.headline, elem_id="eval-headline")
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=320):
            plot = gr.Plot(first_view.figure, label="Confusion matrix", elem_id="eval-confusion")
        with gr.Column(scale=3, min_width=420):
            records = gr.Dataframe(
                headers=RECORD_HEADERS, value=first_view.records, interactive=False, wrap=True,
                label="Per-record results", max_height=360, elem_id="eval-records",
                column_widths=["13%", "11%", "11%", "7%", "11%", "47%"],
            )  # fmt: skip
    section = create_compare_section(ctx, run, first_run, also_on=[head])
    # Always on: the jobs live in the run database, so a reload or a studio restart shows them again.
    timer = gr.Timer(POLL_S, active=True)

    def view_outputs(run_id: int | None, eval_id: int | None) -> tuple:
        try:
            view = evaluation_view(ctx, run_id, eval_id)
        except StudioError as exc:
            return [], gr.Dropdown(choices=[], value=None), f"**Cannot read evaluations:** {exc}", None, []
        return (
            view.summary,
            gr.Dropdown(choices=view.choices, value=view.selected),
            view.headline,
            view.figure,
            view.records,
        )

    view_widgets = [summary, pick, head, plot, records]

    def on_run(run_id: int | None) -> tuple:
        try:
            items = checkpoint_choices(ctx, run_id)
        except StudioError as exc:
            logger.warning("evaluate: %s", exc)
            items = checkpoint_choices(ctx, None)
        return (gr.Dropdown(choices=items, value=items[0][1] if items else None), *view_outputs(run_id, None))

    def on_refresh(run_id: int | None, eval_id: int | None) -> tuple:
        _safe(supervisor.reap, [])  # reads never write: runs whose trainer died are ended here
        items = _safe(lambda: run_choices(ctx), [])
        value = run_id if run_id in {v for _, v in items} else (items[0][1] if items else None)
        return (gr.Dropdown(choices=items, value=value), *view_outputs(value, eval_id))

    def on_start(
        run_id: int | None, ckpt: str | None, name: str | None, limit: float | None, batch: float | None,
        both: bool,
    ) -> str:  # fmt: skip
        try:
            job = start_evaluation(ctx, ckpt, name, run_id, limit, batch, supervisor, compare=both)
        except (StudioError, OSError) as exc:
            return f"**Not started:** {exc}"
        return job_status(job)

    def on_cancel() -> str:
        active = [j for j in _safe(lambda: supervisor.jobs(kind="evaluate"), []) if j.is_active]
        if not active:
            return "No evaluation is running."
        try:
            supervisor.cancel_job(active[0].id)
        except StudioError as exc:
            return f"**Not cancelled:** {exc}"
        return job_status(ctx.store.get_job(active[0].id))

    def on_tick(seen: int | None, run_id: int | None) -> tuple:
        jobs = _safe(lambda: supervisor.jobs(kind="evaluate"), [])
        skip_view = (gr.skip(),) * (1 + len(view_widgets))
        if not jobs:
            return gr.skip(), gr.skip(), [], seen, *skip_view
        job = jobs[0]
        log_tail = tail_text(Path(job.log_path), max_lines=40) if job.log_path else ""
        line, rows = job_status(job, log_tail), job_rows(jobs)
        just_ended = job.ended_at is not None and time.time() - job.ended_at < 5 * POLL_S
        if job.is_active or job.id == seen or not just_ended:
            return line, log_tail, rows, seen, *skip_view
        # It just ended: show the run it stored into (an "eval-<name>" run when none was picked).
        stored_run = (job.result or {}).get("run_id") or job.run_id or run_id
        items = _safe(lambda: run_choices(ctx), [])
        return (
            line,
            log_tail,
            rows,
            job.id,
            gr.Dropdown(choices=items, value=stored_run),
            *view_outputs(stored_run, None),
        )

    # Datasets registered after the studio started must be pickable without restarting it.
    dataset.focus(lambda: gr.Dropdown(choices=[e.name for e in list_datasets(ctx.workspace)]), None, dataset)
    run.change(on_run, [run], [checkpoint, *view_widgets])
    pick.change(lambda r, e: view_outputs(r, e)[2:], [run, pick], [head, plot, records])
    refresh.click(on_refresh, [run, pick], [run, *view_widgets])
    start.click(on_start, [run, checkpoint, dataset, max_records, batch_size, compare], [status])
    cancel.click(on_cancel, None, [status])
    timer.tick(on_tick, [shown, run], [status, log_box, jobs_table, shown, run, *view_widgets])
    return {
        "run": run,
        "checkpoint": checkpoint,
        "dataset": dataset,
        "start": start,
        "cancel": cancel,
        "status": status,
        "jobs": jobs_table,
        "summary": summary,
        "pick": pick,
        "headline": head,
        "plot": plot,
        "records": records,
        "timer": timer,
        **section,
    }


def refresh_lists(ctx: StudioContext, widgets: Mapping[str, Any]) -> Refresh:
    """How the app re-reads this tab's pickers: runs, checkpoints (a gone one is never kept), datasets."""
    import gradio as gr

    def on_show(run_id: int | None, ckpt: str | None, name: str | None) -> tuple:
        items = _safe(lambda: run_choices(ctx), [])
        value = run_id if run_id in {v for _, v in items} else (items[0][1] if items else None)
        offered = _safe(
            lambda: choices.read_checkpoint_choices(ctx.store, value), choices.checkpoint_choices(None)
        )
        names = choices.dataset_names(choices.read_datasets(ctx.workspace))
        return (
            gr.Dropdown(choices=items, value=value),
            gr.Dropdown(choices=offered.items, value=offered.keep(ckpt), allow_custom_value=True),
            gr.Dropdown(choices=names, value=name, allow_custom_value=True),
        )

    pickers = [widgets["run"], widgets["checkpoint"], widgets["dataset"]]
    return Refresh(on_show, pickers, pickers)


def _safe(fn: Callable[[], Any], fallback: Any) -> Any:
    """Build-time reads of the run DB: a broken DB must not stop the studio from starting."""
    try:
        return fn()
    except StudioError as exc:
        logger.warning("evaluate tab: %s", exc)
        return fallback

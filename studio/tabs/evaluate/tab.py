"""The Evaluate tab's widgets and what they do: the evaluation form and its job, the run's stored
evaluations (summary, confusion, records, per problem type), and the base-vs-checkpoints section
under them."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio import choices, text
from studio.context import StudioContext
from studio.live import Refresh
from studio.processes import tail_text
from studio.supervisor import Supervisor
from studio.tabs.evaluate.compare import create_compare_section
from studio.tabs.evaluate.datasets import dataset_for_run
from studio.tabs.evaluate.jobs import JOB_HEADERS, job_rows, job_status, start_evaluation
from studio.tabs.evaluate.views import (
    RECORD_HEADERS,
    SUMMARY_HEADERS,
    TYPE_HEADERS,
    EvalView,
    checkpoint_choices,
    default_run,
    evaluation_view,
    read_or,
    run_choices,
)
from trainer.core.errors import StudioError
from trainer.data import list_datasets

logger = logging.getLogger(__name__)

INTRO = (
    "Evaluate a checkpoint (or any model folder) on a dataset with greedy answers. The evaluation runs "
    "in the background and is stored in the run database against the checkpoint; pick a run to see "
    "its evaluations: accuracy, format rate, which option was chosen for which answer, and every record. "
    "Tick **Base + all checkpoints** to compare the run's base model and checkpoints per task."
)
DEFAULT_DATASET = "synthetic_motion_eval"
POLL_S = 2.0
# What EvaluateHandlers.view_outputs fills, in its order (EvaluateWidgets attribute names).
VIEW_FIELDS = ("summary", "pick", "head", "plot", "records", "types")


@dataclass(frozen=True)
class EvaluateWidgets:
    """The widgets the tab's events read or write."""

    shown: Any  # gr.State: the id of the ended job whose run the view last jumped to
    run: Any
    checkpoint: Any
    # gr.State: the values the checkpoint picker offered last, so a pick of a run deleted since
    # is dropped, not kept as if typed by hand (choices.Choices.keep).
    checkpoint_offered: Any
    dataset: Any
    max_records: Any
    batch_size: Any
    compare: Any
    start: Any
    cancel: Any
    refresh: Any
    status: Any
    log_box: Any
    jobs_table: Any
    summary: Any
    pick: Any
    head: Any
    plot: Any
    records: Any
    types: Any
    section: dict[str, Any]  # the compare section's widgets, by name
    timer: Any

    @property
    def view_widgets(self) -> list[Any]:
        """What :meth:`EvaluateHandlers.view_outputs` fills, in its order."""
        return [getattr(self, name) for name in VIEW_FIELDS]


class EvaluateHandlers:
    """What the tab's buttons and timer do; a refused start or an unreadable DB becomes a message."""

    def __init__(self, ctx: StudioContext, supervisor: Supervisor) -> None:
        self.ctx = ctx
        self.supervisor = supervisor

    def view_outputs(self, run_id: int | None, eval_id: int | None) -> tuple:
        """-> summary, evaluation picker, headline, confusion figure, records, per-type table."""
        import gradio as gr

        try:
            view = evaluation_view(self.ctx, run_id, eval_id)
        except StudioError as exc:
            no_pick = gr.Dropdown(choices=[], value=None)
            return [], no_pick, f"**Cannot read evaluations:** {exc}", None, [], []
        return (
            view.summary,
            gr.Dropdown(choices=view.choices, value=view.selected),
            view.headline,
            view.figure,
            view.records,
            view.types,
        )

    def on_run(self, run_id: int | None, dataset: str | None = None) -> tuple:
        """-> checkpoint picker, eval dataset (the run's own answer format), :meth:`view_outputs`'s,
        then the values the checkpoint picker offers."""
        import gradio as gr

        try:
            items = checkpoint_choices(self.ctx, run_id)
        except StudioError as exc:
            logger.warning("evaluate: %s", exc)
            items = checkpoint_choices(self.ctx, None)
        first = items[0][1] if items else None
        return (
            gr.Dropdown(choices=items, value=first),
            dataset_for_run(self.ctx, run_id, dataset),
            *self.view_outputs(run_id, None),
            [v for _, v in items],
        )

    def on_refresh(self, run_id: int | None, eval_id: int | None) -> tuple:
        import gradio as gr

        read_or(self.supervisor.reap, [])  # reads never write: runs whose trainer died are ended here
        items = read_or(lambda: run_choices(self.ctx), [])
        value = run_id if run_id in {v for _, v in items} else (items[0][1] if items else None)
        return (gr.Dropdown(choices=items, value=value), *self.view_outputs(value, eval_id))

    def on_start(
        self, run_id: int | None, ckpt: str | None, name: str | None, limit: float | None,
        batch: float | None, both: bool,
    ) -> str:  # fmt: skip
        try:
            job = start_evaluation(self.ctx, ckpt, name, run_id, limit, batch, self.supervisor, compare=both)
        except (StudioError, OSError) as exc:  # literal: "expects <answer> only" lost its tail
            return f"**Not started:** {text.literal(exc)}"
        return job_status(job)

    def on_cancel(self) -> str:
        active = [j for j in read_or(lambda: self.supervisor.jobs(kind="evaluate"), []) if j.is_active]
        if not active:
            return "No evaluation is running."
        try:
            self.supervisor.cancel_job(active[0].id)
        except StudioError as exc:
            return f"**Not cancelled:** {exc}"
        return job_status(self.ctx.store.get_job(active[0].id))

    def on_tick(self, seen: int | None, run_id: int | None) -> tuple:
        """-> status, log tail, jobs table, shown job, run picker, then :meth:`view_outputs`'s."""
        import gradio as gr

        jobs = read_or(lambda: self.supervisor.jobs(kind="evaluate"), [])
        skip_view = (gr.skip(),) * (1 + len(VIEW_FIELDS))
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
        items = read_or(lambda: run_choices(self.ctx), [])
        return (
            line,
            log_tail,
            rows,
            job.id,
            gr.Dropdown(choices=items, value=stored_run),
            *self.view_outputs(stored_run, None),
        )


def _form_section(ctx: StudioContext, runs: list[tuple[str, int]], first_run: int | None) -> tuple[Any, ...]:
    """What to evaluate and the job's buttons:
    ``(run, checkpoint, dataset, max records, batch size, compare, start, cancel, refresh)``."""
    import gradio as gr

    datasets = [e.name for e in list_datasets(ctx.workspace)]
    with gr.Row(equal_height=False):
        run = gr.Dropdown(runs, value=first_run, label="Run", scale=3, elem_id="eval-run")
        checkpoint = gr.Dropdown(
            read_or(lambda: checkpoint_choices(ctx, first_run), []), label="Checkpoint or model folder",
            allow_custom_value=True, scale=4, elem_id="eval-checkpoint",
        )  # fmt: skip
        default = DEFAULT_DATASET if DEFAULT_DATASET in datasets else None
        dataset = gr.Dropdown(
            datasets, value=dataset_for_run(ctx, first_run, default), label="Eval dataset",
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
    return run, checkpoint, dataset, max_records, batch_size, compare, start, cancel, refresh


def _jobs_section(ctx: StudioContext) -> tuple[Any, Any, Any]:
    """``(status line, log tail, jobs table)`` of the evaluation jobs."""
    import gradio as gr

    status = gr.Markdown(elem_id="eval-status")
    with gr.Accordion("Evaluation log (tail)", open=False):
        log_box = gr.Textbox(lines=8, max_lines=8, show_label=False, interactive=False, elem_id="eval-log")
    with gr.Accordion("Evaluation jobs (all runs)", open=False):
        jobs_table = gr.Dataframe(
            headers=JOB_HEADERS, value=read_or(lambda: job_rows(ctx.store.jobs(kind="evaluate")), []),
            interactive=False, max_height=220, elem_id="eval-jobs",
        )  # fmt: skip
    return status, log_box, jobs_table


def _results_section(first_view: EvalView) -> tuple[Any, ...]:
    """The run's evaluations and the picked one:
    ``(summary, picker, headline, confusion, records, per-type table)``."""
    import gradio as gr

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
    types = gr.Dataframe(
        headers=TYPE_HEADERS, value=first_view.types, interactive=False, elem_id="eval-types",
        label="Per problem type (accuracy: multiple choice, numerical · wer: OCR, lower is better · "
        "rouge: free-form · mra: regression; 95% interval)",
    )  # fmt: skip
    return summary, pick, head, plot, records, types


def build_layout(ctx: StudioContext) -> EvaluateWidgets:
    """The tab's widgets, filled from the run DB as it is now (the newest run with an evaluation)."""
    import gradio as gr

    shown = gr.State(None)
    runs = read_or(lambda: run_choices(ctx), [])
    first_run = read_or(lambda: default_run(ctx, runs), None)
    first_view = read_or(lambda: evaluation_view(ctx, first_run), evaluation_view(ctx, None))
    gr.Markdown(INTRO)
    run, checkpoint, dataset, max_records, batch_size, compare, start, cancel, refresh = _form_section(
        ctx, runs, first_run
    )
    checkpoint_offered = gr.State([value for _, value in checkpoint.choices])
    status, log_box, jobs_table = _jobs_section(ctx)
    summary, pick, head, plot, records, types = _results_section(first_view)
    section = create_compare_section(ctx, run, first_run, also_on=[head])
    # Runs only while the tab is shown (app.py starts and stops it on tab selection): a hidden tab
    # ticking every 2 s kept every open page's main thread busy. The jobs live in the run database,
    # so showing the tab again (or a reload, a studio restart) shows them again.
    timer = gr.Timer(POLL_S, active=False)
    return EvaluateWidgets(
        shown=shown, run=run, checkpoint=checkpoint, checkpoint_offered=checkpoint_offered, dataset=dataset,
        max_records=max_records, batch_size=batch_size, compare=compare, start=start, cancel=cancel,
        refresh=refresh, status=status, log_box=log_box, jobs_table=jobs_table, summary=summary, pick=pick,
        head=head, plot=plot, records=records, types=types, section=section, timer=timer,
    )  # fmt: skip


def _wire_events(w: EvaluateWidgets, h: EvaluateHandlers) -> None:
    import gradio as gr

    # Datasets registered after the studio started must be pickable without restarting it.
    w.dataset.focus(
        lambda: gr.Dropdown(choices=[e.name for e in list_datasets(h.ctx.workspace)]), None, w.dataset
    )
    w.run.change(
        h.on_run, [w.run, w.dataset], [w.checkpoint, w.dataset, *w.view_widgets, w.checkpoint_offered]
    )
    w.pick.change(
        lambda r, e: h.view_outputs(r, e)[2:], [w.run, w.pick], [w.head, w.plot, w.records, w.types]
    )
    w.refresh.click(h.on_refresh, [w.run, w.pick], [w.run, *w.view_widgets])
    form = [w.run, w.checkpoint, w.dataset, w.max_records, w.batch_size, w.compare]
    # A started job is followed even if the tab's select event (which starts the timer) was missed,
    # e.g. a tab clicked while the page was still loading: its status stayed "starting" for good.
    w.start.click(h.on_start, form, [w.status]).then(lambda: gr.Timer(active=True), None, w.timer)
    w.cancel.click(h.on_cancel, None, [w.status])
    w.timer.tick(
        h.on_tick, [w.shown, w.run], [w.status, w.log_box, w.jobs_table, w.shown, w.run, *w.view_widgets]
    )


def create_evaluate_tab(ctx: StudioContext, supervisor: Supervisor | None = None) -> dict[str, Any]:
    """Build the Evaluate tab's widgets in the current gr.Tab; returns the key widgets by name."""
    h = EvaluateHandlers(ctx, supervisor or Supervisor(ctx))
    w = build_layout(ctx)
    _wire_events(w, h)
    return {
        "run": w.run,
        "checkpoint": w.checkpoint,
        "checkpoint_offered": w.checkpoint_offered,
        "dataset": w.dataset,
        "start": w.start,
        "cancel": w.cancel,
        "status": w.status,
        "jobs": w.jobs_table,
        "summary": w.summary,
        "pick": w.pick,
        "headline": w.head,
        "plot": w.plot,
        "records": w.records,
        "types": w.types,
        "timer": w.timer,
        **w.section,
    }


def refresh_lists(ctx: StudioContext, widgets: Mapping[str, Any]) -> Refresh:
    """How the app re-reads this tab's pickers: runs, checkpoints (a gone one is never kept: a
    removed folder, or one of a run deleted since; the newest checkpoint is picked instead),
    datasets; then the values the checkpoint picker offers."""
    import gradio as gr

    def on_show(run_id: int | None, ckpt: str | None, name: str | None, shown: list | None = None) -> tuple:
        items = read_or(lambda: run_choices(ctx), [])
        value = run_id if run_id in {v for _, v in items} else (items[0][1] if items else None)
        offered = read_or(
            lambda: choices.read_checkpoint_choices(ctx.store, value), choices.checkpoint_choices(None)
        )
        names = choices.dataset_names(choices.read_datasets(ctx.workspace))
        pick = offered.keep(ckpt, shown=shown or ())
        return (
            gr.Dropdown(choices=items, value=value),
            gr.Dropdown(choices=offered.items, value=pick, allow_custom_value=True),
            gr.Dropdown(choices=names, value=name, allow_custom_value=True),
            offered.values,
        )

    pickers = [widgets["run"], widgets["checkpoint"], widgets["dataset"], widgets["checkpoint_offered"]]
    return Refresh(on_show, pickers, pickers)

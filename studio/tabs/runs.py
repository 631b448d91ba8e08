"""Runs tab: every run with status, best eval accuracy and duration; overlay metrics; diff configs; delete."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from studio import choices, plots, problems, text
from studio.context import StudioContext
from studio.live import Refresh
from studio.supervisor import Supervisor
from trainer.core import metrics_keys as mk
from trainer.core.errors import StudioError
from trainer.rundb import Evaluation, MetricSeries, Run
from trainer.rundb.export import FORMATS, WHATS, export_rows, write_export

TABLE_HEADERS = ["id", "name", "status", "created", "duration", "last step", "best eval acc", "error"]
DEFAULT_OVERLAY = (mk.TOTAL_REWARD, mk.ACCURACY_REWARD, mk.KL_DIV)
_MISSING = "-"


def best_eval_accuracy(evaluations: Sequence[Evaluation], series: MetricSeries | None) -> float | None:
    """The highest accuracy of the run's stored evaluations and its eval/accuracy metric points."""
    values = [e.accuracy for e in evaluations]
    if series is not None:
        values += [v for v in series.values if v == v]  # drop NaN
    return max(values) if values else None


def run_duration_s(run: Run, now: float) -> float | None:
    if run.started_at is None:
        return None
    return (run.ended_at or now) - run.started_at


def run_rows(ctx: StudioContext, runs: Sequence[Run], now: float | None = None) -> list[list[Any]]:
    """The table: one row per run (two queries for all metrics, one per run for evaluations)."""
    now = time.time() if now is None else now
    ids = [r.id for r in runs]
    latest = ctx.store.latest_metrics(ids) if ids else {}
    eval_series = ctx.store.compare_runs(ids, [mk.EVAL_ACCURACY]) if ids else {}
    out = []
    for r in runs:
        best = best_eval_accuracy(
            ctx.store.evaluations(r.id), eval_series.get(r.id, {}).get(mk.EVAL_ACCURACY)
        )
        steps = [p.step for p in latest.get(r.id, {}).values()]
        out.append(
            [
                r.id,
                r.name,
                r.status,
                time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created_at)),
                plots.format_duration(run_duration_s(r, now)),
                max(steps) if steps else _MISSING,
                _MISSING if best is None else f"{best:.3f}",
                problems.problem_from_text(r.error).headline[:120] if r.error else "",
            ]
        )
    return out


def flatten_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Sectioned ``{"grpo": {"grpo_beta": 0.1}}`` -> ``{"grpo.grpo_beta": 0.1}``."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            out.update({f"{key}.{k}": v for k, v in flatten_config(value).items()})
        else:
            out[key] = value
    return out


def config_diff(configs: Mapping[str, Mapping[str, Any]]) -> list[list[str]]:
    """Rows ``[key, value in run 1, value in run 2, ...]`` for every key whose values differ."""
    flat = {label: flatten_config(cfg) for label, cfg in configs.items()}
    keys = list(dict.fromkeys(k for cfg in flat.values() for k in cfg))
    rows = []
    for key in keys:
        values = [repr(cfg[key]) if key in cfg else _MISSING for cfg in flat.values()]
        if len(set(values)) > 1:
            rows.append([key, *values])
    return rows


def delete_runs(ctx: StudioContext, run_ids: Sequence[int], delete_files: bool) -> list[str]:
    """Delete runs (rows, and output folders inside the workspace when asked); active runs are refused."""
    runs = [ctx.store.get_run(i) for i in run_ids]
    for run in runs:
        if run.is_active:
            raise StudioError(text.DELETE_ACTIVE.format(run_id=run.id, status=run.status))
    deleted = []
    for run in runs:
        ctx.store.delete_run(run.id)
        if (
            delete_files
            and run.output_dir
            and Path(run.output_dir).resolve().is_relative_to(ctx.runs_dir.resolve())
        ):
            shutil.rmtree(run.output_dir, ignore_errors=True)
        deleted.append(f"#{run.id} {run.name}")
    return deleted


def export_file_name(run: Run, what: str, fmt: str) -> str:
    """``run-3-motion_grpo-metrics.csv``: the run's name made safe for a file name."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", run.name).strip("._") or "run"
    return f"run-{run.id}-{safe}-{what}.{fmt}"


def export_runs(ctx: StudioContext, run_ids: Sequence[int], what: str, fmt: str) -> list[Path]:
    """Write each run's metrics or rollouts under ``<workspace>/exports/`` and return the files.

    The rows and their encoding are `vgrpo runs export`'s own (``export_rows``, ``write_export``),
    so a file downloaded here equals what that command writes for the same run.
    """
    folder = ctx.workspace / "exports"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for run_id in run_ids:
        run = ctx.store.get_run(int(run_id))
        columns, rows = export_rows(ctx.store, run.id, what)
        path = folder / export_file_name(run, what, fmt)
        write_export(columns, rows, fmt, path)
        paths.append(path)
    return paths


def create_runs_tab(ctx: StudioContext, supervisor: Supervisor) -> dict[str, Any]:
    """Build the tab in the current gr.Tab; returns key widgets."""
    import gradio as gr

    gr.Markdown(text.INTRO_RUNS)
    with gr.Row():
        refresh = gr.Button(text.REFRESH_BUTTON, scale=0, min_width=120, elem_id="runs-refresh")
    table = gr.Dataframe(
        headers=TABLE_HEADERS, value=[], interactive=False, wrap=True, max_height=360, elem_id="runs-table"
    )
    with gr.Row(equal_height=False):
        selected = gr.Dropdown([], multiselect=True, label=text.COMPARE_LABEL, scale=3, elem_id="runs-select")
        metrics = gr.Dropdown(
            list(mk.ALL_METRICS + mk.EVAL_METRICS),
            value=list(DEFAULT_OVERLAY),
            multiselect=True,
            label=text.METRICS_LABEL,
            scale=3,
            elem_id="runs-metrics",
        )
        smoothing = gr.Slider(
            0, 0.99, value=0.0, step=0.01, label=text.SMOOTHING_LABEL, scale=2, elem_id="runs-smoothing"
        )
        compare = gr.Button("Compare", variant="primary", scale=0, min_width=120, elem_id="runs-compare")
    overlay = gr.Plot(label="Overlay", elem_id="runs-overlay")
    gr.Markdown(text.DIFF_HEADING)
    diff_note = gr.Markdown()
    # Headers from the start: an empty Dataframe without them shows "1 2 3" column titles.
    diff = gr.Dataframe(
        value=[], headers=["key"], interactive=False, wrap=True, max_height=320, elem_id="runs-diff"
    )
    with gr.Row(equal_height=True):
        export_what = gr.Radio(
            list(WHATS), value=WHATS[0], label=text.EXPORT_WHAT_LABEL, elem_id="runs-export-what"
        )
        export_format = gr.Radio(
            list(FORMATS), value=FORMATS[0], label=text.EXPORT_FORMAT_LABEL, elem_id="runs-export-format"
        )
        export = gr.Button(text.EXPORT_BUTTON, scale=0, min_width=220, elem_id="runs-export")
    export_files = gr.File(
        label=text.EXPORT_FILES_LABEL, file_count="multiple", interactive=False, elem_id="runs-export-files"
    )
    with gr.Row():
        delete = gr.Button(
            text.DELETE_RUN_BUTTON, variant="stop", scale=0, min_width=220, elem_id="runs-delete"
        )
    with gr.Group(visible=False, elem_id="runs-confirm") as confirm_box:
        confirm_text = gr.Markdown()
        delete_files = gr.Checkbox(label=text.DELETE_FILES_LABEL, value=False, elem_id="runs-delete-files")
        with gr.Row():
            confirm = gr.Button(text.CONFIRM_DELETE, variant="stop", elem_id="runs-confirm-delete")
            cancel = gr.Button(text.CANCEL, elem_id="runs-cancel-delete")
    message = gr.Markdown(elem_id="runs-message")

    def on_refresh(current: list[int] | None) -> tuple:
        runs = supervisor.runs()
        ids = {r.id for r in runs}
        keep = [i for i in current or [] if i in ids]
        return run_rows(ctx, runs), gr.Dropdown(choices=choices.run_choices(runs), value=keep)

    def on_compare(run_ids: list[int] | None, names: list[str] | None, smooth: float) -> tuple:
        if not run_ids:
            return gr.skip(), text.PICK_RUNS, []
        runs = {i: ctx.store.get_run(i) for i in run_ids}
        data = ctx.store.compare_runs(list(run_ids), names or None)
        labelled = {f"#{i} {runs[i].name}": data.get(i, {}) for i in run_ids}
        fig = plots.overlay_figure(labelled, names or list(DEFAULT_OVERLAY), smooth)
        configs = {}
        for i in run_ids:
            stored = ctx.store.get_config(i)
            configs[f"#{i} {runs[i].name}"] = dict(stored.config) if stored else {}
        rows = config_diff(configs)
        headers = ["key", *configs]
        note = text.NO_DIFF if not rows and len(run_ids) > 1 else ""
        return fig, note, gr.Dataframe(value=rows, headers=headers)

    def on_export(run_ids: list[int] | None, what: str, fmt: str) -> tuple[Any, str]:
        if not run_ids:
            return None, text.PICK_RUNS
        try:
            paths = export_runs(ctx, run_ids, what, fmt)
        except (StudioError, OSError) as exc:
            return None, problems.error_markdown(exc, text.NOT_EXPORTED)
        return [str(p) for p in paths], text.EXPORTED.format(count=len(paths), what=what, fmt=fmt)

    def on_delete(run_ids: list[int] | None) -> tuple:
        if not run_ids:
            return gr.Group(visible=False), "", text.PICK_RUNS
        names = ", ".join(f"#{i}" for i in run_ids)
        return gr.Group(visible=True), text.CONFIRM_DELETE_TEXT.format(runs=names), ""

    def on_confirm(run_ids: list[int] | None, with_files: bool) -> tuple:
        try:
            deleted = delete_runs(ctx, run_ids or [], with_files)
        except (StudioError, OSError) as exc:
            return (gr.Group(visible=False), problems.error_markdown(exc), *on_refresh(run_ids))
        return (gr.Group(visible=False), text.DELETED_RUNS.format(runs=", ".join(deleted)), *on_refresh([]))

    refresh.click(on_refresh, selected, [table, selected])
    compare.click(on_compare, [selected, metrics, smoothing], [overlay, diff_note, diff])
    export.click(on_export, [selected, export_what, export_format], [export_files, message])
    delete.click(on_delete, selected, [confirm_box, confirm_text, message])
    confirm.click(on_confirm, [selected, delete_files], [confirm_box, message, table, selected])
    cancel.click(lambda: gr.Group(visible=False), None, confirm_box)
    return {
        "table": table,
        "selected": selected,
        "overlay": overlay,
        "export": export,
        "export_files": export_files,
        "refresh": Refresh(on_refresh, [selected], [table, selected]),
    }

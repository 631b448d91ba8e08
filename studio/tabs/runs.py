"""Runs tab: every run with status, best eval accuracy and duration; overlay metrics; diff configs; delete."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio import choices, plots, problems, text
from studio.context import StudioContext
from studio.live import Refresh
from studio.supervisor import Supervisor
from trainer.core import metrics_keys as mk
from trainer.core.errors import StudioError
from trainer.rundb import Evaluation, MetricSeries, Run, run_duration_s
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


def run_rows(ctx: StudioContext, runs: Sequence[Run], now: float | None = None) -> list[list[Any]]:
    """The table: one row per run (three queries for all metrics and attempts, one per run for
    evaluations). The duration is the time its attempts trained (``run_duration_s``), as everywhere."""
    now = time.time() if now is None else now
    ids = [r.id for r in runs]
    latest = ctx.store.latest_metrics(ids) if ids else {}
    attempts = ctx.store.attempts_of(ids)
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
                plots.format_duration(run_duration_s(r, attempts.get(r.id, []), now)),
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
        # Refused by the store if the run became active since the check above (a Resume elsewhere).
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


@dataclass(frozen=True)
class RunsWidgets:
    """The widgets the tab's events read or write."""

    refresh: Any
    table: Any
    selected: Any
    metrics: Any
    smoothing: Any
    compare: Any
    overlay: Any
    diff_note: Any
    diff: Any
    export_what: Any
    export_format: Any
    export: Any
    export_files: Any
    delete: Any
    confirm_box: Any
    confirm_text: Any
    delete_files: Any
    confirm: Any
    cancel: Any
    message: Any


class RunsHandlers:
    """What the tab's buttons do; a refused action becomes the message, never an exception."""

    def __init__(self, ctx: StudioContext, supervisor: Supervisor) -> None:
        self.ctx = ctx
        self.supervisor = supervisor

    def on_refresh(self, current: list[int] | None) -> tuple:
        import gradio as gr

        runs = self.supervisor.runs()
        ids = {r.id for r in runs}
        keep = [i for i in current or [] if i in ids]
        return run_rows(self.ctx, runs), gr.Dropdown(choices=choices.run_choices(runs), value=keep)

    def on_compare(self, run_ids: list[int] | None, names: list[str] | None, smooth: float) -> tuple:
        import gradio as gr

        if not run_ids:
            return gr.skip(), text.PICK_RUNS, []
        store = self.ctx.store
        runs = {i: store.get_run(i) for i in run_ids}
        data = store.compare_runs(list(run_ids), names or None)
        labelled = {f"#{i} {runs[i].name}": data.get(i, {}) for i in run_ids}
        fig = plots.overlay_figure(labelled, names or list(DEFAULT_OVERLAY), smooth)
        configs = {}
        for i in run_ids:
            stored = store.get_config(i)
            configs[f"#{i} {runs[i].name}"] = dict(stored.config) if stored else {}
        rows = config_diff(configs)
        headers = ["key", *configs]
        note = text.NO_DIFF if not rows and len(run_ids) > 1 else ""
        return fig, note, gr.Dataframe(value=rows, headers=headers)

    def on_export(self, run_ids: list[int] | None, what: str, fmt: str) -> tuple[Any, str]:
        if not run_ids:
            return None, text.PICK_RUNS
        try:
            paths = export_runs(self.ctx, run_ids, what, fmt)
        except (StudioError, OSError) as exc:
            return None, problems.error_markdown(exc, text.NOT_EXPORTED)
        return [str(p) for p in paths], text.EXPORTED.format(count=len(paths), what=what, fmt=fmt)

    def on_delete(self, run_ids: list[int] | None) -> tuple:
        import gradio as gr

        if not run_ids:
            return gr.Group(visible=False), "", text.PICK_RUNS
        names = ", ".join(f"#{i}" for i in run_ids)
        return gr.Group(visible=True), text.CONFIRM_DELETE_TEXT.format(runs=names), ""

    def on_confirm(self, run_ids: list[int] | None, with_files: bool) -> tuple:
        import gradio as gr

        try:
            deleted = delete_runs(self.ctx, run_ids or [], with_files)
        except (StudioError, OSError) as exc:
            return (gr.Group(visible=False), problems.error_markdown(exc), *self.on_refresh(run_ids))
        done = text.DELETED_RUNS.format(runs=", ".join(deleted))
        return (gr.Group(visible=False), done, *self.on_refresh([]))


def _compare_section() -> tuple[Any, ...]:
    """Runs and metrics to overlay, the overlay plot and the config diff:
    ``(selected, metrics, smoothing, compare, overlay, diff_note, diff)``."""
    import gradio as gr

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
    return selected, metrics, smoothing, compare, overlay, diff_note, diff


def _export_section() -> tuple[Any, Any, Any, Any]:
    """``(what, format, button, files)`` of the metrics/rollouts export."""
    import gradio as gr

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
    return export_what, export_format, export, export_files


def _delete_section() -> tuple[Any, ...]:
    """The delete button and its confirmation box:
    ``(delete, confirm_box, confirm_text, delete_files, confirm, cancel)``."""
    import gradio as gr

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
    return delete, confirm_box, confirm_text, delete_files, confirm, cancel


def build_layout() -> RunsWidgets:
    """The tab's widgets: the runs table, the overlay and config diff, export, delete."""
    import gradio as gr

    gr.Markdown(text.INTRO_RUNS)
    with gr.Row():
        refresh = gr.Button(text.REFRESH_BUTTON, scale=0, min_width=120, elem_id="runs-refresh")
    table = gr.Dataframe(
        headers=TABLE_HEADERS, value=[], interactive=False, wrap=True, max_height=360, elem_id="runs-table"
    )
    selected, metrics, smoothing, compare, overlay, diff_note, diff = _compare_section()
    export_what, export_format, export, export_files = _export_section()
    delete, confirm_box, confirm_text, delete_files, confirm, cancel = _delete_section()
    message = gr.Markdown(elem_id="runs-message")
    return RunsWidgets(
        refresh=refresh, table=table, selected=selected, metrics=metrics, smoothing=smoothing,
        compare=compare, overlay=overlay, diff_note=diff_note, diff=diff, export_what=export_what,
        export_format=export_format, export=export, export_files=export_files, delete=delete,
        confirm_box=confirm_box, confirm_text=confirm_text, delete_files=delete_files, confirm=confirm,
        cancel=cancel, message=message,
    )  # fmt: skip


def _wire_events(w: RunsWidgets, h: RunsHandlers) -> None:
    import gradio as gr

    w.refresh.click(h.on_refresh, w.selected, [w.table, w.selected])
    w.compare.click(h.on_compare, [w.selected, w.metrics, w.smoothing], [w.overlay, w.diff_note, w.diff])
    w.export.click(h.on_export, [w.selected, w.export_what, w.export_format], [w.export_files, w.message])
    w.delete.click(h.on_delete, w.selected, [w.confirm_box, w.confirm_text, w.message])
    w.confirm.click(
        h.on_confirm, [w.selected, w.delete_files], [w.confirm_box, w.message, w.table, w.selected]
    )
    w.cancel.click(lambda: gr.Group(visible=False), None, w.confirm_box)


def create_runs_tab(ctx: StudioContext, supervisor: Supervisor) -> dict[str, Any]:
    """Build the tab in the current gr.Tab; returns key widgets."""
    w = build_layout()
    h = RunsHandlers(ctx, supervisor)
    _wire_events(w, h)
    return {
        "table": w.table,
        "selected": w.selected,
        "overlay": w.overlay,
        "export": w.export,
        "export_files": w.export_files,
        "refresh": Refresh(h.on_refresh, [w.selected], [w.table, w.selected]),
    }

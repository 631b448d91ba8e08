"""The Evaluate tab's "Base vs checkpoints" section: per-task table, grouped accuracy bars with
deltas, answer distributions, a failure browser (video, question, completion) and CSV/JSON exports.

Everything is read from the run database through :mod:`studio.eval_compare`; the section follows
the tab's run picker, so an evaluation job that ends (the tab switches to its run) shows up here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio import eval_compare as ec
from studio.context import StudioContext
from studio.plots import answer_distribution_figure, task_bars_figure
from trainer.core.errors import StudioError

logger = logging.getLogger(__name__)

HINT = (
    "Compare the base model with a run's checkpoints: tick **Base + all checkpoints** above (or run "
    "`vgrpo eval --run RUN --checkpoints all --base`), and each model answers the same records with "
    "the same decoding."
)


def compare_view(ctx: StudioContext, run_id: int | None, key: str | None = None) -> dict[str, Any]:
    """What the section shows for a run (no gradio objects, so tests read it directly)."""
    comp = ec.comparison(ctx.store, int(run_id), key) if run_id is not None else None
    if comp is None:
        return {"comparison": None, "choices": [], "key": None, "rows": [], "bars": None, "dist": None,
                "note": HINT, "models": []}  # fmt: skip
    tasks, series = ec.bar_data(comp)
    title = f"Accuracy per task · {comp.dataset} · " + " vs ".join(m.label for m in comp.models)
    dist = {m.label: m.summary.get("answer_distribution", {}) for m in comp.models}
    skipped = comp.models[0].summary.get("skipped") or {}
    plural = "s" if len(comp.models) != 1 else ""
    note = f"**{comp.dataset}** · {len(comp.models)} model{plural} · " + (
        "skipped (no metric for the type): " + ", ".join(f"{k} {v}" for k, v in skipped.items())
        if skipped
        else "no record skipped"
    )
    return {
        "comparison": comp,
        "choices": ec.comparison_choices(ctx.store, int(run_id)),
        "key": comp.eval_key,
        "rows": ec.task_rows(comp),
        "bars": task_bars_figure(tasks, series, title),
        "dist": answer_distribution_figure(dist, "Answer distribution (share of each letter)"),
        "note": note,
        "models": [m.label for m in comp.models],
    }


def failure_choices(comp: ec.Comparison | None, label: str | None) -> list[tuple[str, int]]:
    if comp is None or label is None:
        return []
    return [
        (f"{r.get('id')} · {r.get('task', '')} · chose {r.get('parsed') or r.get('chosen') or 'none'}, "
         f"answer {r.get('answer', r.get('correct'))}", i)
        for i, r in enumerate(ec.failures(comp, label))
    ]  # fmt: skip


def failure_text(row: dict[str, Any]) -> str:
    options = "\n".join(f"- **{k}.** {v}" for k, v in (row.get("options") or {}).items())
    chose = row.get("parsed") or row.get("chosen") or "none"
    return (
        f"**{row.get('question', '(question not stored)')}**\n\n{options}\n\n"
        f"Right answer **{row.get('answer', row.get('correct'))}**, the model chose **{chose}**"
        f"{'' if row.get('format_ok') else ' (answer format broken)'}.\n\n"
        f"```text\n{row.get('completion', '')}\n```"
    )


def write_exports(ctx: StudioContext, comp: ec.Comparison, run_id: int) -> tuple[Path, Path]:
    folder = ctx.workspace / "exports"
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"eval-run{run_id}-{(comp.eval_key or 'nokey')[:10]}"
    csv_path, json_path = folder / f"{stem}.csv", folder / f"{stem}.json"
    csv_path.write_text(ec.export_csv(comp), encoding="utf-8")
    json_path.write_text(ec.export_json(comp), encoding="utf-8")
    return csv_path, json_path


@dataclass(frozen=True)
class CompareWidgets:
    """The section's widgets the events read or write."""

    pick: Any
    refresh: Any
    note: Any
    bars: Any
    table: Any
    dist: Any
    export_csv: Any
    export_json: Any
    model: Any
    record: Any
    video: Any
    detail: Any

    @property
    def view_outputs(self) -> list[Any]:
        """What :meth:`CompareHandlers.on_view` fills, in its order."""
        return [self.pick, self.note, self.bars, self.table, self.dist, self.export_csv, self.export_json,
                self.model]  # fmt: skip


class CompareHandlers:
    """What the section's pickers do; an unreadable run DB becomes the note, never an exception."""

    def __init__(self, ctx: StudioContext) -> None:
        self.ctx = ctx

    def on_view(self, run_id: int | None, key: str | None) -> tuple:
        import gradio as gr

        try:
            view = compare_view(self.ctx, run_id, key)
        except StudioError as exc:
            empty = gr.Dropdown(choices=[], value=None)
            return empty, f"**Cannot read evaluations:** {exc}", None, [], None, None, None, empty
        files = (
            _safe_exports(self.ctx, view["comparison"], int(run_id)) if view["comparison"] else (None, None)
        )
        labels = view["models"]
        return (
            gr.Dropdown(choices=view["choices"], value=view["key"]),
            view["note"],
            view["bars"],
            view["rows"],
            view["dist"],
            files[0],
            files[1],
            gr.Dropdown(choices=labels, value=labels[-1] if labels else None),
        )

    def on_model(self, run_id: int | None, key: str | None, label: str | None) -> Any:
        import gradio as gr

        comp = _safe_comparison(self.ctx, run_id, key)
        items = failure_choices(comp, label)
        return gr.Dropdown(choices=items, value=items[0][1] if items else None)

    def on_record(self, run_id: int | None, key: str | None, label: str | None, index: int | None) -> tuple:
        comp = _safe_comparison(self.ctx, run_id, key)
        rows = ec.failures(comp, label) if comp is not None and label else []
        index = int(index) if isinstance(index, int | float) or str(index).isdigit() else None
        if index is None or not 0 <= index < len(rows):
            return (
                None,
                "No wrong answer picked." if rows or comp is None else "No wrong answer: all correct.",
            )
        row = rows[int(index)]
        media = row.get("video")
        shown = media if media and Path(media).is_file() and Path(media).suffix.lower() != ".png" else None
        return shown, failure_text(row)


def _failures_section(first: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
    """``(model, wrong answer, video, detail)``: one model's wrong answers, one at a time."""
    import gradio as gr

    gr.Markdown("#### Failures")
    with gr.Row(equal_height=False):
        with gr.Column(scale=2):
            model = gr.Dropdown(first["models"], value=(first["models"] or [None])[-1], label="Model",
                                elem_id="eval-fail-model")  # fmt: skip
            first_fails = failure_choices(first["comparison"], (first["models"] or [None])[-1])
            # Its value is an index that on_record checks against the model's failures: with custom
            # values allowed, a stale index from another model or run (its choices not yet updated in
            # this session) reaches the handler instead of failing the event with gradio's
            # "Value ... is not in the list of choices: []" (the red Error the tab opened with).
            record = gr.Dropdown(first_fails, value=None, label="Wrong answer", allow_custom_value=True,
                                 elem_id="eval-fail-record")  # fmt: skip
            video = gr.Video(label="Video", interactive=False, height=240, elem_id="eval-fail-video")
        with gr.Column(scale=3):
            detail = gr.Markdown(elem_id="eval-fail-detail")
    return model, record, video, detail


def _build_section(ctx: StudioContext, first: dict[str, Any], first_run: int | None) -> CompareWidgets:
    """The section's widgets, filled with ``first`` (the :func:`compare_view` of ``first_run``)."""
    import gradio as gr

    gr.Markdown("### Base vs checkpoints")
    with gr.Row(equal_height=True):
        pick = gr.Dropdown(first["choices"], value=first["key"], label="Benchmark", scale=4,
                           elem_id="eval-compare-pick")  # fmt: skip
        refresh = gr.Button("↻ Refresh comparison", scale=1, elem_id="eval-compare-refresh")
    note = gr.Markdown(first["note"], elem_id="eval-compare-note")
    bars = gr.Plot(first["bars"], label="Accuracy per task", elem_id="eval-task-bars")
    table = gr.Dataframe(headers=ec.TASK_HEADERS, value=first["rows"], interactive=False,
                         label="Per-task results", max_height=320, elem_id="eval-task-table")  # fmt: skip
    dist = gr.Plot(first["dist"], label="Answer distribution", elem_id="eval-answer-dist")
    files: tuple[Any, Any] = (None, None)
    if first["comparison"] is not None and first_run is not None:
        files = _safe_exports(ctx, first["comparison"], first_run)
    with gr.Row():
        export_csv = gr.DownloadButton("Export CSV", value=files[0], elem_id="eval-export-csv")
        export_json = gr.DownloadButton("Export JSON", value=files[1], elem_id="eval-export-json")
    model, record, video, detail = _failures_section(first)
    return CompareWidgets(
        pick=pick, refresh=refresh, note=note, bars=bars, table=table, dist=dist, export_csv=export_csv,
        export_json=export_json, model=model, record=record, video=video, detail=detail,
    )  # fmt: skip


def create_compare_section(
    ctx: StudioContext, run: Any, first_run: int | None, also_on: Sequence[Any] = ()
) -> dict[str, Any]:
    """Build the section under the tab's widgets; ``run`` is the tab's run dropdown, ``also_on``
    widgets whose change means new evaluations (the tab's headline, set when a job ends)."""
    try:
        first = compare_view(ctx, first_run)
    except StudioError as exc:
        logger.warning("evaluate compare: %s", exc)
        first = compare_view(ctx, None)
    w = _build_section(ctx, first, first_run)
    h = CompareHandlers(ctx)
    outputs = w.view_outputs
    for trigger in (run, *also_on):
        trigger.change(lambda r: h.on_view(r, None), [run], outputs)
    w.refresh.click(h.on_view, [run, w.pick], outputs)
    w.pick.input(h.on_view, [run, w.pick], outputs)
    w.model.change(h.on_model, [run, w.pick, w.model], [w.record])
    w.record.change(h.on_record, [run, w.pick, w.model, w.record], [w.video, w.detail])
    return {
        "compare_pick": w.pick,
        "task_bars": w.bars,
        "task_table": w.table,
        "answer_dist": w.dist,
        "fail_model": w.model,
        "fail_record": w.record,
        "fail_video": w.video,
        "fail_detail": w.detail,
        "export_csv": w.export_csv,
        "export_json": w.export_json,
        "compare_refresh": w.refresh,
    }


def _safe_exports(ctx: StudioContext, comp: ec.Comparison, run_id: int) -> tuple[Any, Any]:
    try:
        csv_path, json_path = write_exports(ctx, comp, run_id)
    except OSError as exc:
        logger.warning("evaluate exports: %s", exc)
        return None, None
    return str(csv_path), str(json_path)


def _safe_comparison(ctx: StudioContext, run_id: int | None, key: str | None) -> ec.Comparison | None:
    try:
        return ec.comparison(ctx.store, int(run_id), key) if run_id is not None else None
    except StudioError as exc:
        logger.warning("evaluate compare: %s", exc)
        return None

"""What a stored evaluation looks like (no Gradio): summary, per-type and per-record tables, the
confusion heatmap, and the run, checkpoint and evaluation pickers' choices, all read from the run
database."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import plotly.graph_objects as go

from studio import choices
from studio.context import StudioContext
from trainer.core.errors import StudioError
from trainer.data.problem_types import MULTIPLE_CHOICE
from trainer.eval.benchmark import NO_ANSWER, stored_answer, stored_choice, stored_type, stored_type_stats
from trainer.rundb import Evaluation

logger = logging.getLogger(__name__)

RECORD_HEADERS = ["id", "correct", "chosen", "ok", "format ok", "completion"]
SUMMARY_HEADERS = ["eval", "step", "dataset", "records", "accuracy", "format rate", "when"]
TYPE_HEADERS = ["type", "n", "metric", "value", "interval"]


def confusion_counts(results: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[str], list[list[int]]]:
    """``(correct letters, chosen letters, counts)``: ``counts[i][j]`` records whose answer is
    ``rows[i]`` and whose chosen option is ``cols[j]`` ("none" when no option was read). Only
    multiple-choice records have options; the other problem types are left out."""
    pairs = [(stored_answer(r), stored_choice(r)) for r in results if stored_type(r) == MULTIPLE_CHOICE]
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
    if not rows:
        # An empty grid read as "nothing evaluated": say why it is empty (the table below has the types).
        fig.add_annotation(
            text="No multiple-choice record: the other problem types<br>are scored in the per-type table",
            showarrow=False,
            xref="paper",
            yref="paper",
            x=0.5,
            y=0.5,
        )
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
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


def type_rows(results: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    """The per-type table (TYPE_HEADERS) of an evaluation's records: each problem type's count, its
    metric (accuracy; wer, lower is better; rouge; mra), the mean rounded to 4 places and its 95 %
    interval as text ("" where there is none: a mean over fewer than two records)."""
    return [
        [
            s.type,
            s.n,
            s.metric,
            round(s.value, 4),
            f"{s.interval[0]:.3f}–{s.interval[1]:.3f}" if s.interval is not None else "",
        ]
        for s in stored_type_stats(results)
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
    types: list[list[Any]] = field(default_factory=list)  # type_rows of the shown evaluation


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
        types=type_rows(chosen.results),
    )


def run_choices(ctx: StudioContext) -> list[tuple[str, int]]:
    """Training runs and the models registered for evaluation (``vgrpo eval`` of a base model)."""
    return choices.run_choices(ctx.store.list_runs(kind=None))


def default_run(ctx: StudioContext, items: Sequence[tuple[str, int]]) -> int | None:
    """The run to show first: the newest one with a stored evaluation, else the newest finished one,
    else the newest with a checkpoint to evaluate, else the newest. (The newest run alone was often
    one that had just failed, with nothing to evaluate.)"""
    ids = [run_id for _, run_id in items]
    for run_id in ids:
        if ctx.store.evaluations(run_id):
            return run_id
    for run_id in ids:
        if ctx.store.get_run(run_id).status == "finished":
            return run_id
    for run_id in ids:
        if ctx.store.checkpoints(run_id):
            return run_id
    return ids[0] if ids else None


def checkpoint_choices(ctx: StudioContext, run_id: int | None) -> list[tuple[str, str]]:
    """The run's checkpoints still on disk (newest first), its base model, and the embedded tiny model."""
    return choices.read_checkpoint_choices(ctx.store, run_id).items


def read_or(fn: Callable[[], Any], fallback: Any) -> Any:
    """Build-time reads of the run DB: a broken DB must not stop the studio from starting."""
    try:
        return fn()
    except StudioError as exc:
        logger.warning("evaluate tab: %s", exc)
        return fallback

"""Base vs checkpoints of one run, read from the run database (no gradio): which stored evaluations
compare, per-task rows with deltas against the base, failures, and the CSV/JSON exports.

Evaluations compare when they share an ``eval_key`` (same records, same decoding: see
``trainer/cli/eval_models.py``). The base model is found by the run config's
``model.model_name_or_path`` among every run's checkpoints (``vgrpo eval --base`` files it under
an ``eval-<name>`` run of its own).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.rundb import Evaluation, RunStore

BASE = "base"


@dataclass(frozen=True)
class ModelResult:
    """One model's stored evaluation in a comparison: ``label`` is "base" or "step N"."""

    label: str
    step: int
    evaluation: Evaluation

    @property
    def summary(self) -> dict[str, Any]:
        return dict(self.evaluation.summary or {})


@dataclass(frozen=True)
class Comparison:
    dataset: str
    eval_key: str | None
    models: list[ModelResult] = field(default_factory=list)

    @property
    def base(self) -> ModelResult | None:
        return next((m for m in self.models if m.label == BASE), None)


def _base_path(store: RunStore, run_id: int) -> str | None:
    config = store.get_config(run_id)
    model = (config.config if config else {}).get("model") or {}
    return model.get("model_name_or_path")


def _same_path(a: str, b: str) -> bool:
    return a == b or Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def base_evaluations(store: RunStore, run_id: int) -> list[Evaluation]:
    """Stored evaluations of the run's base model (under whichever run holds that model folder)."""
    base = _base_path(store, run_id)
    if not base:
        return []
    found = []
    for run in store.list_runs(kind=None):  # a registered model's run, or a run that trained it
        ids = {c.id for c in store.checkpoints(run.id, include_deleted=True) if _same_path(c.path, base)}
        if ids:
            found.extend(e for e in store.evaluations(run.id) if e.checkpoint_id in ids)
    return found


def comparison(store: RunStore, run_id: int, eval_key: str | None = None) -> Comparison | None:
    """The newest benchmark evaluation's group (or ``eval_key``'s): base first, then by step."""
    steps = {c.id: c.step for c in store.checkpoints(run_id, include_deleted=True)}
    own = [e for e in store.evaluations(run_id) if e.summary]
    base = [e for e in base_evaluations(store, run_id) if e.summary and e.checkpoint_id not in steps]
    candidates = own + base
    if not candidates:
        return None
    key = eval_key or max(candidates, key=lambda e: e.id).eval_key
    latest: dict[tuple[str, int], Evaluation] = {}
    for e in candidates:
        if e.eval_key != key:
            continue
        who = (
            (BASE, 0)
            if e.checkpoint_id not in steps
            else (f"step {steps[e.checkpoint_id]}", steps[e.checkpoint_id])
        )
        if who not in latest or e.id > latest[who].id:
            latest[who] = e
    models = [ModelResult(label, step, e) for (label, step), e in latest.items()]
    models.sort(key=lambda m: (m.label != BASE, m.step))
    return Comparison(dataset=models[0].evaluation.dataset, eval_key=key, models=models)


def comparison_choices(store: RunStore, run_id: int) -> list[tuple[str, str]]:
    """(label, eval_key) of every benchmark group of the run, newest first."""
    seen: dict[str, str] = {}
    for e in sorted(store.evaluations(run_id), key=lambda e: e.id, reverse=True):
        if e.summary and e.eval_key and e.eval_key not in seen:
            preset = (e.settings or {}).get("preset", "?")
            seen[e.eval_key] = (
                f"{e.dataset} · {preset} · {e.summary.get('overall', {}).get('n', '?')} records"
            )
    return [(label, key) for key, label in seen.items()]


TASK_HEADERS = ["task", "model", "n", "accuracy", "95% CI", "Δ vs base", "format rate", "unparseable"]
# The CSV export's columns: numbers a spreadsheet or pandas reads as numbers (the table's "95% CI"
# is one text cell, "0.512–0.730"; here its ends are two columns). Empty delta: the base itself.
CSV_HEADERS = [
    "task", "model", "n", "accuracy", "ci_low", "ci_high", "delta_vs_base", "format_rate",
    "unparseable_rate", "evaluation_id",
]  # fmt: skip


def task_stats(comp: Comparison) -> list[dict[str, Any]]:
    """One dict per (task, model), "overall" last, keyed by CSV_HEADERS; ``delta_vs_base`` is the
    accuracy difference to the base model (None for the base, or without one)."""
    base = comp.base.summary if comp.base else None
    base_acc = {t["task"]: t["accuracy"] for t in base["per_task"]} if base else {}
    if base:
        base_acc["overall"] = base["overall"]["accuracy"]
    found = []
    for task in _tasks(comp) + ["overall"]:
        for m in comp.models:
            stats = _stats(m.summary, task)
            if stats is None:
                continue
            delta = stats["accuracy"] - base_acc[task] if task in base_acc and m.label != BASE else None
            found.append(
                {
                    "task": task,
                    "model": m.label,
                    "n": stats["n"],
                    "accuracy": stats["accuracy"],
                    "ci_low": stats["ci_low"],
                    "ci_high": stats["ci_high"],
                    "delta_vs_base": delta,
                    "format_rate": stats["format_rate"],
                    "unparseable_rate": stats.get("unparseable_rate", 0.0),
                    "evaluation_id": m.evaluation.id,
                }
            )
    return found


def task_rows(comp: Comparison) -> list[list[Any]]:
    """The table's rows (TASK_HEADERS): :func:`task_stats` rounded, the interval and Δ as text."""
    return [
        [
            s["task"],
            s["model"],
            s["n"],
            round(s["accuracy"], 4),
            f"{s['ci_low']:.3f}–{s['ci_high']:.3f}",
            "" if s["delta_vs_base"] is None else f"{s['delta_vs_base']:+.3f}",
            round(s["format_rate"], 4),
            round(s["unparseable_rate"], 4),
        ]
        for s in task_stats(comp)
    ]


def _tasks(comp: Comparison) -> list[str]:
    return sorted({t["task"] for m in comp.models for t in m.summary.get("per_task", [])})


def _stats(summary: dict[str, Any], task: str) -> dict[str, Any] | None:
    if task == "overall":
        return summary.get("overall")
    return next((t for t in summary.get("per_task", []) if t["task"] == task), None)


def bar_data(comp: Comparison) -> tuple[list[str], list[tuple[str, list[float | None], list[str]]]]:
    """(tasks, [(model label, accuracy per task, bar text with Δ vs base)]) for the grouped bars."""
    tasks = _tasks(comp) + ["overall"]
    base = comp.base
    series = []
    for m in comp.models:
        values, texts = [], []
        for task in tasks:
            stats = _stats(m.summary, task)
            acc = stats["accuracy"] if stats else None
            ref = _stats(base.summary, task) if base and m is not base else None
            values.append(acc)
            if acc is None:
                texts.append("")
            elif ref is not None:
                texts.append(f"{acc:.0%} ({acc - ref['accuracy']:+.0%})")
            else:
                texts.append(f"{acc:.0%}")
        series.append((m.label, values, texts))
    return tasks, series


def failures(comp: Comparison, label: str) -> list[dict[str, Any]]:
    """The wrong answers of one model of the comparison, in record order."""
    model = next((m for m in comp.models if m.label == label), None)
    return [] if model is None else [dict(r) for r in model.evaluation.results if not r.get("is_correct")]


def export_csv(comp: Comparison) -> str:
    """:func:`task_stats` as CSV (CSV_HEADERS): full-precision numbers, an empty delta for the base."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_HEADERS)
    writer.writeheader()
    for stats in task_stats(comp):
        writer.writerow({k: "" if v is None else v for k, v in stats.items()})
    return out.getvalue()


def export_json(comp: Comparison) -> str:
    doc = {
        "dataset": comp.dataset,
        "eval_key": comp.eval_key,
        "models": [
            {
                "label": m.label,
                "step": m.step,
                "evaluation_id": m.evaluation.id,
                "dataset_fingerprint": m.evaluation.dataset_fingerprint,
                "settings": dict(m.evaluation.settings or {}),
                **m.summary,
                "records": [dict(r) for r in m.evaluation.results],
            }
            for m in comp.models
        ],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False)

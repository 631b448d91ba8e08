"""Base vs checkpoints in the Evaluate tab: which stored evaluations compare, per-task rows with
deltas, bars, answer distribution, failures and exports (read from a real run database)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from studio import eval_compare as ec
from studio.context import StudioContext
from studio.tabs.evaluate.compare import compare_view, failure_choices, failure_text
from trainer.data.records import MCQRecord
from trainer.eval.benchmark import BenchmarkItem, score_items, summarize


def _items() -> list[BenchmarkItem]:
    items = []
    for i, (task, answer) in enumerate(
        [("horizontal", "A"), ("horizontal", "B"), ("vertical", "C"), ("vertical", "D")]
    ):
        record = MCQRecord(
            id=f"q{i}", video=f"/v/q{i}.mp4", image=None, question="Which way does the square move?",
            options={"A": "left", "B": "right", "C": "up", "D": "down"}, answer=answer, source="b.json",
            index=i,
        )  # fmt: skip
        items.append(BenchmarkItem(record, task))
    return items


def _store_eval(store, ckpt_id: int, letters: str, key: str = "k1") -> int:
    items = _items()
    report = summarize(score_items(items, [f"<think>t</think> <answer>({x})</answer>" for x in letters]))
    evaluation = store.add_evaluation(
        ckpt_id, "bench", accuracy=report.overall.accuracy, format_rate=report.overall.format_rate,
        results=[r.to_dict() for r in report.rows], eval_key=key, dataset_fingerprint="fp",
        settings={"preset": "greedy"}, summary=report.summary(),
    )  # fmt: skip
    return evaluation.id


def _seed(ctx: StudioContext, tmp_path: Path) -> int:
    store = ctx.store
    base = str(tmp_path / "base-model")
    run = store.create_run("grpo-a", config={"model": {"model_name_or_path": base}})
    base_run = store.create_run("eval-base-model", kind="model")
    base_ckpt = store.add_checkpoint(base_run.id, 0, base, {})
    c2 = store.add_checkpoint(run.id, 2, str(tmp_path / "out" / "checkpoint-2"), {})
    c4 = store.add_checkpoint(run.id, 4, str(tmp_path / "out" / "checkpoint-4"), {})
    _store_eval(store, base_ckpt.id, "AAAA")  # always "A": 1 of 4
    _store_eval(store, c2.id, "ABAA")  # 2 of 4
    _store_eval(store, c4.id, "ABCD")  # all right
    _store_eval(store, c4.id, "DDDD", key="other-settings")  # another decoding: not in this group
    return run.id


def test_comparison_groups_by_key_base_first_with_deltas(ctx: StudioContext, tmp_path: Path) -> None:
    run_id = _seed(ctx, tmp_path)
    comp = ec.comparison(ctx.store, run_id, "k1")
    assert [m.label for m in comp.models] == ["base", "step 2", "step 4"]
    rows = {(r[0], r[1]): r for r in ec.task_rows(comp)}
    assert rows[("horizontal", "base")][3] == 0.5 and rows[("horizontal", "base")][5] == ""
    assert rows[("horizontal", "step 2")][3] == 1.0 and rows[("horizontal", "step 2")][5] == "+0.500"
    assert rows[("vertical", "step 2")][5] == "+0.000"
    assert rows[("overall", "step 4")][3] == 1.0 and rows[("overall", "step 4")][5] == "+0.750"
    tasks, series = ec.bar_data(comp)
    assert tasks == ["horizontal", "vertical", "overall"]
    assert series[2] == ("step 4", [1.0, 1.0, 1.0], ["100% (+50%)", "100% (+100%)", "100% (+75%)"])
    # the newest evaluation (other settings) decides the default group
    assert [m.label for m in ec.comparison(ctx.store, run_id).models] == ["step 4"]
    assert [k for _, k in ec.comparison_choices(ctx.store, run_id)] == ["other-settings", "k1"]


def test_failures_and_exports(ctx: StudioContext, tmp_path: Path) -> None:
    run_id = _seed(ctx, tmp_path)
    comp = ec.comparison(ctx.store, run_id, "k1")
    fails = ec.failures(comp, "base")
    assert [(f["id"], f["parsed"], f["answer"]) for f in fails] == [
        ("q1", "A", "B"),
        ("q2", "A", "C"),
        ("q3", "A", "D"),
    ]
    assert [label for label, _ in failure_choices(comp, "base")][0] == "q1 · horizontal · chose A, answer B"
    text = failure_text(fails[0])
    assert (
        "Which way does the square move?" in text
        and "**B.** right" in text
        and "<answer>(A)</answer>" in text
    )
    rows = list(csv.DictReader(io.StringIO(ec.export_csv(comp))))
    assert len(rows) == 3 * 3
    assert list(rows[0]) == ec.CSV_HEADERS
    # Numbers in their own columns, as a spreadsheet reads them (it once wrote "95% CI" as the text
    # "0.xxx–0.yyy" and the delta as "+0.500").
    by_model = {(r["task"], r["model"]): r for r in rows}
    base, step2 = by_model[("horizontal", "base")], by_model[("horizontal", "step 2")]
    assert float(base["accuracy"]) == 0.5 and base["delta_vs_base"] == ""
    assert 0.0 < float(base["ci_low"]) < 0.5 < float(base["ci_high"]) < 1.0
    assert float(step2["delta_vs_base"]) == 0.5 and int(step2["n"]) == 2
    assert int(by_model[("overall", "step 4")]["evaluation_id"]) == comp.models[2].evaluation.id
    doc = json.loads(ec.export_json(comp))
    assert [m["label"] for m in doc["models"]] == ["base", "step 2", "step 4"]
    assert doc["models"][0]["answer_distribution"] == {"A": 4}


def test_compare_view_figures(ctx: StudioContext, tmp_path: Path) -> None:
    run_id = _seed(ctx, tmp_path)
    view = compare_view(ctx, run_id, "k1")
    assert [t.name for t in view["bars"].data] == ["base", "step 2", "step 4"]
    assert list(view["bars"].data[0].y) == [0.5, 0.0, 0.25]
    dist = {t.name: dict(zip(t.x, t.y, strict=True)) for t in view["dist"].data}
    assert dist["base"] == {"A": 1.0, "B": 0.0, "C": 0.0, "D": 0.0}  # always "A" is one bar
    assert view["models"] == ["base", "step 2", "step 4"]
    assert compare_view(ctx, None)["comparison"] is None

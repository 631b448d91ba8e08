"""trainer.eval.benchmark: Wilson and mean intervals against hand numbers, per-task and per-type
breakdowns, skipped problem types, stratified subsets, and the real Video-R1 eval records of
../shared/realdata."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from trainer.core.errors import DataError
from trainer.data.records import MCQRecord
from trainer.eval.benchmark import (
    NO_ANSWER,
    BenchmarkItem,
    fingerprint,
    mean_interval,
    score_item,
    score_items,
    stored_type_stats,
    stratified_subset,
    summarize,
    task_of,
    type_stats,
    wilson_interval,
)
from trainer.eval.benchmark_data import load_benchmark

Z = 1.959963984540054  # the 0.975 normal quantile


def _item(rid: str, task: str, answer: str = "A", letters: str = "ABCD") -> BenchmarkItem:
    options = {letter: f"option {letter.lower()}" for letter in letters}
    record = MCQRecord(
        id=rid,
        video=f"/v/{rid}.mp4",
        image=None,
        question=f"question {rid}?",
        options=options,
        answer=answer,
        source="bench.json",
        index=0,
    )
    return BenchmarkItem(record=record, task=task)


def _says(letter: str) -> str:
    return f"<think>looked</think> <answer>({letter})</answer>"


def _open_item(rid: str, task: str, problem_type: str, reference: str) -> BenchmarkItem:
    """A hand-built record of a type other than multiple choice (no options, a reference answer)."""
    record = MCQRecord(
        id=rid,
        video=f"/v/{rid}.mp4",
        image=None,
        question=f"question {rid}?",
        options={},
        answer=reference,
        source="bench.json",
        index=0,
        problem_type=problem_type,
    )
    return BenchmarkItem(record=record, task=task)


def _answers(text: str) -> str:
    return f"<think>looked</think> <answer>{text}</answer>"


def test_wilson_interval_matches_hand_computation() -> None:
    # 8 of 10: p = 0.8, z^2 = 3.8414588, z^2/n = 0.38414588, denominator 1.38414588
    # centre = (0.8 + 0.19207294) / 1.38414588 = 0.71674016
    # half = z * sqrt(0.016 + 0.00960365) / 1.38414588 = 1.95996398 * 0.16001140 / 1.38414588 = 0.22657769
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.71674016 - 0.22657769, abs=1e-6)
    assert high == pytest.approx(0.71674016 + 0.22657769, abs=1e-6)
    # 0 of 5: the interval starts at 0 and ends at (z^2/n) / (1 + z^2/n) = 0.76829176 / 1.76829176
    low, high = wilson_interval(0, 5)
    assert low == pytest.approx(0.0, abs=1e-12)
    assert high == pytest.approx(0.76829176 / 1.76829176, abs=1e-6)
    # 5 of 5 mirrors 0 of 5.
    assert wilson_interval(5, 5)[0] == pytest.approx(1 - 0.76829176 / 1.76829176, abs=1e-6)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    # the same formula written the other way round (Wilson 1927, eq. for the bounds)
    n, k = 200, 123
    p = k / n
    bound = (p + Z**2 / (2 * n) - Z * math.sqrt(p * (1 - p) / n + Z**2 / (4 * n**2))) / (1 + Z**2 / n)
    assert wilson_interval(k, n)[0] == pytest.approx(bound, abs=1e-12)
    with pytest.raises(ValueError, match="correct=6, n=5"):
        wilson_interval(6, 5)


def test_per_task_breakdown_and_always_a_model() -> None:
    items = [_item("m1", "MVBench", "A"), _item("m2", "MVBench", "B"), _item("m3", "MVBench", "C")]
    items += [_item("v1", "VideoMME", "A"), _item("v2", "VideoMME", "A")]
    items += [_item("x1", "MMVU", "D")]
    # A model that always says "A", except one unreadable answer and one without the tags.
    completions = [_says("A"), _says("A"), "I think A or B", _says("A"), "<answer>(A)</answer>", _says("A")]
    report = summarize(score_items(items, completions), skipped={"regression": 3})
    by_task = {t.task: t for t in report.per_task}
    assert [t.task for t in report.per_task] == ["MMVU", "MVBench", "VideoMME"]
    assert by_task["MVBench"].n == 3
    assert by_task["MVBench"].accuracy == pytest.approx(1 / 3)
    assert (by_task["MVBench"].ci_low, by_task["MVBench"].ci_high) == pytest.approx(wilson_interval(1, 3))
    assert by_task["MVBench"].unparseable_rate == pytest.approx(1 / 3)  # "I think A or B": no tags
    assert by_task["VideoMME"].accuracy == 1.0
    assert by_task["VideoMME"].format_rate == 0.5  # "<answer>" without <think> in think mode
    assert by_task["MMVU"].accuracy == 0.0
    assert report.overall.n == 6
    assert report.overall.accuracy == pytest.approx(3 / 6)
    assert report.overall.format_rate == pytest.approx(4 / 6)
    # the always-"A" habit is what the distribution shows
    assert report.overall.answer_distribution == {"A": 5, NO_ANSWER: 1}
    summary = report.summary()
    assert summary["answer_distribution"] == {"A": 5, NO_ANSWER: 1}
    assert summary["skipped"] == {"regression": 3}
    assert summary["overall"]["n"] == 6
    assert {t["task"] for t in summary["per_task"]} == {"MMVU", "MVBench", "VideoMME"}
    json.dumps(summary)  # plain JSON types only
    failures = [r for r in report.rows if not r.is_correct]
    assert [(r.id, r.parsed, r.answer) for r in failures] == [
        ("m2", "A", "B"),
        ("m3", None, "C"),
        ("x1", "A", "D"),
    ]


def test_task_of_order() -> None:
    assert task_of({"task": "t", "data_source": "d"}, "f") == "t"
    assert (
        task_of(
            {"data_source": "https://www.youtube.com/watch?v=x", "path": "./Evaluation/MMVU/videos/C/0.mp4"},
            "f",
        )
        == "MMVU"
    )
    assert task_of({"data_source": "", "path": "./Evaluation/VSIBench/scannet/s.mp4"}, "f") == "VSIBench"
    assert task_of({"data_source": "NextQA"}, "f") == "NextQA"
    assert task_of({"task_type": "Action Reasoning"}, "f") == "Action Reasoning"
    assert task_of({"path": "videos/m.mp4"}, "fallback") == "fallback"


def test_stratified_subset_keeps_every_task_and_is_seeded() -> None:
    items = [_item(f"a{i}", "a") for i in range(10)] + [_item(f"b{i}", "b") for i in range(4)]
    limited = stratified_subset(items, limit=3, seed=1)
    assert [i.task for i in limited].count("a") == 3 and [i.task for i in limited].count("b") == 3
    assert limited == stratified_subset(items, limit=3, seed=1)
    assert [i.record.id for i in limited] != [i.record.id for i in stratified_subset(items, limit=3, seed=2)]
    # file order is kept
    assert limited == [i for i in items if i in limited]
    half = stratified_subset(items, percent=50, seed=0)
    assert sorted(i.task for i in half) == ["a"] * 5 + ["b"] * 2
    assert stratified_subset(items, percent=1, seed=0) != []  # at least one per task
    assert len(stratified_subset(items, percent=1, seed=0)) == 2
    with pytest.raises(ValueError, match="limit must be >= 1"):
        stratified_subset(items, limit=0)


def test_fingerprint_follows_the_records_not_the_folder() -> None:
    a = [_item("m1", "t"), _item("m2", "t")]
    assert fingerprint(a) == fingerprint(list(a))
    assert fingerprint(a) != fingerprint(a[:1])
    assert fingerprint(a) != fingerprint([_item("m1", "t"), _item("m2", "t", answer="B")])


def test_mixed_problem_types_are_loaded_and_unknown_ones_skipped(tmp_path: Path) -> None:
    rows = [
        {
            "problem_id": 1,
            "problem": "Which way?",
            "options": ["A. left", "B. right"],
            "solution": "<answer>B</answer>",
            "path": "./Evaluation/MVBench/star/1.mp4",
            "data_type": "video",
            "problem_type": "multiple choice",
        },
        {
            "problem_id": 2,
            "problem": "How many?",
            "options": None,
            "solution": "<answer>3</answer>",
            "path": "./Evaluation/VSIBench/scannet/2.mp4",
            "data_type": "video",
            "problem_type": "numerical",
        },
        {
            "problem_id": 3,
            "problem": "How far?",
            "options": None,
            "solution": "<answer>1.5</answer>",
            "path": "./Evaluation/VSIBench/scannet/3.mp4",
            "data_type": "video",
            "problem_type": "regression",
        },
        {
            "problem_id": 4,
            "problem": "How far now?",
            "options": None,
            "solution": "<answer>2</answer>",
            "path": "./Evaluation/VSIBench/scannet/4.mp4",
            "data_type": "video",
            "problem_type": "regression",
        },
        {
            "problem_id": 5,
            "problem": "Read it",
            "options": None,
            "solution": "<answer>STOP</answer>",
            "path": "./Evaluation/X/5.mp4",
            "data_type": "video",
            "problem_type": "OCR",
        },
        {
            "problem_id": 6,
            "problem": "Pick",
            "options": ["A. x", "B. y"],
            "solution": "<answer>Q</answer>",
            "path": "./Evaluation/MVBench/star/6.mp4",
            "data_type": "video",
            "problem_type": "multiple choice",
        },
        {
            "problem_id": 7,
            "problem": "Spot it",
            "options": None,
            "solution": "<answer>left</answer>",
            "path": "./Evaluation/X/7.mp4",
            "data_type": "video",
            "problem_type": "spot the difference",
        },
    ]
    path = tmp_path / "eval_mixed.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    bench = load_benchmark(str(path), tmp_path, check_media=False)
    assert [(i.record.id, i.task, i.record.problem_type) for i in bench.items] == [
        ("1", "MVBench", "multiple choice"),
        ("2", "VSIBench", "numerical"),
        ("3", "VSIBench", "regression"),
        ("4", "VSIBench", "regression"),
        ("5", "X", "OCR"),
    ]
    assert bench.skipped == {"spot the difference": 1}  # no metric for an unknown type
    assert bench.invalid == 1  # record 6: answer Q is not an option


REAL_EVAL = {
    # file -> (scored, {problem type: n}, tasks); nothing is skipped: every type is scored
    "video_r1_eval_mvbench_sample200.json": (200, {"multiple choice": 200}, {"MVBench"}),
    "video_r1_eval_vsibench_sample200.json": (200, {"multiple choice": 92, "regression": 108}, {"VSIBench"}),
    "video_r1_eval_videommmu_sample200.json": (200, {"multiple choice": 196, "numerical": 4}, {"VideoMMMU"}),
    "video_r1_eval_mmvu_sample200.json": (200, {"multiple choice": 200}, {"MMVU"}),
}


def _reference_reply(item: Any) -> str:
    record = item.record
    answer = f"({record.answer})" if record.is_multiple_choice else record.answer
    return f"<think>ref</think> <answer>{answer}</answer>"


@pytest.mark.realdata
@pytest.mark.parametrize("name", sorted(REAL_EVAL))
def test_real_video_r1_eval_files(real_mcq: Path, name: str, tmp_path: Path) -> None:
    scored, types, tasks = REAL_EVAL[name]
    bench = load_benchmark(str(real_mcq / name), tmp_path, video_root=tmp_path, check_media=False)
    assert len(bench.items) == scored
    assert bench.skipped == {}
    assert dict(Counter(i.record.problem_type for i in bench.items)) == types
    assert {i.task for i in bench.items} == tasks
    assert bench.invalid == 0
    # Scoring the reference answers gives every type its best value.
    right = summarize(score_items(bench.items, [_reference_reply(i) for i in bench.items]))
    assert right.overall.accuracy == 1.0
    best = {"accuracy": 1.0, "mra": 1.0, "wer": 0.0, "rouge": 1.0}
    assert {t["type"]: t["value"] for t in right.summary()["per_type"]} == {
        t["type"]: best[t["metric"]] for t in right.summary()["per_type"]
    }
    # Always "A": the headline accuracy is over the items scored by accuracy (multiple choice and
    # numerical); it is the share of A among the multiple-choice ones (a number is never "(A)").
    always_a = summarize(score_items(bench.items, [_says("A")] * len(bench.items)), bench.skipped)
    by_accuracy = [i for i in bench.items if i.record.problem_type in ("multiple choice", "numerical")]
    share_a = sum(i.record.answer == "A" for i in by_accuracy) / len(by_accuracy)
    assert always_a.overall.accuracy == pytest.approx(share_a)
    assert always_a.overall.answer_distribution == {
        "A": len(bench.items) - types.get("regression", 0) - types.get("numerical", 0)
    }
    assert always_a.summary()["skipped"] == {}


@pytest.mark.realdata
def test_real_videomme_tasks_and_mixed_dataflow(real_mcq: Path, tmp_path: Path) -> None:
    bench = load_benchmark(
        str(real_mcq / "video_r1_eval_videomme_sample200.json"), tmp_path, check_media=False
    )
    by_task = summarize(score_items(bench.items, [_says("B")] * len(bench.items))).per_task
    assert sum(t.n for t in by_task) == 200
    assert {"Object Reasoning", "Action Reasoning", "OCR Problems"} <= {t.task for t in by_task}
    assert next(t for t in by_task if t.task == "Object Reasoning").n == 29
    mixed = load_benchmark(
        str(real_mcq / "dataflow_mm_video_cot_qa_sample_data.json"), tmp_path, check_media=False
    )
    assert [i.record.problem_type for i in mixed.items] == [
        "multiple choice", "free-form", "numerical", "OCR", "regression"
    ]  # fmt: skip
    assert mixed.skipped == {}
    limited = stratified_subset(
        load_benchmark(
            str(real_mcq / "video_r1_eval_mvbench_sample200.json"), tmp_path, check_media=False
        ).items,
        limit=5,
    )
    assert len(limited) == 5
    # NAME%N keeps N % of each task of the file
    mvbench = str(real_mcq / "video_r1_eval_mvbench_sample200.json")
    assert len(load_benchmark(f"{mvbench}%10", tmp_path, check_media=False).items) == 20


def test_missing_videos_name_the_record_and_the_video_root(tmp_path: Path) -> None:
    row = {"problem_id": 7, "problem": "Which way?", "options": ["A. left", "B. right"],
           "solution": "<answer>A</answer>", "path": "./Evaluation/MVBench/star/7.mp4", "data_type": "video",
           "problem_type": "multiple choice"}  # fmt: skip
    path = tmp_path / "eval_one.json"
    path.write_text(json.dumps([row]), encoding="utf-8")
    with pytest.raises(DataError, match=r"1 unusable, first: .*eval_one.json index 0 \(7\).*--video-root"):
        load_benchmark(str(path), tmp_path, video_root=tmp_path)


def test_mean_interval_by_hand() -> None:
    # 0.4, 0.6: mean 0.5, s = sqrt(0.02 / 1) = 0.14142136, half = z * s / sqrt(2) = z * 0.1
    assert mean_interval([0.4, 0.6]) == pytest.approx((0.5 - Z * 0.1, 0.5 + Z * 0.1), abs=1e-12)
    # cut to the metric's range
    assert mean_interval([0.0, 1.0], high=1.0) == (0.0, 1.0)
    assert mean_interval([0.7]) is None and mean_interval([]) is None


def _mixed_items() -> tuple[list[BenchmarkItem], list[str]]:
    items = [_item("m1", "T1", "A"), _item("m2", "T1", "B")]
    items += [_open_item("n1", "T1", "numerical", "4"), _open_item("n2", "T1", "numerical", "2.5")]
    items += [_open_item("r1", "T1", "regression", "10"), _open_item("r2", "T1", "regression", "10")]
    items += [_open_item(f"o{i}", "T2", "OCR", ref) for i, ref in enumerate(["a b c", "STOP", "EXIT"])]
    items += [_open_item("f1", "T2", "free-form", "the cat sat")]
    items += [_open_item("f2", "T2", "free-form", "a man opens the door")]
    completions = [_says("A"), _says("A"), _answers("4"), _answers("3")]
    completions += [_answers("9"), _answers("5")]
    completions += [_answers("a x c"), _answers("STOP"), "<think>looked</think> <answer>EXIT"]
    completions += [_answers("the cat ran"), "<answer>a man opens the door</answer>"]
    return items, completions


def test_every_problem_type_is_scored_under_its_metric() -> None:
    items, completions = _mixed_items()
    rows = {r.id: r for r in (score_item(i, c) for i, c in zip(items, completions, strict=True))}
    # multiple choice exactly as before: the letter, no value change
    assert (rows["m1"].parsed, rows["m1"].is_correct, rows["m1"].value) == ("A", True, 1.0)
    assert (rows["m2"].parsed, rows["m2"].is_correct, rows["m2"].problem_type) == (
        "A",
        False,
        "multiple choice",
    )
    # numerical: "3" against "2.5" has no decimal mark -> 0
    assert (rows["n1"].parsed, rows["n1"].value, rows["n1"].is_correct) == ("4", 1.0, True)
    assert (rows["n2"].value, rows["n2"].is_correct) == (0.0, False)
    # regression under MRA: 9 vs 10 -> 0.8, 5 vs 10 -> 0
    assert (rows["r1"].value, rows["r2"].value) == (0.8, 0.0)
    # OCR: the WER itself; an answer block never closed reads nothing -> WER 1
    assert rows["o0"].value == pytest.approx(1 / 3, abs=1e-12)
    assert (rows["o1"].value, rows["o1"].is_correct) == (0.0, True)
    assert (rows["o2"].parsed, rows["o2"].value, rows["o2"].format_ok) == (None, 1.0, False)
    # free-form: mean ROUGE-1/2/L F (11/18 worked out in tests/score/test_answer_types.py)
    assert rows["f1"].value == pytest.approx(11 / 18, abs=1e-12)
    assert (rows["f2"].value, rows["f2"].format_ok) == (1.0, False)  # no <think> in think mode
    # A type with no metric (the loaders refuse one; a stand-in record gets past them).
    unknown = BenchmarkItem(record=SimpleNamespace(id="m1", problem_type="spot"), task="T1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="record m1: problem_type 'spot' has no eval metric"):
        score_item(unknown, _says("A"))


def test_report_per_type_and_per_task() -> None:
    items, completions = _mixed_items()
    report = summarize(score_items(items, completions), skipped={"spot": 2})
    # headline: accuracy over multiple choice + numerical (m1, n1 right of 4)
    assert (report.overall.n, report.overall.accuracy) == (4, 0.5)
    assert (report.overall.ci_low, report.overall.ci_high) == pytest.approx(wilson_interval(2, 4))
    assert report.overall.answer_distribution == {"A": 2}  # option letters only
    assert [t.task for t in report.per_task] == ["T1"]  # T2 has no accuracy item
    summary = report.summary()
    per_type = {s["type"]: s for s in summary["per_type"]}
    assert [s["type"] for s in summary["per_type"]] == [
        "multiple choice",
        "numerical",
        "OCR",
        "free-form",
        "regression",
    ]
    assert per_type["multiple choice"] == {
        "type": "multiple choice",
        "n": 2,
        "metric": "accuracy",
        "value": 0.5,
        "interval": pytest.approx(list(wilson_interval(1, 2))),
    }
    assert (per_type["numerical"]["metric"], per_type["numerical"]["value"]) == ("accuracy", 0.5)
    # OCR WERs 1/3, 0, 1: mean 4/9, s^2 = ((1/3 - 4/9)^2 + (4/9)^2 + (5/9)^2) / 2 = 42/162
    ocr = per_type["OCR"]
    assert (ocr["n"], ocr["metric"]) == (3, "wer")
    assert ocr["value"] == pytest.approx(4 / 9, abs=1e-12)
    half = Z * math.sqrt(42 / 162) / math.sqrt(3)
    assert ocr["interval"] == pytest.approx([0.0, 4 / 9 + half], abs=1e-12)  # cut at 0, WER may pass 1
    # free-form 11/18 and 1: mean 29/36, s = (7/18)/sqrt(2), half = z * 7/36, cut at 1
    rouge = per_type["free-form"]
    assert (rouge["metric"], rouge["value"]) == ("rouge", pytest.approx(29 / 36, abs=1e-12))
    assert rouge["interval"] == pytest.approx([(29 - 7 * Z) / 36, 1.0], abs=1e-12)
    # regression MRA 0.8 and 0: mean 0.4, half = z * 0.4 -> cut to [0, 1]
    assert per_type["regression"] == {
        "type": "regression",
        "n": 2,
        "metric": "mra",
        "value": pytest.approx(0.4),
        "interval": [0.0, 1.0],
    }
    by_task = [(s["task"], s["type"], s["n"]) for s in summary["per_task_type"]]
    assert by_task == [
        ("T1", "multiple choice", 2),
        ("T1", "numerical", 2),
        ("T1", "regression", 2),
        ("T2", "OCR", 3),
        ("T2", "free-form", 2),
    ]
    assert summary["skipped"] == {"spot": 2}
    json.dumps(summary)  # plain JSON types only
    # the stored rows give the same table back (what the studio reads)
    assert [s.to_dict() for s in stored_type_stats([r.to_dict() for r in report.rows])] == summary["per_type"]


def test_type_stats_of_rows_stored_before_types() -> None:
    # Rows written before problem types existed: multiple choice, 0/1 from is_correct.
    old = [{"id": "a", "correct": "A", "chosen": "A", "is_correct": True}, {"id": "b", "is_correct": False}]
    [stats] = stored_type_stats(old)
    assert (stats.type, stats.n, stats.metric, stats.value) == ("multiple choice", 2, "accuracy", 0.5)
    assert stats.interval == pytest.approx(wilson_interval(1, 2))
    assert type_stats([]) == []
    with pytest.raises(ValueError, match="'spot' has no eval metric"):
        type_stats([("spot", 1.0)])


def test_fingerprint_keeps_multiple_choice_and_tells_types_apart() -> None:
    ocr, free = _open_item("q", "t", "OCR", "STOP"), _open_item("q", "t", "free-form", "STOP")
    assert fingerprint([ocr]) != fingerprint([free])

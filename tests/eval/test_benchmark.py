"""trainer.eval.benchmark: Wilson intervals against hand numbers, per-task breakdown, skipped problem
types, stratified subsets, and the real Video-R1 eval records of ../shared/realdata."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from trainer.core.errors import DataError
from trainer.data.records import MCQRecord
from trainer.eval.benchmark import (
    NO_ANSWER,
    BenchmarkItem,
    fingerprint,
    score_items,
    stratified_subset,
    summarize,
    task_of,
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


def test_mixed_problem_types_are_skipped_by_type(tmp_path: Path) -> None:
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
    ]
    path = tmp_path / "eval_mixed.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    bench = load_benchmark(str(path), tmp_path, check_media=False)
    assert [(i.record.id, i.task) for i in bench.items] == [("1", "MVBench")]
    assert bench.skipped == {"numerical": 1, "ocr": 1, "regression": 2}
    assert bench.invalid == 1  # record 6: answer Q is not an option


REAL_EVAL = {
    # file -> (scored, skipped by type, tasks)
    "video_r1_eval_mvbench_sample200.json": (200, {}, {"MVBench"}),
    "video_r1_eval_vsibench_sample200.json": (92, {"regression": 108}, {"VSIBench"}),
    "video_r1_eval_videommmu_sample200.json": (196, {"numerical": 4}, {"VideoMMMU"}),
    "video_r1_eval_mmvu_sample200.json": (200, {}, {"MMVU"}),
}


@pytest.mark.realdata
@pytest.mark.parametrize("name", sorted(REAL_EVAL))
def test_real_video_r1_eval_files(real_mcq: Path, name: str, tmp_path: Path) -> None:
    scored, skipped, tasks = REAL_EVAL[name]
    bench = load_benchmark(str(real_mcq / name), tmp_path, video_root=tmp_path, check_media=False)
    assert len(bench.items) == scored
    assert bench.skipped == skipped
    assert {i.task for i in bench.items} == tasks
    assert bench.invalid == 0
    # scoring the reference answers gives 100%; always "A" gives exactly the share of A answers
    right = [f"<think>ref</think> <answer>({i.record.answer})</answer>" for i in bench.items]
    assert summarize(score_items(bench.items, right)).overall.accuracy == 1.0
    always_a = summarize(score_items(bench.items, [_says("A")] * len(bench.items)), bench.skipped)
    share_a = sum(i.record.answer == "A" for i in bench.items) / len(bench.items)
    assert always_a.overall.accuracy == pytest.approx(share_a)
    assert always_a.overall.answer_distribution == {"A": len(bench.items)}
    assert always_a.summary()["skipped"] == skipped


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
    assert len(mixed.items) == 1
    assert mixed.skipped == {"free-form": 1, "numerical": 1, "ocr": 1, "regression": 1}
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

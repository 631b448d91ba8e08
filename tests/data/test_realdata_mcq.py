"""Every real annotation file in ../shared/realdata/mcq loads: questions of every Video-R1 problem
type as records, the rest (open-ended chat turns with no type) as per-record errors; the records whose
videos we have load with them."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path

import pytest

from trainer.data.validate import validate_file

pytestmark = pytest.mark.realdata

# file -> (total, valid, {reason: count}) with schema_only (the benchmark videos are not here).
EXPECTED = {
    "dataflow_mm_video_cot_qa_sample_data.json": (5, 5, {}),
    "llamafactory_mllm_video_demo.json": (3, 0, {"no options (open-ended question, not multiple choice)": 3}),
    "nextqa_val_head200.csv": (200, 200, {}),
    "qwen_vl_finetune_demo_single_images.json": (
        3,
        0,
        {"no options (open-ended question, not multiple choice)": 3},
    ),
    "qwen_vl_finetune_demo_video.json": (3, 0, {"no options (open-ended question, not multiple choice)": 3}),
    "video_r1_260k_head_example.json": (3, 3, {}),
    "video_r1_eval_mmvu_sample200.json": (200, 200, {}),
    "video_r1_eval_mvbench_sample200.json": (200, 200, {}),
    "video_r1_eval_videomme_sample200.json": (200, 200, {}),
    "video_r1_eval_videommmu_sample200.json": (200, 200, {}),
    "video_r1_eval_vsibench_sample200.json": (200, 200, {}),
    "video_toc_grpo_sample200.json": (200, 200, {}),
    "video_toc_sft_llava_video_sample200.json": (200, 200, {}),
}


def test_every_real_file_is_covered(real_mcq: Path) -> None:
    assert sorted(p.name for p in real_mcq.iterdir()) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_file_schema_only(real_mcq: Path, name: str) -> None:
    total, valid, reasons = EXPECTED[name]
    report = validate_file(real_mcq / name, schema_only=True)
    assert (report.total, report.valid, report.invalid) == (total, valid, total - valid)
    assert dict(Counter(e.reason for e in report.errors)) == reasons
    # Each error names its own record: distinct positions, all in this file.
    assert len({e.index for e in report.errors}) == report.invalid
    assert all(e.source == str(real_mcq / name) for e in report.errors)
    for r in report.records:
        if r.is_multiple_choice:
            assert r.answer in r.options and len(r.options) >= 2
        else:
            assert r.options == {} and r.answer.strip()
        assert "<video>" not in r.question and "<image>" not in r.question
    assert report.problem_types == PROBLEM_TYPES.get(name, {"multiple choice": valid})


# The files that mix problem types, and how many of each they hold.
PROBLEM_TYPES = {
    "dataflow_mm_video_cot_qa_sample_data.json": {
        "multiple choice": 1, "free-form": 1, "numerical": 1, "OCR": 1, "regression": 1
    },
    "video_r1_260k_head_example.json": {"multiple choice": 2, "free-form": 1},
    "video_r1_eval_videommmu_sample200.json": {"multiple choice": 196, "numerical": 4},
    "video_r1_eval_vsibench_sample200.json": {"regression": 108, "multiple choice": 92},
    "llamafactory_mllm_video_demo.json": {},
    "qwen_vl_finetune_demo_single_images.json": {},
    "qwen_vl_finetune_demo_video.json": {},
}  # fmt: skip


def test_real_record_details(real_mcq: Path) -> None:
    vsi = validate_file(real_mcq / "video_r1_eval_vsibench_sample200.json", schema_only=True)
    first = vsi.records[0]
    assert (first.id, first.problem_type, first.answer, first.options) == ("0", "regression", "4", {})
    assert first.question == "How many table(s) are in this room?"
    # Option counts are of the multiple-choice records only.
    assert vsi.option_counts == {2: 8, 3: 18, 4: 66}
    mmmu = validate_file(real_mcq / "video_r1_eval_videommmu_sample200.json", schema_only=True)
    assert mmmu.records[0].options["J"] == "sucrose"
    grpo = validate_file(real_mcq / "video_toc_grpo_sample200.json", schema_only=True)
    assert grpo.records[0].question == "Which athlete wore a maroon and white uniform?"
    assert grpo.records[0].answer == "C"
    assert Counter(r.answer for r in grpo.records) == {"A": 62, "B": 54, "C": 33, "D": 51}
    sft = validate_file(real_mcq / "video_toc_sft_llava_video_sample200.json", schema_only=True)
    assert sft.records[0].options["B"] == "The shortest woman living (mobile)"
    assert sft.records[0].answer == "B"
    nextqa = validate_file(real_mcq / "nextqa_val_head200.csv", schema_only=True)
    assert (nextqa.records[0].id, nextqa.records[0].answer, nextqa.records[0].index) == (
        "4010069381_6",
        "A",
        2,
    )
    mvbench = validate_file(real_mcq / "video_r1_eval_mvbench_sample200.json", schema_only=True)
    assert mvbench.records[0].video == str(real_mcq / "Evaluation/MVBench/ssv2_video/166583.mp4")
    assert mvbench.records[0].answer == "C"


def _place(root: Path, rel: str, src: Path) -> None:
    # Copies, not symlinks: a link pointing outside the video root is refused on purpose.
    dest = root / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)


def test_dataflow_records_load_with_their_videos(real_mcq: Path, real_videos: Path, tmp_path: Path) -> None:
    base = "DataFlow-MM/dataflow/example/video_cot_qa"
    _place(tmp_path, f"{base}/ytb_7nRmsEw7nsE.mp4", real_videos / "ytb_7nRmsEw7nsE.mp4")
    _place(tmp_path, f"{base}/video_05282.mp4", real_videos / "clevrer_video_05282.mp4")
    report = validate_file(real_mcq / "dataflow_mm_video_cot_qa_sample_data.json", video_root=tmp_path)
    mcq, numerical = report.records
    assert (mcq.index, mcq.answer, mcq.video) == (0, "A", str(tmp_path / base / "ytb_7nRmsEw7nsE.mp4"))
    assert (numerical.index, numerical.problem_type, numerical.answer) == (2, "numerical", "1")
    assert numerical.video == str(tmp_path / base / "video_05282.mp4")
    assert report.durations is not None and report.durations.count == 2
    # The other three records' media are not in realdata: each a media error naming its file.
    errors = {e.index: e.reason for e in report.errors}
    assert sorted(errors) == [1, 3, 4]
    assert errors[1].startswith("video not found") and errors[3].startswith("image not found")


def test_video_r1_head_record_loads_with_its_video(real_mcq: Path, real_videos: Path, tmp_path: Path) -> None:
    rel = "LLaVA-Video-178K/liwei_youtube_videos/videos/youtube_video_2024/ytb_7nRmsEw7nsE.mp4"
    _place(tmp_path, rel, real_videos / "ytb_7nRmsEw7nsE.mp4")
    report = validate_file(real_mcq / "video_r1_260k_head_example.json", video_root=tmp_path)
    (rec,) = report.records
    assert (rec.id, rec.index, rec.answer, rec.video) == ("2", 1, "A", str(tmp_path / rel))
    assert [(e.index, e.record_id, e.reason) for e in report.errors] == [
        (0, "1", f"image not found: {tmp_path / 'Knowledge/ArxivQA/images/1702.04756_0.jpg'}"),
        (2, "6", f"image not found: {tmp_path / 'Spatial/Spacellava/image_11755.png'}"),
    ]


def test_symlinks_out_of_the_video_root_are_refused(
    real_mcq: Path, real_videos: Path, tmp_path: Path
) -> None:
    rel = "LLaVA-Video-178K/liwei_youtube_videos/videos/youtube_video_2024/ytb_7nRmsEw7nsE.mp4"
    (tmp_path / rel).parent.mkdir(parents=True)
    os.symlink(real_videos / "ytb_7nRmsEw7nsE.mp4", tmp_path / rel)
    report = validate_file(real_mcq / "video_r1_260k_head_example.json", video_root=tmp_path)
    assert report.valid == 0
    assert report.errors[1].reason == f"path './{rel}' escapes the video root {tmp_path}"

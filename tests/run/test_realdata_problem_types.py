"""The real mixed-type Video-R1 records (DataFlow-MM's sample: multiple choice, free-form, numerical,
OCR and regression, one each) register, train 3 steps of the tiny model in one mixed dataset, and
evaluate per problem type.

Only two of their media files are in ../shared/realdata; the others are stood in for by the real
videos we have (and a frame of one for the two image records), placed where the records point. The
records' own questions, types and answers are what is tested."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from trainer.cli import main
from trainer.core.paths import REPO_ROOT
from trainer.rundb import RunStore

pytestmark = pytest.mark.realdata

FILE = "dataflow_mm_video_cot_qa_sample_data.json"
BASE = "DataFlow-MM/dataflow/example/video_cot_qa"
# media path in the record -> the real video that plays it here
VIDEOS = {
    "ytb_7nRmsEw7nsE.mp4": "ytb_7nRmsEw7nsE.mp4",  # its own video
    "video_05282.mp4": "clevrer_video_05282.mp4",  # its own video (CLEVRER)
    "split_8.mp4": "llamafactory_3.mp4",  # stand-in: the cooking clip is not in realdata
}
IMAGES = ("identity_71274.png", "image_21088.png")  # stand-ins: a frame of a real video


def _frame_png(video: Path, dest: Path) -> None:
    import av

    with av.open(str(video)) as container:
        frame = next(container.decode(video=0))
    frame.to_image().resize((112, 112)).save(dest)


@pytest.fixture
def mixed_dataset(real_mcq: Path, real_videos: Path, tmp_path: Path) -> Path:
    root = tmp_path / "media"
    folder = root / BASE
    folder.mkdir(parents=True)
    for name, real in VIDEOS.items():
        shutil.copyfile(real_videos / real, folder / name)
    for name in IMAGES:
        _frame_png(real_videos / "clevrer_video_05282.mp4", folder / name)
    annotation = root / FILE
    shutil.copyfile(real_mcq / FILE, annotation)
    return annotation


@pytest.mark.slow
def test_mixed_type_records_train_three_steps_and_evaluate_per_type(
    mixed_dataset: Path, tmp_path: Path, capsys
) -> None:
    ws = tmp_path / "ws"
    root = ["--video-root", str(mixed_dataset.parent), "--workspace", str(ws)]
    assert main(["data", "register", "dataflow_mixed", str(mixed_dataset), *root]) == 0
    out = capsys.readouterr().out
    assert "5 records, 5 valid" in out, out
    assert "problem types: multiple choice 1, free-form 1, numerical 1, OCR 1, regression 1" in out

    argv = ["train", "--config", str(REPO_ROOT / "configs" / "tiny_cpu_think.yaml"), "--workspace", str(ws),
            "--dataset_use", "dataflow_mixed", "--eval_dataset_use", "", "--per_device_train_batch_size", "5",
            "--max_steps", "3", "--save_steps", "3", "--dynamic_sampling", "false",
            "--grpo_logging_steps", "1", "--num_processes", "1",
            "--output_dir", str(tmp_path / "out")]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err[-3000:]
    store = RunStore(f"sqlite:///{ws / 'runs.db'}")
    [run] = store.list_runs()
    assert run.status == "finished"
    assert store.metrics_since(run.id)["grpo/total_reward"].steps == (1, 2, 3)
    # Each step sampled every type: the rollouts name the type and its reference answer.
    rollouts = store.rollouts(run.id, step=3)
    by_type = {(r.problem_type or "multiple choice"): r for r in rollouts}
    assert sorted(by_type) == ["OCR", "free-form", "multiple choice", "numerical", "regression"]
    assert (by_type["numerical"].reference, by_type["numerical"].correct_letter) == ("1", None)
    assert by_type["multiple choice"].correct_letter == "A"
    assert by_type["regression"].reference == "9.62"
    assert all(0.0 <= r.rewards["accuracy"] <= 1.0 for r in rollouts)
    capsys.readouterr()

    checkpoint = tmp_path / "out" / "checkpoint-3"
    report = tmp_path / "eval.json"
    code = main(["eval", "--checkpoint", str(checkpoint), "--dataset_use", "dataflow_mixed",
                 "--workspace", str(ws), "--device", "cpu", "--json", str(report)])  # fmt: skip
    assert code == 0, capsys.readouterr().err[-3000:]
    summary = json.loads(report.read_text())
    per_type = {t["type"]: t for t in summary["per_type"]}
    assert {name: (t["n"], t["metric"]) for name, t in per_type.items()} == {
        "multiple choice": (1, "accuracy"),
        "numerical": (1, "accuracy"),
        "OCR": (1, "wer"),
        "free-form": (1, "rouge"),
        "regression": (1, "mra"),
    }
    assert all(0.0 <= t["value"] <= 1.0 for t in per_type.values() if t["metric"] != "wer")
    assert per_type["OCR"]["value"] >= 0.0
    assert summary["skipped"] == {}

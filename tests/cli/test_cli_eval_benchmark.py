"""`vgrpo eval` on a benchmark: --json - (one object, per task, per type, skipped by type), --video-root,
base vs checkpoints of a run in one call, stored once and reused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from trainer.cli import main
from trainer.rundb import RunStore


@pytest.fixture()
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'runs.db'}"


def _video_r1_file(tmp_path: Path, synthetic_dir: Path) -> tuple[Path, Path]:
    """A Video-R1 eval file (two multiple-choice tasks, a regression record, a record of a type with
    no metric) whose videos sit under a separate root."""
    root = tmp_path / "bench_root"
    rows = []
    for i, (task, answer) in enumerate(
        [("MVBench", "A"), ("MVBench", "D"), ("VideoMME", "B"), ("VideoMME", "C")]
    ):
        rel = f"Evaluation/{task}/clip{i}.mp4"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(synthetic_dir / "videos" / f"m_200{i + 1}.mp4", root / rel)
        rows.append(
            {
                "problem_id": i,
                "problem": "Which way does the square move?",
                "options": ["A. left", "B. right", "C. up", "D. down"],
                "solution": f"<answer>{answer}</answer>",
                "path": f"./{rel}",
                "data_type": "video",
                "problem_type": "multiple choice",
            }
        )
    (root / "Evaluation/VSIBench").mkdir(parents=True)
    shutil.copy(synthetic_dir / "videos" / "m_2001.mp4", root / "Evaluation/VSIBench/x.mp4")
    for problem_id, kind, answer in ((9, "regression", "1.5"), (10, "spot the difference", "left")):
        rows.append(
            {
                "problem_id": problem_id,
                "problem": "How far does it move?",
                "options": None,
                "solution": f"<answer>{answer}</answer>",
                "path": "./Evaluation/VSIBench/x.mp4",
                "data_type": "video",
                "problem_type": kind,
            }
        )
    path = tmp_path / "annotations" / "eval_bench.json"
    path.parent.mkdir()
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path, root


def test_json_to_stdout_per_task_and_skipped(tiny_model_dir, synthetic_dir, tmp_path, capsys):
    path, root = _video_r1_file(tmp_path, synthetic_dir)
    argv = [
        "eval",
        "--checkpoint",
        str(tiny_model_dir),
        "--dataset_use",
        str(path),
        "--video-root",
        str(root),
    ]
    argv += ["--limit", "1", "--json", "-", "--max_new_tokens", "16", "--workspace", str(tmp_path)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)  # stdout holds the JSON object and nothing else
    assert set(doc) >= {"overall", "per_task", "per_type", "answer_distribution", "skipped"}
    assert set(doc["overall"]) >= {"n", "accuracy", "ci_low", "ci_high", "format_rate"}
    assert doc["overall"]["n"] == 2  # --limit 1: one record per task; accuracy over multiple choice
    # VSIBench holds only a regression record: in per_type, not in the accuracy table
    assert [(t["task"], t["n"]) for t in doc["per_task"]] == [("MVBench", 1), ("VideoMME", 1)]
    assert [(t["type"], t["n"], t["metric"]) for t in doc["per_type"]] == [
        ("multiple choice", 2, "accuracy"),
        ("regression", 1, "mra"),
    ]
    assert doc["per_type"][1]["interval"] is None  # one item: no interval of a mean
    assert doc["per_type"][0]["value"] == doc["overall"]["accuracy"]
    assert [(t["task"], t["type"]) for t in doc["per_task_type"]] == [
        ("MVBench", "multiple choice"),
        ("VSIBench", "regression"),
        ("VideoMME", "multiple choice"),
    ]
    assert doc["skipped"] == {"spot the difference": 1}
    assert sum(doc["answer_distribution"].values()) == 2
    assert doc["overall"]["ci_low"] <= doc["overall"]["accuracy"] <= doc["overall"]["ci_high"]
    assert {r["video"] for r in doc["records"]} <= {
        str((root / f"Evaluation/{t}").resolve()) + f"/clip{i}.mp4"
        for i, t in enumerate(["MVBench"] * 2 + ["VideoMME"] * 2)
    } | {str((root / "Evaluation/VSIBench").resolve()) + "/x.mp4"}
    assert "per type: multiple choice accuracy" in captured.err
    assert "skipped (no metric for the type): spot the difference 1" in captured.err


def test_base_and_checkpoints_stored_once_then_reused(tiny_model_dir, tmp_path, db, capsys, monkeypatch):
    out = tmp_path / "out"
    for step in (2, 4):
        shutil.copytree(tiny_model_dir, out / f"checkpoint-{step}")
    with RunStore(db) as store:
        run = store.create_run("grpo-a", config={"model": {"model_name_or_path": str(tiny_model_dir)}})
        for step in (2, 4):
            store.add_checkpoint(run.id, step, str(out / f"checkpoint-{step}"), {})
    argv = ["eval", "--run", "grpo-a", "--checkpoints", "all", "--base", "--db", db, "--max_records", "2"]
    argv += ["--dataset_use", "synthetic_motion_eval", "--json", "-", "--max_new_tokens", "8"]
    argv += ["--workspace", str(tmp_path)]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    steps = [(Path(m["checkpoint"]).name, m["step"], m["reused"]) for m in first["models"]]
    assert steps == [("tiny-qwen2.5-vl", 0, False), ("checkpoint-2", 2, False), ("checkpoint-4", 4, False)]
    with RunStore(db) as store:
        stored = store.evaluations(run.id)
        (base_run,) = store.list_runs(kind="model")
        assert base_run.name == "eval-tiny-qwen2.5-vl"
        base_evals = store.evaluations(base_run.id)
        (job,) = store.jobs(run_id=run.id)
    # The base model is filed under a run of its own, never as a checkpoint of the trained run.
    assert [e.checkpoint_id for e in stored] == [m["checkpoint_id"] for m in first["models"][1:]]
    assert len(base_evals) == 1
    assert len({e.dataset_fingerprint for e in [*stored, *base_evals]}) == 1
    assert all(e.settings["temperature"] == 0.0 for e in stored)
    assert (job.status, job.progress_done, job.progress_total) == ("finished", 6, 6)
    assert job.result["evaluation_ids"] == [m["evaluation_id"] for m in first["models"]]

    # Same checkpoints, records and decoding: nothing is generated again.
    def no_generation(*args, **kwargs):
        raise AssertionError("a stored evaluation should have been reused")

    monkeypatch.setattr("trainer.eval.answering.answer_records", no_generation)
    assert main(argv) == 0
    again = json.loads(capsys.readouterr().out)
    assert [m["reused"] for m in again["models"]] == [True, True, True]
    assert [m["evaluation_id"] for m in again["models"]] == [m["evaluation_id"] for m in first["models"]]
    assert [m["overall"] for m in again["models"]] == [m["overall"] for m in first["models"]]
    assert [m["records"] for m in again["models"]] == [m["records"] for m in first["models"]]
    with RunStore(db) as store:
        assert len(store.evaluations(run.id)) == 2
    # Different decoding is a different evaluation.
    monkeypatch.undo()
    argv = [{"all": "latest", "8": "4"}.get(a, a) for a in argv]
    assert main(argv) == 0
    latest = json.loads(capsys.readouterr().out)
    assert [(m["step"], m["reused"]) for m in latest["models"]] == [(0, False), (4, False)]


def test_checkpoints_need_a_run(tiny_model_dir, tmp_path, capsys):
    argv = [
        "eval",
        "--checkpoints",
        "all",
        "--dataset_use",
        "synthetic_motion_eval",
        "--workspace",
        str(tmp_path),
    ]
    assert main(argv) == 1
    assert "--base and --checkpoints need --run RUN" in capsys.readouterr().err


@pytest.mark.slow
def test_two_processes_base_and_checkpoint_then_reuse(tiny_model_dir, tmp_path, db):
    """Under `accelerate launch` the main process plans (reads the run, finds stored evaluations)
    and the other follows: one report, stored once, and a second launch reuses everything."""
    import os
    import subprocess

    from trainer.core.paths import REPO_ROOT
    from trainer.run.launch import accelerate_cpu_command

    shutil.copytree(tiny_model_dir, tmp_path / "out" / "checkpoint-2")
    with RunStore(db) as store:
        run = store.create_run("grpo-d", config={"model": {"model_name_or_path": str(tiny_model_dir)}})
        store.add_checkpoint(run.id, 2, str(tmp_path / "out" / "checkpoint-2"), {})
    argv = ["-m", "trainer.cli", "eval", "--run", "grpo-d", "--checkpoints", "all", "--base", "--db", db]
    argv += ["--dataset_use", "synthetic_motion_eval", "--max_records", "5", "--batch_size", "2"]
    argv += ["--max_new_tokens", "8", "--workspace", str(tmp_path), "--json", "-"]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    docs = []
    for _ in range(2):
        proc = subprocess.run(
            accelerate_cpu_command(2, argv),
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
            cwd=REPO_ROOT,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        docs.append(json.loads(proc.stdout))  # one process printed one object
    assert [m["reused"] for m in docs[0]["models"]] == [False, False]
    assert [m["reused"] for m in docs[1]["models"]] == [True, True]
    assert [m["records"] for m in docs[1]["models"]] == [m["records"] for m in docs[0]["models"]]
    assert all(m["num_records"] == 5 for m in docs[0]["models"])
    with RunStore(db) as store:
        assert len(store.evaluations(run.id)) == 1


def test_video_r1_preset_and_greedy_settings(tmp_path):
    import argparse

    from trainer.cli.eval_models import eval_key, settings_for

    def args(preset: str, **flags) -> argparse.Namespace:
        base = {"preset": preset, "fps": None, "max_frames": None, "max_pixels": None, "max_new_tokens": None}
        return argparse.Namespace(**{**base, **flags})

    (tmp_path / "train_config.yaml").write_text(
        "video:\n  max_frames: 8\ngrpo:\n  generation_max_length: 64\n"
    )
    video, greedy = settings_for(args("greedy"), str(tmp_path))
    assert (greedy["temperature"], greedy["max_new_tokens"], video.max_frames) == (0.0, 64, 8)
    video, r1 = settings_for(args("video_r1"), str(tmp_path))
    assert (r1["temperature"], r1["top_p"], r1["max_new_tokens"]) == (0.1, 0.001, 1024)
    assert (video.max_frames, video.max_pixels) == (32, 256 * 28 * 28)
    # A flag beats the preset; different settings are a different evaluation.
    video, flagged = settings_for(args("video_r1", max_frames=16), str(tmp_path))
    assert video.max_frames == 16
    assert len({eval_key("fp", s) for s in (greedy, r1, flagged)}) == 3
    assert eval_key("fp", greedy) == eval_key("fp", dict(greedy))

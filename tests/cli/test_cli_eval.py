"""`vgrpo eval`: greedy evaluation of a checkpoint, stored in the run DB and written as JSON."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
from pathlib import Path

import pytest

from trainer.cli import main
from trainer.core.errors import ConfigError, RunDBError
from trainer.eval.answering import video_config_for
from trainer.eval.checkpoints import (
    TrainedOn,
    check_checkpoint,
    check_trained_mode,
    checkpoint_row_for,
    checkpoint_step,
    trained_on,
    trained_settings,
)
from trainer.rundb import RunStore


@pytest.fixture()
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'runs.db'}"


def test_eval_tiny_model_stores_evaluation_and_json(tiny_model_dir, synthetic_dir, tmp_path, db, capsys):
    out = tmp_path / "eval.json"
    argv = ["eval", "--checkpoint", str(tiny_model_dir), "--dataset_use", "synthetic_motion_eval"]
    argv += ["--max_records", "8", "--batch_size", "4", "--db", db, "--workspace", str(tmp_path)]
    argv += ["--json", str(out), "--max_new_tokens", "32"]
    assert main(argv) == 0

    with RunStore(db) as store:
        assert store.list_runs() == []  # no training run: the model is registered apart
        (run,) = store.list_runs(kind="model")
        (ckpt,) = store.checkpoints(run.id)
        (evaluation,) = store.evaluations(run.id)
        events = [e.kind for e in store.events(run.id)]
        (job,) = store.jobs(run_id=run.id)
    # Every stored evaluation is a job with its owner, progress and result.
    assert (job.kind, job.status, job.pid, job.progress_done, job.progress_total) == (
        "evaluate",
        "finished",
        os.getpid(),
        8,
        8,
    )
    assert dict(job.result or {}) == {
        "evaluation_id": evaluation.id,
        "checkpoint_id": ckpt.id,
        "run_id": run.id,
        "accuracy": evaluation.accuracy,
        "format_rate": evaluation.format_rate,
        "evaluation_ids": [evaluation.id],
    }
    # A base model outside any run gets a run of its own, named after its folder, already ended.
    assert run.name == "eval-tiny-qwen2.5-vl"
    assert (run.status, run.kind) == ("finished", "model")
    assert (ckpt.step, ckpt.path) == (0, str(tiny_model_dir.resolve()))
    assert evaluation.checkpoint_id == ckpt.id
    assert evaluation.dataset == "synthetic_motion_eval"
    assert len(evaluation.results) == 8
    correct = [r["is_correct"] for r in evaluation.results]
    assert evaluation.accuracy == pytest.approx(sum(correct) / 8, abs=1e-12)
    assert evaluation.format_rate == pytest.approx(sum(r["format_ok"] for r in evaluation.results) / 8)
    assert [r["id"] for r in evaluation.results] == [f"m_{2001 + i}" for i in range(8)]
    assert "evaluation" in events

    doc = json.loads(out.read_text())
    assert doc["overall"]["accuracy"] == evaluation.accuracy
    assert doc["overall"]["format_rate"] == evaluation.format_rate
    assert doc["overall"]["n"] == 8
    assert (doc["evaluation_id"], doc["run_id"], doc["reused"]) == (evaluation.id, run.id, False)
    assert [t["task"] for t in doc["per_task"]] == ["synthetic_motion_eval"]
    assert doc["skipped"] == {}
    assert dict(evaluation.summary) == {k: doc[k] for k in evaluation.summary}
    assert [r["completion"] for r in doc["records"]] == [r["completion"] for r in evaluation.results]
    # The answer distribution counts every record once.
    assert sum(doc["answer_distribution"].values()) == 8
    assert f"accuracy {evaluation.accuracy:.4f}" in capsys.readouterr().out


def test_missing_checkpoint_is_one_line_error(tmp_path, capsys):
    missing = tmp_path / "runs" / "checkpoint-5"
    rc = main(["eval", "--checkpoint", str(missing), "--dataset_use", "synthetic_motion_eval"])
    assert rc == 1
    err = capsys.readouterr().err.strip()
    assert err == f"vgrpo: error: checkpoint not found: {missing}"


def test_unknown_dataset_is_one_line_error(tiny_model_dir, tmp_path, capsys):
    argv = ["eval", "--checkpoint", str(tiny_model_dir), "--dataset_use", "no_such_set"]
    assert main([*argv, "--workspace", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("vgrpo: error: unknown dataset 'no_such_set'")


def test_folder_without_config_is_not_a_checkpoint(tmp_path):
    with pytest.raises(ConfigError, match="not a model folder"):
        check_checkpoint(str(tmp_path))
    assert check_checkpoint("Qwen/Qwen2.5-VL-3B-Instruct") == "Qwen/Qwen2.5-VL-3B-Instruct"


def test_checkpoint_step_from_folder_name():
    assert checkpoint_step("/out/run/checkpoint-40") == 40
    assert checkpoint_step("/out/run/checkpoint-40/") == 40
    assert checkpoint_step("/models/tiny-qwen2.5-vl") == 0


def test_checkpoint_row_found_registered_or_given_own_run(tmp_path, db):
    with RunStore(db) as store:
        run = store.create_run("grpo-a")
        known = store.add_checkpoint(run.id, 20, str(tmp_path / "out" / "checkpoint-20"), {})
        # Found by path in any run, without --run.
        assert checkpoint_row_for(store, str(tmp_path / "out" / "checkpoint-20"), None).id == known.id
        # Not in the DB but --run given: registered under that run with the folder's step.
        new = checkpoint_row_for(store, str(tmp_path / "out" / "checkpoint-30"), "grpo-a")
        assert (new.run_id, new.step) == (run.id, 30)
        # Neither: one "eval-<name>" run, reused by the next evaluation of the same folder.
        first = checkpoint_row_for(store, str(tmp_path / "base-model"), None)
        again = checkpoint_row_for(store, str(tmp_path / "base-model"), None)
        assert again.id == first.id
        assert store.get_run(first.run_id).name == "eval-base-model"
        assert [(r.name, r.kind) for r in store.list_runs(kind=None)] == [
            ("eval-base-model", "model"),
            ("grpo-a", "train"),
        ]
        with pytest.raises(RunDBError, match="no run with id or name 'nope'"):
            checkpoint_row_for(store, str(tmp_path / "x"), "nope")


def test_video_settings_come_from_train_config_then_flags(tmp_path):
    (tmp_path / "train_config.yaml").write_text(
        "video:\n  fps: 4.0\n  max_frames: 8\ngrpo:\n  generation_max_length: 64\n"
    )
    video, length = trained_settings(str(tmp_path))
    assert (video, length) == ({"fps": 4.0, "max_frames": 8}, 64)
    args = argparse.Namespace(fps=None, max_frames=6, max_pixels=784)
    cfg = video_config_for(args, video)
    assert (cfg.fps, cfg.max_frames, cfg.max_pixels, cfg.min_pixels) == (4.0, 6, 784, 784)


NO_THINK_RUN = """\
data:
  dataset_use: synthetic_motion_no_think_train
  eval_dataset_use: synthetic_motion_no_think_eval
"""
MODE_REFUSAL = (
    "dataset_use 'synthetic_motion_eval' is think but {whose}'s dataset_use "
    "'synthetic_motion_no_think_train' is no_think: evaluate on a set with the same answer format "
    "(a name with no_think expects <answer> only)"
)


def no_think_checkpoint(root: Path, tiny_model_dir: Path) -> Path:
    """A checkpoint of a no_think run: the tiny model's files and the train_config.yaml runs save."""
    ckpt = root / "out" / "checkpoint-40"
    shutil.copytree(tiny_model_dir, ckpt)
    (ckpt / "train_config.yaml").write_text(NO_THINK_RUN)
    return ckpt


def test_a_no_think_checkpoint_is_not_asked_think_questions(tiny_model_dir, tmp_path, db, capsys):
    """It scored accuracy 0.000 and format 0.000 with no warning; now it is refused before loading."""
    ckpt = no_think_checkpoint(tmp_path, tiny_model_dir)
    argv = ["eval", "--checkpoint", str(ckpt), "--dataset_use", "synthetic_motion_eval"]
    assert main([*argv, "--db", db, "--workspace", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "vgrpo: error: " + MODE_REFUSAL.format(whose="checkpoint-40")
    with RunStore(db) as store:
        assert store.list_runs(kind=None) == [] and store.jobs() == []  # nothing ran, nothing stored


def test_a_runs_base_model_is_judged_in_the_runs_mode(tiny_model_dir, tmp_path, db, capsys):
    with RunStore(db) as store:
        config = {
            "model": {"model_name_or_path": str(tiny_model_dir)},
            "data": {"dataset_use": "synthetic_motion_no_think_train"},
        }
        store.create_run("grpo-nt", config=config)
    argv = ["eval", "--run", "grpo-nt", "--base", "--dataset_use", "synthetic_motion_eval"]
    assert main([*argv, "--db", db, "--workspace", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip() == "vgrpo: error: " + MODE_REFUSAL.format(whose="run grpo-nt")


def test_what_a_checkpoint_was_trained_on_and_when_its_mode_is_kept(tmp_path, caplog):
    (tmp_path / "train_config.yaml").write_text(NO_THINK_RUN)
    trained = trained_on(str(tmp_path))
    assert trained == TrainedOn("synthetic_motion_no_think_train", None)
    assert (
        trained_on(str(tmp_path / "elsewhere")) is None and trained_on("Qwen/Qwen2.5-VL-3B-Instruct") is None
    )
    # Same mode: no refusal; a plain model folder (no train_config.yaml) has no mode to keep.
    check_trained_mode("synthetic_motion_no_think_eval%50", ["no_think"], "checkpoint-40", trained, tmp_path)
    with pytest.raises(ConfigError, match=r"is no_think\+think but checkpoint-40's dataset_use"):
        check_trained_mode("a,b", ["think", "no_think"], "checkpoint-40", trained, tmp_path)
    # A training set this workspace does not know cannot be judged: logged, not refused.
    with caplog.at_level(logging.WARNING, logger="trainer.eval.checkpoints"):
        check_trained_mode(
            "synthetic_motion_eval", ["think"], "checkpoint-9", TrainedOn("gone_train"), tmp_path
        )
    assert "checkpoint-9 was trained on dataset_use 'gone_train', which is not known here" in caplog.text

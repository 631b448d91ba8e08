"""Two CPU processes (gloo) through `accelerate launch`: gradients are synchronised, so the two
replicas end bitwise identical although each sampled different questions, and they did learn;
evaluation (in training and `vgrpo eval`) splits the records over the processes and gives exactly
the one-process result."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from tests.helpers.distributed_worker import checksum
from trainer.cli import main as vgrpo
from trainer.core.config import build_config, load_yaml
from trainer.core.paths import REPO_ROOT, TINY_MODEL_DIR
from trainer.data import load_dataset_use
from trainer.eval.evaluate import evaluate
from trainer.model.loading import generation_kwargs, load_policy
from trainer.run.launch import accelerate_cpu_command
from trainer.rundb import RunStore

pytestmark = pytest.mark.slow

EVAL_RECORDS = 10  # 3 eval batches of B*G = 4: the processes get 2 and 1


def _launch(args: list[str]) -> str:
    """Run ``args`` in 2 CPU processes; returns their stdout."""
    cmd = accelerate_cpu_command(2, args)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.parametrize("dynamic_sampling", [False, True])
def test_two_process_training_keeps_replicas_identical(tmp_path: Path, dynamic_sampling: bool) -> None:
    ws = tmp_path / "ws"
    config = tmp_path / "run.yaml"
    dynamic = str(dynamic_sampling).lower()
    config.write_text(
        f"""
model: {{model_name_or_path: {TINY_MODEL_DIR}}}
data: {{dataset_use: synthetic_motion_train%5, workspace: {ws},
        eval_dataset_use: synthetic_motion_eval, eval_max_records: {EVAL_RECORDS}}}
video: {{fps: 8.0, max_frames: 8, min_pixels: 3136, max_pixels: 3136}}
grpo: {{grpo_sample_size: 2, generation_max_length: 8, grpo_beta: 0.04, dynamic_sampling: {dynamic},
        entropy_coeff: 0.001}}
optim: {{learning_rate: 0.001, max_steps: 2, per_device_train_batch_size: 2, lr_scheduler_type: constant}}
run: {{save_steps: 2, output_dir: {tmp_path / "out"}, num_threads: 1, run_name: ddp}}
"""
    )
    worker = REPO_ROOT / "tests" / "helpers" / "distributed_worker.py"
    _launch([str(worker), str(config), str(tmp_path)])
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [(r["world"], r["steps"]) for r in ranks] == [(2, 2), (2, 2)]
    assert ranks[0]["checksum"] == ranks[1]["checksum"]
    # ... and they learned: every step had a gradient (the entropy term gives one even when all
    # rewards of a group agree), and the weights moved from the initial model.
    assert all(g > 0 for g in ranks[0]["grad_norms"]), ranks[0]["grad_norms"]
    initial, processor = load_policy(TINY_MODEL_DIR)
    assert ranks[0]["checksum"] != checksum(initial)

    # Only the main process writes the run database: one run, one point per (step, name).
    store = RunStore(f"sqlite:///{ws / 'runs.db'}")
    [run] = store.list_runs()
    assert run.status == "finished"
    assert list(store.metrics_since(run.id)["grpo/total_reward"].steps) == [1, 2]

    # Both processes hold the whole evaluation, and it is what one process gets from the same weights.
    assert ranks[0]["eval"] == ranks[1]["eval"] and len(ranks[0]["eval"]) == EVAL_RECORDS
    cfg = build_config(load_yaml(config))
    trained, _ = load_policy(ranks[0]["final_checkpoint"])
    torch.set_num_threads(1)
    records = load_dataset_use("synthetic_motion_eval", ws, cfg.run.seed)[:EVAL_RECORDS]
    greedy = generation_kwargs(processor, cfg.grpo.generation_max_length, do_sample=False)
    alone = evaluate(trained.eval(), processor, records, cfg.video, greedy, batch_size=4)
    assert ranks[0]["eval"] == alone.records
    [evaluation] = store.evaluations(run.id)
    assert list(evaluation.results) == alone.records


def test_two_process_vgrpo_eval_matches_one_process(tmp_path: Path) -> None:
    args = ["eval", "--checkpoint", str(TINY_MODEL_DIR), "--dataset_use", "synthetic_motion_eval"]
    args += ["--max_records", "7", "--batch_size", "2", "--max_new_tokens", "8", "--workspace", str(tmp_path)]
    torch.set_num_threads(1)
    assert vgrpo([*args, "--json", str(tmp_path / "one.json")]) == 0
    stdout = _launch(["-m", "trainer.cli", *args, "--json", str(tmp_path / "two.json")])
    # One report: the processes knew each other (two independent runs would both print).
    assert stdout.count("eval synthetic_motion_eval:") == 1, stdout
    one, two = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert len(one["records"]) == 7
    for key in ("records", "accuracy", "format_rate", "num_records", "confusion"):
        assert two[key] == one[key], key

"""Two CPU processes (gloo) through `accelerate launch`: gradients are synchronised, so the two
replicas end bitwise identical although each sampled different questions."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from trainer.launch import accelerate_cpu_command
from trainer.paths import REPO_ROOT, TINY_MODEL_DIR
from trainer.rundb import RunStore

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("dynamic_sampling", [False, True])
def test_two_process_training_keeps_replicas_identical(tmp_path: Path, dynamic_sampling: bool) -> None:
    ws = tmp_path / "ws"
    config = tmp_path / "run.yaml"
    dynamic = str(dynamic_sampling).lower()
    config.write_text(
        f"""
model: {{model_name_or_path: {TINY_MODEL_DIR}}}
data: {{dataset_use: synthetic_motion_train%5, workspace: {ws}}}
video: {{fps: 8.0, max_frames: 8, min_pixels: 3136, max_pixels: 3136}}
grpo: {{grpo_sample_size: 2, generation_max_length: 8, grpo_beta: 0.04, dynamic_sampling: {dynamic}}}
optim: {{learning_rate: 0.001, max_steps: 2, per_device_train_batch_size: 2}}
run: {{save_steps: 2, output_dir: {tmp_path / "out"}, num_threads: 1, run_name: ddp}}
"""
    )
    worker = REPO_ROOT / "tests" / "helpers" / "distributed_worker.py"
    cmd = accelerate_cpu_command(2, [str(worker), str(config), str(tmp_path)])
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [(tmp_path / f"rank{r}.txt").read_text().split() for r in (0, 1)]
    assert [line[:2] for line in lines] == [["2", "2"], ["2", "2"]]  # world size 2, 2 steps each
    assert lines[0][2] == lines[1][2]
    # Only the main process writes the run database: one run, one point per (step, name).
    store = RunStore(f"sqlite:///{ws / 'runs.db'}")
    [run] = store.list_runs()
    assert run.status == "finished"
    assert list(store.metrics_since(run.id)["grpo/total_reward"].steps) == [1, 2]

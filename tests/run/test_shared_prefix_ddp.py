"""Two CPU processes (gloo DDP) through `accelerate launch`: a GRPO step gives the same samples,
loss and all-reduced parameter update with ``shared_prefix`` on and off, and the replicas stay
bitwise identical on the shared path (one DDP forward per backward, every gradient reduced once)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from trainer.core.paths import REPO_ROOT
from trainer.run.launch import accelerate_cpu_command

pytestmark = pytest.mark.slow


def test_two_process_step_matches_the_per_sample_path(tmp_path: Path) -> None:
    worker = REPO_ROOT / "tests" / "helpers" / "shared_prefix_ddp_worker.py"
    cmd = accelerate_cpu_command(2, [str(worker), str(tmp_path), str(tmp_path / "ws")])
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for result in ranks:
        assert result["world"] == 2
        assert result["same_samples"]
        assert result["loss_diff"] <= 1e-5
        assert result["update_excess"] <= 0  # every gradient within 1e-5 (abs + rel)
        assert result["moved"] > 1e-3  # the step really updated the weights
        per_sample, shared = result["prefill_tokens"]
        assert shared < per_sample
    # Gradients were all-reduced: both replicas hold the same weights although they saw different questions.
    assert ranks[0]["checksum"] == ranks[1]["checksum"]

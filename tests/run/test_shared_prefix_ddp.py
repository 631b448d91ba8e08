"""Two CPU processes (gloo DDP) through `accelerate launch`: a GRPO step gives the same samples,
loss and all-reduced parameter update with ``shared_prefix`` on and off, and the replicas stay
bitwise identical on the shared path (one DDP forward per backward, every gradient reduced once)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.helpers.exactness import assert_relative_errors_within
from tests.helpers.launch import cpu_launch_env
from trainer.core.paths import REPO_ROOT
from trainer.run.launch import accelerate_cpu_command

pytestmark = pytest.mark.slow
# Each trainable tensor's update, per tensor: ||shared - per-sample|| / ||per-sample||. Measured at
# most 3.4e-5 (a k_proj weight): the updates are read back as new minus old fp32 weights, whose
# rounding (~6e-8 of the weight) is large next to a small update.
UPDATE_REL = 3e-4


def test_two_process_step_matches_the_per_sample_path(tmp_path: Path) -> None:
    worker = REPO_ROOT / "tests" / "helpers" / "shared_prefix_ddp_worker.py"
    cmd = accelerate_cpu_command(2, [str(worker), str(tmp_path), str(tmp_path / "ws")])
    env = {**cpu_launch_env(), "OMP_NUM_THREADS": "1"}  # the worker imports tests.helpers
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for result in ranks:
        assert result["world"] == 2
        assert result["same_samples"]
        assert result["loss_diff"] <= 1e-5
        # Each step took the path it asked for (the library falls back to per-sample with only a
        # warning): sampling in the lean decode loop, then the reference and training forwards
        # with the prompt once per group.
        assert result["shared_prefix_calls"] == [{}, {"decode_shared_prefix": 1, "shared_prefix_logits": 2}]
        per_sample, shared = result["prefill_tokens"]
        assert shared < per_sample
        # Every trainable tensor's update (minus its all-reduced gradient) is the per-sample one.
        assert result["moved"] > 1e-3 and result["unmoved"] == []  # the step really updated each
        assert_relative_errors_within(result["update_rel"], UPDATE_REL)
    # Gradients were all-reduced: both replicas hold the same weights although they saw different questions.
    assert ranks[0]["checksum"] == ranks[1]["checksum"]

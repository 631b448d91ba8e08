"""GRPO with rollout_backend: vllm learns the synthetic task: bench/learning.py on
configs/tiny_cpu_vllm.yaml (the head_dim-64 tiny model, vLLM's CPU build, one training process),
time-boxed (chance is 0.25). The measured curve is in the config's notes.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from trainer.core.paths import REPO_ROOT

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

TRAIN_SECONDS = float(os.environ.get("VGRPO_VLLM_LEARNING_TEST_S", "240"))
AFTER_AT_LEAST = 0.4  # chance is 0.25
# The budget is a ceiling: training ends once the train accuracy reward averages this over 20 steps.
EARLY_STOP = 0.7


def test_grpo_with_vllm_rollouts_raises_held_out_accuracy_above_chance(tmp_path, vllm_model_dir) -> None:
    cmd = [
        sys.executable, str(REPO_ROOT / "bench" / "learning.py"),
        "--config", str(REPO_ROOT / "configs" / "tiny_cpu_vllm.yaml"), "--processes", "1",
        "--threads", "2", "--seconds", str(TRAIN_SECONDS), "--seed", "0", "--eval-every", "100000",
        "--eval-records", "200", "--early-stop-accuracy", str(EARLY_STOP), "--out", str(tmp_path),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TRAIN_SECONDS + 300, cwd=REPO_ROOT)
    log = (tmp_path / "train_seed0.log").read_text(errors="replace")[-3000:] if proc.returncode else ""
    assert proc.returncode == 0, proc.stderr[-3000:] + log
    match = re.search(
        r"^learning: before=([\d.]+) after=([\d.]+) format=([\d.]+) seconds=(\d+)$", proc.stdout, re.M
    )
    assert match, proc.stdout[-2000:]
    before, after, fmt = (float(match.group(i)) for i in (1, 2, 3))
    assert before <= 0.35, f"the warm start should answer at chance, got {before}"
    assert after >= AFTER_AT_LEAST, (
        f"held-out accuracy reached {after} (from {before})\n{proc.stdout[-2000:]}"
    )
    assert fmt >= 0.9

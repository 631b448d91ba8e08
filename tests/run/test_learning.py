"""GRPO learns the synthetic task in both answer formats, with the tiny Qwen3-VL on its think
preset, and the numerical split (how many bounces) on its preset and warm start: a short,
time-boxed bench/learning.py (Qwen3.5's learning is the bench's, see CASES).

The full target (>= 0.9 held-out accuracy within 600 s) is met by the benchmark; this test only
asserts a clear rise from chance, with each mode's shipped preset (configs/tiny_cpu.yaml for
no_think, configs/tiny_cpu_think.yaml for think), within ~4-5 minutes each on 2 CPU cores.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from trainer.core.paths import REPO_ROOT, TINY_QWEN3_VL_DIR

pytestmark = pytest.mark.slow

# mode -> (preset, training seconds, held-out accuracy it must reach). Four options: chance is 0.25.
# Seed 0 takes off around step 150 (no_think) and step 90 (think; its steps cost more: 21 completion
# tokens instead of 9). On 2 cores shared with other jobs (load 4-7) think made 100 steps in 240 s
# (held-out 0.745) and no_think 99 (still 0.22); VGRPO_LEARNING_TEST_S overrides both budgets.
# The budget is a ceiling: training ends (saves, evaluates) once the train accuracy reward averages
# EARLY_STOP over 20 steps (the run's early_stop_accuracy; think seed 0 averaged 0.72 around step
# 105 and was at 0.99 held-out by step 125). On a quiet CI machine both modes were above 0.9 train
# accuracy by ~110 s.
EARLY_STOP = 0.7
CASES = {
    "no_think": ("tiny_cpu.yaml", 240.0, 0.6),
    "think": ("tiny_cpu_think.yaml", 200.0, 0.6),
    # The second model family (Qwen2-VL): that it learns is left to the bench (seed 0: 1.0 held-out
    # at step 200; README); CI trains it from the Train tab (tests/studio/test_train_browser.py) and
    # through the CLI (tests/run/test_families_end_to_end.py), not to a bar: CI's 45 minutes are spent.
    # Qwen3-VL on the think preset, its pixel knobs rescaled to 32 px tokens (4096 px: the same 2 x 2
    # tokens a frame; bench/learning.py says so). Its steps cost 1.0-1.3x Qwen2.5-VL's (timestamp
    # text in the prompt). Seed 0 in the full bench (load ~9): think 0.575 / 0.99 at steps 100 / 200,
    # train accuracy averaged 0.7 at step 134; here, at load 5-7.5, it stopped early at step 134 after
    # 209 s, held-out 0.89. Its no_think run (0.22 / 0.98 at steps 100 / 200 in the bench) is left to
    # the bench (README): the no_think path is the Qwen2.5-VL and Qwen2-VL cases', and CI's 45
    # minutes are spent.
    "qwen3_vl_think": ("tiny_cpu_think.yaml", 240.0, 0.6),
    # The numerical split ("How many times does the square bounce?": 0, 1 or 2, exact match; chance
    # 1/3) on its preset, which trains assets/tiny-qwen2.5-vl-numerical (the letters-only warm start
    # scores 0.000 there). Full bench, seed 0, loaded 2 cores: held-out 0.335 before, 0.46 / 0.64 /
    # 1.00 at steps 100 / 150 / 200 (119 s after the first step), 1.00 after 420 s (seed 1: 0.80 / 0.92
    # at steps 150 / 200). Early stop at 0.7 train accuracy lands around steps 150-200, where held-out
    # was 0.64-1.00: a bar of 0.6. Here, on loaded cores: stopped at step 167 after 76 s, held-out 0.88.
    "numerical": ("tiny_cpu_numerical.yaml", 200.0, 0.6),
    # Qwen3.5 on its own think preset (lr 3e-4: at 1e-3 it stayed at chance; the preset's header has
    # the numbers) is left to the bench since the numerical split's case came in (CI's 45 minutes):
    # seed 0, quiet machine, held-out 0.27 / 0.42 / 1.00 at steps 0 / 100 / 200; a 240 s CI case of
    # it stopped early at ~170 s with held-out >= 0.6. CI still trains Qwen3.5 through the CLI
    # (tests/run/test_families_end_to_end.py) and from the Train tab.
}
MODELS = {
    "qwen3_vl_think": TINY_QWEN3_VL_DIR,
}
# The numerical split's case: three answers (0, 1, 2 bounces), so chance is 1/3 and the warm start's
# greedy answer at chance may sit a little above it on 100 clips (0.335 on 200).
CHANCE_BARS = {"numerical": 0.45}
# --dataset of a case (bench/learning.py's flag; the held-out set is its _eval twin): the numerical
# preset names the same split, so this only keeps the flag exercised.
DATASETS = {"numerical": "synthetic_motion_numerical_no_think_train"}


@pytest.mark.parametrize("mode", sorted(CASES))
def test_grpo_raises_held_out_accuracy_well_above_chance(tmp_path, mode: str) -> None:
    preset, seconds, target = CASES[mode]
    seconds = float(os.environ.get("VGRPO_LEARNING_TEST_S", seconds))
    cmd = [
        sys.executable, str(REPO_ROOT / "bench" / "learning.py"),
        "--config", str(REPO_ROOT / "configs" / preset),
        "--seconds", str(seconds), "--seed", "0", "--eval-every", "100000",
        "--eval-records", "100", "--early-stop-accuracy", str(EARLY_STOP), "--out", str(tmp_path),
    ]  # fmt: skip
    if mode in MODELS:
        cmd += ["--model", str(MODELS[mode])]
    if mode in DATASETS:
        cmd += ["--dataset", DATASETS[mode]]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 240, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    match = re.search(
        r"^learning: before=([\d.]+) after=([\d.]+) format=([\d.]+) seconds=(\d+)$", proc.stdout, re.M
    )
    assert match, proc.stdout[-2000:]
    before, after, fmt = (float(match.group(i)) for i in (1, 2, 3))
    assert before <= CHANCE_BARS.get(mode, 0.35), f"the warm start should answer at chance, got {before}"
    assert after >= target, (
        f"{mode}: held-out accuracy reached only {after} (from {before})\n{proc.stdout[-2000:]}"
    )
    assert fmt >= 0.9
    assert (tmp_path / "curve_seed0.csv").is_file()

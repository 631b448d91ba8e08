"""FSDP2 on two CPU processes (gloo, torchrun): the frozen reference is sharded like the policy and
gives the full model's log-probs; the policy's per-sample path works under accelerate's FSDP2 wrap.

accelerate (1.15) cannot run FSDP training on CPUs: ``AcceleratorState`` sets
``DistributedType.FSDP`` only for MULTI_GPU-like launches, so on CPUs an FSDP config starts gloo
DDP (``cpu=True``) or each process alone, silently; the trainer refuses that (``check_engine``),
and a test pins it. So the sharding itself is run under plain torch.distributed, with the wrapping
of configs/accelerate_fsdp.yaml.

Measured (fp32, tiny model): the sharded reference's log-probs equal the full copy's exactly (0.0)
for video, image and text prompts on both paths; each process holds exactly half of the elements,
before and after the forwards. Accumulated policy gradients differ from the full model's by at
most 6.3e-8 relative error per tensor (reduction order; a q_proj bias); asserted at 1e-6 per tensor.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.helpers.exactness import assert_relative_errors_within
from tests.helpers.launch import cpu_launch_env
from trainer.core.errors import ConfigError
from trainer.core.paths import REPO_ROOT
from trainer.model.reference import shard_reference_fsdp

ENV = {**cpu_launch_env(), "OMP_NUM_THREADS": "1"}  # the workers import tests.helpers
# Policy gradients, per tensor: ||sharded - full|| / ||full|| (see above).
GRAD_REL = 1e-6


@pytest.mark.slow
def test_sharded_reference_matches_the_full_copy_and_holds_half(tmp_path: Path) -> None:
    worker = REPO_ROOT / "tests" / "helpers" / "reference_fsdp_worker.py"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += [str(worker), str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=ENV, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for result in ranks:
        assert result["world"] == 2
        for tie in ("tied", "untied"):
            ref = result[tie]
            assert ref["all_dtensor"], tie
            # The config names no classes: the model's own _no_split_modules are the units.
            # (fully_shard renames a class X to FSDPX.)
            assert {"FSDPQwen2_5_VLDecoderLayer", "FSDPQwen2_5_VLVisionBlock"} <= set(ref["units"]), ref[
                "units"
            ]
            # Every element is held by exactly one process, half each, and still after the forwards
            # (every unit, the root included, resharded).
            assert ref["local_sum"] == ref["full_elements"], tie
            assert ref["local_before"] == ref["local_after"] == ref["full_elements"] // 2, tie
            assert len(ref["diffs"]) == 6
            assert all(diff == 0.0 for diff in ref["diffs"].values()), (tie, ref["diffs"])
        grad = result["policy_grad"]
        assert grad["max_grad"] > 1.0
        assert_relative_errors_within(grad["rel"], GRAD_REL)


def test_fsdp1_is_refused_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match="fsdp_version: 2"):
        shard_reference_fsdp(object(), SimpleNamespace(fsdp_version=1))


@pytest.mark.slow
def test_accelerate_starts_an_fsdp_launch_on_cpus_as_ddp_and_the_trainer_refuses_it(tmp_path: Path) -> None:
    """Pins accelerate's behaviour: when a version runs FSDP on CPUs this fails, and the FSDP
    training can then be tested end to end here like tests/run/test_deepspeed_cpu.py."""
    accelerate = Path(sys.executable).parent / "accelerate"
    config = REPO_ROOT / "configs" / "accelerate_fsdp.yaml"
    cmd = [str(accelerate), "launch", "--config_file", str(config), "--main_process_port", "0"]
    cmd += ["-m", "trainer.cli", "train", "--config", "configs/tiny_cpu.yaml", "--output_dir", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=ENV, cwd=REPO_ROOT)
    assert proc.returncode != 0
    assert "asks for FSDP but accelerate started MULTI_CPU" in proc.stderr, proc.stderr[-3000:]

"""`vgrpo train --rollout_backend vllm` end to end on the head_dim-64 tiny model (.venv-vllm)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from trainer.core import metrics_keys as mk
from trainer.core.paths import REPO_ROOT
from trainer.rundb import RunStore


@pytest.mark.vllm
@pytest.mark.slow
def test_a_short_run_samples_with_vllm_and_logs_the_mismatch(tmp_path, vllm_model_dir) -> None:
    cmd = [
        sys.executable, "-m", "trainer.cli", "train",
        "--model_name_or_path", str(vllm_model_dir),
        "--dataset_use", "synthetic_motion_no_think_train%2",
        "--output_dir", str(tmp_path / "out"), "--workspace", str(tmp_path / "ws"),
        "--rollout_backend", "vllm", "--vllm_gpu_memory_utilization", "0.01",
        "--grpo_sample_size", "4", "--generation_max_length", "12", "--grpo_beta", "0.0",
        "--per_device_train_batch_size", "4", "--learning_rate", "1e-3", "--max_steps", "3",
        "--fps", "8", "--max_frames", "8", "--min_pixels", "3136", "--max_pixels", "3136",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    store = RunStore(f"sqlite:///{tmp_path / 'ws' / 'runs.db'}")
    [run] = store.list_runs()
    assert run.status == "finished"
    points = [p for p in store.metric_points(run.id) if p.name == mk.SAMPLER_LOGP_DIFF]
    assert [p.step for p in points] == [1, 2, 3]
    # Weights are synced after every step, so the engines agree to float32 noise (plus the mass of
    # the suppressed vision tokens the sampler leaves out) on every step, not only the first.
    assert all(p.value < 0.05 for p in points), [p.value for p in points]
    assert store.rollouts(run.id, step=1), "rollouts of step 1 are in the run database"


def test_backend_settings_are_checked_before_any_engine_starts() -> None:
    # Runs without vLLM too: every refusal comes before vLLM is imported.
    from types import SimpleNamespace

    from trainer.core.config import TrainConfig
    from trainer.core.errors import ConfigError
    from trainer.rollout.hf import generate_rollouts
    from trainer.rollout.vllm_engine import make_sampler

    ddp = SimpleNamespace(distributed_type=SimpleNamespace(name="NO"), process_index=0, num_processes=1)
    cfg = TrainConfig()
    assert make_sampler(cfg, None, ddp) is generate_rollouts
    cfg.grpo.rollout_backend = "vlm"
    with pytest.raises(ConfigError, match="rollout_backend must be one of hf, vllm, got 'vlm'"):
        make_sampler(cfg, None, ddp)
    cfg.grpo.rollout_backend = "vllm"
    cfg.grpo.vllm_gpu_memory_utilization = 1.5
    with pytest.raises(ConfigError, match="vllm_gpu_memory_utilization"):
        make_sampler(cfg, None, ddp)
    cfg.grpo.vllm_gpu_memory_utilization = 0.3
    # Several processes and sharded weights are served (tests/vllm/test_vllm_distributed.py), but
    # not FSDP1, whose weights are gathered differently, nor LoRA merged into FSDP shards.
    fsdp = SimpleNamespace(
        distributed_type=SimpleNamespace(name="FSDP"),
        state=SimpleNamespace(fsdp_plugin=SimpleNamespace(fsdp_version=1)),
        process_index=0,
        num_processes=2,
    )
    with pytest.raises(ConfigError, match="fsdp_version 1: rollout_backend vllm gathers FSDP2 weights only"):
        make_sampler(cfg, None, fsdp)
    fsdp.state.fsdp_plugin.fsdp_version = 2
    cfg.model.lora_enable = True
    with pytest.raises(ConfigError, match="LoRA under FSDP is not supported"):
        make_sampler(cfg, None, fsdp)

"""The studio trains with ``rollout_backend: vllm``: the real Supervisor, running here in the
studio's environment (which has no vLLM on a CPU machine), starts the real trainer with the vLLM
environment's Python (``studio.environments``: .venv-vllm or $VGRPO_VLLM_PYTHON), and the run's
rewards and sampler mismatch land in the run database as for any run.

scripts/test.sh builds .venv-vllm before this suite runs, so under CI=true a missing vLLM
environment fails this test; elsewhere (or with VGRPO_SKIP_VLLM=1) it skips, saying why.
"""

from __future__ import annotations

import os

import pytest
from studio_helpers import wait_for

from studio import environments
from studio.context import StudioContext
from studio.supervisor import Supervisor
from trainer.core import metrics_keys as mk
from trainer.core.config import build_config
from trainer.core.paths import TINY_VLLM_MODEL_DIR

pytestmark = pytest.mark.slow

# Engine start (~20-45 s on 2 busy cores), model load and 3 small steps.
RUN_TIMEOUT_S = 480.0
ENDED = ("finished", "failed", "aborted")


@pytest.fixture
def vllm_python() -> environments.VLLMPython:
    try:
        return environments.find_vllm_python()
    except environments.VLLMEnvironmentError as exc:
        reason = f"the studio's vLLM test needs a vLLM environment: {exc}"
        if os.environ.get("CI", "").lower() == "true" and os.environ.get("VGRPO_SKIP_VLLM") != "1":
            pytest.fail(reason)
        pytest.skip(reason)


def test_the_studio_trains_with_vllm_rollouts(ctx: StudioContext, vllm_python) -> None:
    cfg = build_config(
        {
            "model_name_or_path": str(TINY_VLLM_MODEL_DIR),
            "dataset_use": "synthetic_motion_no_think_train%5",
            "eval_dataset_use": "",
            "run_name": "studio-vllm",
            "rollout_backend": "vllm",
            "vllm_gpu_memory_utilization": 0.01,
            "fps": 8.0, "max_frames": 8, "min_pixels": 3136, "max_pixels": 3136,
            "grpo_sample_size": 4, "generation_max_length": 12, "grpo_beta": 0.05,
            "learning_rate": 1e-3, "per_device_train_batch_size": 4, "max_steps": 3,
            "save_steps": 100, "grpo_logging_steps": 1, "seed": 3, "num_threads": 2,
        }
    )  # fmt: skip
    launched = Supervisor(ctx).start(cfg)

    def trainer_argv() -> list[str] | None:
        import psutil

        try:
            return psutil.Process(launched.pid).cmdline()
        except psutil.Error:
            return None

    # Read once the child has exec'd (until then it shows this process's command line).
    argv = wait_for(lambda: (a := trainer_argv()) and "trainer.cli" in a and a, what="the trainer's exec")
    # The trainer runs in the vLLM environment, not in the studio's.
    assert argv and argv[0] == vllm_python.python, argv
    run = wait_for(
        lambda: (r := ctx.store.get_run(launched.run.id)).status in ENDED and r,
        timeout_s=RUN_TIMEOUT_S,
        what="the vllm run to end",
    )
    log = launched.log_path.read_text(errors="replace")[-4000:]
    assert run.status == "finished", log
    series = ctx.store.metrics_since(run.id)
    assert list(series[mk.TOTAL_REWARD].steps) == [1, 2, 3], log
    assert all(0.0 <= v <= 1.0 for v in series[mk.FORMAT_REWARD].values)
    # Logged only when vLLM sampled the rollouts: its log-probs against the policy's.
    assert list(series[mk.SAMPLER_LOGP_DIFF].steps) == [1, 2, 3]
    assert all(v < 0.05 for v in series[mk.SAMPLER_LOGP_DIFF].values), series[mk.SAMPLER_LOGP_DIFF].values
    assert ctx.store.rollouts(run.id, step=1), "the rollouts of step 1 are in the run database"
    # vLLM's per-step warnings are filtered (trainer.rollout.vllm_engine): the log the studio shows is
    # the trainer's, not ~100 "set_num_threads" lines a step.
    full_log = launched.log_path.read_text(errors="replace")
    assert "after the thread binding" not in full_log and "RotaryEmbedding: Failed" not in full_log

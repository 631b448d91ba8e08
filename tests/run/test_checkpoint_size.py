"""A checkpoint holds the weights once (HF safetensors) next to the optimizer, scheduler and RNG:
its size is the weights plus AdamW's two moments, not the weights twice."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests.run.test_loop import tiny_config
from trainer.run.checkpoint import ACCELERATE_DIR
from trainer.run.loop import train

pytestmark = pytest.mark.slow

KIB = 1024


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def test_checkpoint_is_weights_once_plus_optimizer(tmp_path) -> None:
    outcome = train(tiny_config(tmp_path, max_steps=1, save_steps=1))
    ckpt = outcome.final_checkpoint
    params = {p.data_ptr(): p for p in outcome.model.parameters()}.values()  # tied weights once
    weight_bytes = sum(p.numel() * p.element_size() for p in params)
    # AdamW keeps exp_avg and exp_avg_sq, each the size of its (float32) trainable parameter.
    optimizer_bytes = 2 * sum(p.numel() * 4 for p in params if p.requires_grad)

    state_files = sorted(f.name for f in (ckpt / ACCELERATE_DIR).rglob("*") if f.is_file())
    assert not [n for n in state_files if n.startswith(("model", "pytorch_model"))], state_files
    # The safetensors header (names, shapes) is the only extra.
    assert 0 <= (ckpt / "model.safetensors").stat().st_size - weight_bytes <= 16 * KIB
    # Optimizer tensors plus pickling, step counters, scheduler and RNG states: a few KiB.
    assert 0 <= _size(ckpt / ACCELERATE_DIR) - optimizer_bytes <= 64 * KIB, state_files
    processor = sum(
        f.stat().st_size for f in ckpt.iterdir() if f.name.startswith(("tokenizer", "chat_template"))
    )
    assert _size(ckpt) - processor <= weight_bytes + optimizer_bytes + 96 * KIB
    # Readable as any new file here (safetensors' own write left model.safetensors 0600).
    (tmp_path / "new.txt").write_text("")
    default = stat.S_IMODE((tmp_path / "new.txt").stat().st_mode)
    modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in ckpt.rglob("*") if f.is_file()}
    assert modes["model.safetensors"] == default and set(modes.values()) == {default}, modes

"""`vgrpo export --merge` writes a folder every file of which the owner's group can read."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator

import pytest

from trainer.cli import main
from trainer.core.paths import TINY_MODEL_DIR


@pytest.fixture
def umask_022() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def test_every_exported_file_gets_the_default_mode(tmp_path, umask_022) -> None:
    # safetensors (0.8) writes through a private temporary file, so model.safetensors came out
    # 0600 while the processor files beside it were 0644; checkpoints already got 0644.
    out = tmp_path / "merged"
    assert main(["export", "--merge", str(TINY_MODEL_DIR), "-o", str(out)]) == 0
    modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in out.iterdir()}
    assert "model.safetensors" in modes
    assert set(modes.values()) == {"0o644"}, modes

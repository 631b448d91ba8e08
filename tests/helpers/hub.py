"""A Hugging Face hub that cannot give a model: offline, with an empty cache or one holding only the
model's config.json (an interrupted download), for this test only."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from trainer.core.paths import TINY_MODEL_DIR

HUB_ID = "Qwen/Qwen2.5-VL-3B-Instruct"
HINT = f"download it first (hf download {HUB_ID}) or pick a local model folder"


def offline_hub(monkeypatch: pytest.MonkeyPatch, cache: Path, cached: str = "nothing") -> None:
    """HF_HUB_OFFLINE=1 and ``cache`` as the hub cache (huggingface_hub reads both once, at import,
    so the environment variables would not do); ``cached="config only"`` puts the model's config.json
    there without its weights."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    if cached == "config only":
        repo = cache / f"models--{HUB_ID.replace('/', '--')}"
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text("abc123")
        (repo / "snapshots" / "abc123").mkdir(parents=True)
        shutil.copy(TINY_MODEL_DIR / "config.json", repo / "snapshots" / "abc123" / "config.json")

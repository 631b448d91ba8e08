"""Shared fixtures: where ../shared/realdata is, and the embedded assets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers.ci import skip_or_fail
from trainer.core.paths import REPO_ROOT, SYNTHETIC_DIR, TINY_MODEL_DIR

# The team's real material lives beside the checkout (../shared/realdata); a user's clone has none.
REALDATA_DIR = Path(os.environ.get("VGRPO_REALDATA", REPO_ROOT.parent / "shared" / "realdata"))


def _require(path: Path, what: str) -> Path:
    if path.exists():
        return path
    skip_or_fail(f"{what} not found at {path} (only the team checkout has ../shared; CI runs beside it)")


@pytest.fixture(scope="session")
def realdata() -> Path:
    """../shared/realdata: skips outside the team checkout, fails under CI=true."""
    return _require(REALDATA_DIR, "../shared/realdata")


@pytest.fixture(scope="session")
def real_videos(realdata: Path) -> Path:
    return realdata / "videos"


@pytest.fixture(scope="session")
def real_mcq(realdata: Path) -> Path:
    return realdata / "mcq"


@pytest.fixture(scope="session")
def real_processor_dir(realdata: Path) -> Path:
    return realdata / "qwen2_5_vl_tokenizer"


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    if not (TINY_MODEL_DIR / "config.json").exists():
        pytest.fail(f"embedded tiny model missing at {TINY_MODEL_DIR}: run scripts/build_tiny_model.py")
    return TINY_MODEL_DIR


@pytest.fixture(scope="session")
def synthetic_dir() -> Path:
    if not (SYNTHETIC_DIR / "train.jsonl").exists():
        pytest.fail(f"synthetic dataset missing at {SYNTHETIC_DIR}: run scripts/make_synthetic_dataset.py")
    return SYNTHETIC_DIR

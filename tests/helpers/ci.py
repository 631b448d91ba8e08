"""What a test needs but a machine may lack: skip, saying why, on a developer's machine; fail under
``CI=true``, where `make test` has installed everything (the dev extra, ../shared, Chromium)."""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import NoReturn

import pytest


def is_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def skip_or_fail(reason: str) -> NoReturn:
    """Skip with ``reason``; under ``CI=true`` fail with it instead (a silent skip there would hide
    a broken set-up as a green run)."""
    if is_ci():
        pytest.fail(f"{reason} (CI=true: required here)")
    pytest.skip(reason, allow_module_level=True)  # also from a module's top, like importorskip


def import_or_skip(module: str, reason: str) -> ModuleType:
    """``pytest.importorskip`` for a package the dev extra installs: missing it fails under ``CI=true``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        skip_or_fail(f"{module} is not importable ({exc}): {reason}")

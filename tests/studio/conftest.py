"""Studio fixtures: a temp workspace with its run database; the system Chromium for browser tests."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

from studio.context import StudioContext
from tests.helpers.ci import skip_or_fail


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[StudioContext]:
    context = StudioContext(tmp_path / "ws")
    yield context
    context.store.close()
    # A test that failed half-way may leave a trainer it started (a stubborn fake ignores SIGTERM):
    # end every child process that works on this test's database, so none outlives the test.
    import psutil

    for child in psutil.Process().children(recursive=True):
        try:
            if any(context.db_url in part for part in child.cmdline()):
                child.kill()
        except psutil.Error:  # already gone
            pass


@pytest.fixture
def gradio_loops() -> Iterator[None]:
    """Building a gr.Blocks makes gradio create asyncio loops it never closes (gradio.utils
    .safe_get_lock); close the one it left current and collect the rest inside this test, whose
    ``filterwarnings`` mark then covers the ResourceWarnings, instead of a later unrelated test."""
    yield
    import asyncio
    import gc

    loop = asyncio.get_event_loop_policy().get_event_loop()
    if not loop.is_running():
        loop.close()
    asyncio.set_event_loop(None)
    gc.collect()


@pytest.fixture(scope="module")
def chromium() -> Path:
    """The system Chromium and the Playwright driver: skip without them, but fail under CI=true."""
    from browser_helpers import CHROMIUM

    missing = []
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} not found (Debian's chromium package)")
    if importlib.util.find_spec("playwright") is None:
        missing.append("the playwright package is not installed (pip install -e .[dev])")
    if missing:
        skip_or_fail("the browser test needs " + "; ".join(missing))
    return CHROMIUM

"""Studio fixtures: a temp workspace with its run database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from studio.context import StudioContext


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[StudioContext]:
    context = StudioContext(tmp_path / "ws")
    yield context
    context.store.close()


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

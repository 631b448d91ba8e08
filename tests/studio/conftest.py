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

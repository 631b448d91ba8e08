"""Fixtures for the run-database tests: a fresh store per test, on SQLite and on PostgreSQL.

PostgreSQL comes from ``VGRPO_TEST_PG_URL`` (``scripts/test.sh`` starts a throwaway server with
``scripts/pg_test_server.sh`` and exports it); each test gets its own database, dropped afterwards.
Without the URL the postgres variants skip, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.pg import postgres_database
from trainer.rundb import RunStore


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'runs.db'}"
    else:
        yield from postgres_database()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """For tests of SQLite's own settings (WAL, pragmas, file handling)."""
    return f"sqlite:///{tmp_path / 'runs.db'}"


@pytest.fixture
def store(db_url: str) -> Iterator[RunStore]:
    with RunStore(db_url) as s:
        yield s

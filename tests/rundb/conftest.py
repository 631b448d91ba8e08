"""Fixtures for the run-database tests: a fresh store per test, on SQLite and on PostgreSQL.

PostgreSQL comes from ``VGRPO_TEST_PG_URL`` (``scripts/test.sh`` starts a throwaway server with
``scripts/pg_test_server.sh`` and exports it); each test gets its own database, dropped afterwards.
Without the URL the postgres variants skip, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from trainer.rundb import RunStore

PG_URL_ENV = "VGRPO_TEST_PG_URL"


def _postgres_database() -> Iterator[str]:
    admin_url = os.environ.get(PG_URL_ENV)
    if not admin_url:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{PG_URL_ENV} is not set: CI runs the run-database tests on PostgreSQL too")
        pytest.skip(f"{PG_URL_ENV} not set (scripts/test.sh starts a server): PostgreSQL variant skipped")
    name = f"vgrpo_t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'runs.db'}"
    else:
        yield from _postgres_database()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """For tests of SQLite's own settings (WAL, pragmas, file handling)."""
    return f"sqlite:///{tmp_path / 'runs.db'}"


@pytest.fixture
def store(db_url: str) -> Iterator[RunStore]:
    with RunStore(db_url) as s:
        yield s

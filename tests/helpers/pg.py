"""A throwaway PostgreSQL database per test, on the server ``scripts/test.sh`` starts.

The server's URL comes from ``VGRPO_TEST_PG_URL``; each test gets its own database, dropped
afterwards (WITH (FORCE): a trainer a failed test left behind may still hold a connection). Without
the URL the test skips, except under ``CI=true``, where it fails.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

PG_URL_ENV = "VGRPO_TEST_PG_URL"


def postgres_database() -> Iterator[str]:
    """Yield the URL of a new, empty PostgreSQL database; drop it afterwards."""
    admin_url = os.environ.get(PG_URL_ENV)
    if not admin_url:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{PG_URL_ENV} is not set: CI runs the run-database tests on PostgreSQL too")
        pytest.skip(f"{PG_URL_ENV} not set (scripts/test.sh starts a server): PostgreSQL variant skipped")
    yield from throwaway_database(admin_url)


def throwaway_database(admin_url: str, prefix: str = "vgrpo_t_") -> Iterator[str]:
    """Yield the URL of a new database on the server at ``admin_url`` (also bench/scaling.py's)."""
    name = f"{prefix}{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

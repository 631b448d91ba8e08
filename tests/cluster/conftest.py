"""The Ray launcher's tests run on one local cluster of two Ray nodes (1 CPU each, 127.0.0.1) for the
whole package, and a fresh PostgreSQL database per test (the Ray launcher refuses SQLite).

Without Ray they skip, except under ``CI=true`` (``make test`` installs the ``ray`` extra), where
they fail; so do they without the PostgreSQL server ``scripts/test.sh`` starts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.ci import import_or_skip
from tests.helpers.pg import postgres_database

import_or_skip("ray", "pip install -e '.[ray]' (make test installs it)")

from tests.helpers.ray_cluster import LocalRayCluster, local_ray_cluster  # noqa: E402


@pytest.fixture(scope="package")
def ray_cluster() -> Iterator[LocalRayCluster]:
    # Package scope: stopped once tests/cluster is done. Its idle daemons (two raylets, the GCS, the
    # dashboard and its agents) would otherwise share the 2 cores with every later test.
    with local_ray_cluster(nodes=2, cpus_per_node=1) as cluster:
        yield cluster


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from postgres_database()

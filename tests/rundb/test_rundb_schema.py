"""Schema creation, alembic upgrades from the first revision (data kept), SQLite settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text, update

from trainer.core.errors import RunDBError
from trainer.rundb import RunStore, schema
from trainer.rundb.models import Base, SqlRun


def test_new_database_is_created_at_head(store: RunStore) -> None:
    engine = schema.make_engine(store.url)
    try:
        assert schema.current_revision(engine) == schema.head_revision() == "0008"
        assert set(inspect(engine).get_table_names()) == {
            "alembic_version",
            "runs",
            "run_configs",
            "metrics",
            "rollouts",
            "checkpoints",
            "evaluations",
            "events",
            "attempts",
            "jobs",
            "run_workers",
        }
    finally:
        engine.dispose()


def test_models_match_head_migration(store: RunStore) -> None:
    engine = schema.make_engine(store.url)
    try:
        with engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert diffs == []


def test_upgrade_from_first_revision_keeps_data(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = schema.make_engine(url)
    schema.upgrade(engine, "0001")
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO runs (id, name, status, created_at) VALUES (7, 'old-run', 'finished', 100.0)")
        )
        conn.execute(
            text(
                "INSERT INTO metrics (run_id, step, name, value, wall_time) VALUES "
                "(7, 1, 'grpo/kl_div', 0.25, 101.0), (7, 2, 'grpo/kl_div', 0.5, 102.0)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO checkpoints (id, run_id, step, path, created_at, metrics) "
                "VALUES (3, 7, 2, '/c', 1, '{}')"
            )
        )
    assert schema.current_revision(engine) == "0001"
    assert "evaluations" not in inspect(engine).get_table_names()
    engine.dispose()

    with RunStore(url) as store:
        run = store.get_run(7)
        assert (run.name, run.status, run.created_at) == ("old-run", "finished", 100.0)
        series = store.metrics_since(7)["grpo/kl_div"]
        assert (series.steps, series.values) == ((1, 2), (0.25, 0.5))
        # The table revision 0002 added works on the old data.
        evaluation = store.add_evaluation(3, "synthetic_motion", accuracy=0.75, format_rate=1.0)
        assert [e.accuracy for e in store.evaluations(7)] == [0.75]
        assert evaluation.checkpoint_id == 3
        assert evaluation.eval_key is None  # revision 0004's columns are optional
        keyed = store.add_evaluation(3, "s", accuracy=0.5, format_rate=1.0, eval_key="k", summary={"x": 1})
        assert store.find_evaluation(3, "k") == keyed
        assert store.find_evaluation(3, "other") is None
    engine = schema.make_engine(url)
    assert schema.current_revision(engine) == "0008"
    engine.dispose()


def test_unknown_newer_revision_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'future.db'}"
    RunStore(url).close()
    engine = schema.make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0999'"))
    engine.dispose()
    with pytest.raises(RunDBError, match="revision 0999, which this version"):
        RunStore(url)


def test_sqlite_connections_use_wal_busy_timeout_and_foreign_keys(sqlite_url: str) -> None:
    with RunStore(sqlite_url) as store, store.session() as s:
        assert s.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert s.execute(text("PRAGMA busy_timeout")).scalar() == 30000
        assert s.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_read_only_session_refuses_writes(store: RunStore) -> None:
    run = store.create_run("r")
    with pytest.raises(RunDBError, match="read-only"), store.session() as s:
        s.execute(update(SqlRun).where(SqlRun.id == run.id).values(name="changed"))
    with pytest.raises(RunDBError, match="read-only"), store.session() as s:
        s.get(SqlRun, run.id).name = "changed"  # type: ignore[union-attr]
        s.flush()
    assert store.get_run(run.id).name == "r"


def test_database_errors_become_run_db_errors(store: RunStore) -> None:
    # Metrics of a run that does not exist violate the foreign key.
    with pytest.raises(RunDBError, match="FOREIGN KEY constraint failed|violates foreign key constraint"):
        store.log_metrics(999, 1, {"loss": 1.0})


def test_bad_url_is_a_run_db_error() -> None:
    with pytest.raises(RunDBError, match="not a SQLAlchemy URL"):
        RunStore("not a url")

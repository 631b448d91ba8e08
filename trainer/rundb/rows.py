"""Helpers of ``store.py`` that touch no session of their own: ORM row -> dataclass conversions, the
dialect-aware upsert, and the guards that make read-only sessions refuse writes (MLflow's rule)."""

from __future__ import annotations

from sqlalchemy import Table, delete, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import TextClause

from trainer.core.errors import RunDBError
from trainer.rundb.entities import Attempt, Checkpoint, Evaluation, Job, Run, Worker
from trainer.rundb.models import SqlAttempt, SqlCheckpoint, SqlEvaluation, SqlJob, SqlRun, SqlRunWorker

_WRITE_WORDS = ("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER")


def guard_read_only(state) -> None:  # type: ignore[no-untyped-def]
    if state.session.info.get("write"):
        return
    is_write_text = isinstance(
        state.statement, TextClause
    ) and state.statement.text.lstrip().upper().startswith(_WRITE_WORDS)
    if state.is_insert or state.is_update or state.is_delete or is_write_text:
        raise RunDBError("write attempted in a read-only run-database session; use session(write=True)")


def guard_flush(session: Session, _ctx, _instances) -> None:  # type: ignore[no-untyped-def]
    if not session.info.get("write") and (session.new or session.dirty or session.deleted):
        raise RunDBError("write attempted in a read-only run-database session; use session(write=True)")


def upsert(s: Session, table: Table, rows: list[dict], keys: list[str], updates: list[str]) -> None:
    """Insert ``rows``; where ``keys`` collide, overwrite the ``updates`` columns (one statement)."""
    dialect = s.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        stmt = (sqlite.insert if dialect == "sqlite" else postgresql.insert)(table)
        stmt = stmt.on_conflict_do_update(index_elements=keys, set_={c: stmt.excluded[c] for c in updates})
        s.execute(stmt, rows)
        return
    # Portable fallback: delete what would collide, then insert.
    for row in rows:
        s.execute(delete(table).where(*(table.c[k] == row[k] for k in keys)))
    s.execute(insert(table), rows)


def to_run(row: SqlRun) -> Run:
    return Run(**{name: getattr(row, name) for name in Run.__dataclass_fields__})


def to_checkpoint(row: SqlCheckpoint) -> Checkpoint:
    return Checkpoint(
        row.id,
        row.run_id,
        row.step,
        row.path,
        row.created_at,
        dict(row.metrics),
        row.deleted_at,
        row.attempt,
    )


def to_attempt(row: SqlAttempt) -> Attempt:
    return Attempt(**{name: getattr(row, name) for name in Attempt.__dataclass_fields__})


def to_job(row: SqlJob) -> Job:
    values = {name: getattr(row, name) for name in Job.__dataclass_fields__}
    values["params"] = dict(row.params)
    values["result"] = None if row.result is None else dict(row.result)
    return Job(**values)


def to_evaluation(row: SqlEvaluation) -> Evaluation:
    return Evaluation(
        row.id,
        row.checkpoint_id,
        row.dataset,
        row.created_at,
        row.accuracy,
        row.format_rate,
        tuple(row.results),
        row.eval_key,
        row.dataset_fingerprint,
        None if row.settings is None else dict(row.settings),
        None if row.summary is None else dict(row.summary),
    )


def to_worker(row: SqlRunWorker) -> Worker:
    return Worker(**{name: getattr(row, name) for name in Worker.__dataclass_fields__})

"""Checkpoints, evaluations and events of runs: part of ``RunStore`` (a mixin).

A trainer's own writes here carry its lease and are fenced like its metrics (``owned.OwnedRows._fence``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from trainer.core.errors import RunDBError
from trainer.rundb import rows
from trainer.rundb.entities import Checkpoint, Evaluation, Event, Lease
from trainer.rundb.models import EVENT_LEVELS, SqlCheckpoint, SqlEvaluation, SqlEvent


class ArtifactRows:
    url: str

    def session(self, write: bool = False) -> AbstractContextManager[Session]:  # RunStore.session
        raise NotImplementedError

    def _fence(self, s: Session, lease: Lease) -> None:  # OwnedRows._fence
        raise NotImplementedError

    def _fence_or_require(self, s: Session, run_id: int, lease: Lease | None) -> None:  # RunStore
        raise NotImplementedError

    def add_checkpoint(
        self, run_id: int, step: int, path: str, metrics: Mapping[str, float], *, lease: Lease | None = None
    ) -> Checkpoint:
        """Record the checkpoint of ``step``; a resumed attempt saving that step again updates the row
        (same id, so its evaluations stay attached). With a ``lease``: fenced, and the row records
        its attempt."""
        now = time.time()
        attempt = None if lease is None else lease.attempt
        with self.session(write=True) as s:
            self._fence_or_require(s, run_id, lease)
            row = s.scalar(
                select(SqlCheckpoint).where(SqlCheckpoint.run_id == run_id, SqlCheckpoint.step == step)
            )
            if row is None:
                row = SqlCheckpoint(
                    run_id=run_id,
                    step=step,
                    path=path,
                    created_at=now,
                    metrics=dict(metrics),
                    attempt=attempt,
                )
                s.add(row)
            else:
                row.path, row.created_at, row.metrics, row.deleted_at = path, now, dict(metrics), None
                row.attempt = attempt
            s.add(
                SqlEvent(
                    run_id=run_id, time=now, level="info", kind="checkpoint", message=f"step {step}: {path}"
                )
            )
            s.flush()
            return rows.to_checkpoint(row)

    def mark_checkpoints_deleted(
        self, run_id: int, paths: Iterable[str], *, lease: Lease | None = None
    ) -> int:
        """Checkpoints of ``run_id`` at ``paths`` were removed from disk (``save_total_limit``)."""
        paths = [str(p) for p in paths]
        if not paths:
            return 0
        with self.session(write=True) as s:
            if lease is not None:
                self._fence(s, lease)
            return s.execute(
                update(SqlCheckpoint)
                .where(
                    SqlCheckpoint.run_id == run_id,
                    SqlCheckpoint.path.in_(paths),
                    SqlCheckpoint.deleted_at.is_(None),
                )
                .values(deleted_at=time.time())
                .execution_options(synchronize_session=False)
            ).rowcount

    def checkpoints(self, run_id: int, *, include_deleted: bool = False) -> list[Checkpoint]:
        """A run's checkpoints by step; those removed from disk only with ``include_deleted``."""
        query = select(SqlCheckpoint).where(SqlCheckpoint.run_id == run_id)
        if not include_deleted:
            query = query.where(SqlCheckpoint.deleted_at.is_(None))
        with self.session() as s:
            return [rows.to_checkpoint(row) for row in s.scalars(query.order_by(SqlCheckpoint.step))]

    def add_evaluation(
        self,
        checkpoint_id: int,
        dataset: str,
        *,
        accuracy: float,
        format_rate: float,
        results: Sequence[Mapping[str, Any]] = (),
        eval_key: str | None = None,
        dataset_fingerprint: str | None = None,
        settings: Mapping[str, Any] | None = None,
        summary: Mapping[str, Any] | None = None,
        lease: Lease | None = None,
    ) -> Evaluation:
        """Record an evaluation of a checkpoint; with a ``lease`` (the trainer's own final
        evaluation) fenced like its other writes."""
        with self.session(write=True) as s:
            if lease is not None:
                self._fence(s, lease)
            ckpt = s.get(SqlCheckpoint, checkpoint_id)
            if ckpt is None or (lease is not None and ckpt.run_id != lease.run_id):
                raise RunDBError(f"no checkpoint {checkpoint_id} in {self.url}")
            row = SqlEvaluation(
                checkpoint_id=checkpoint_id,
                dataset=dataset,
                created_at=time.time(),
                accuracy=accuracy,
                format_rate=format_rate,
                results=[dict(r) for r in results],
                eval_key=eval_key,
                dataset_fingerprint=dataset_fingerprint,
                settings=None if settings is None else dict(settings),
                summary=None if summary is None else dict(summary),
            )
            s.add(row)
            s.flush()
            return rows.to_evaluation(row)

    def find_evaluation(self, checkpoint_id: int, eval_key: str) -> Evaluation | None:
        """The latest evaluation of this checkpoint with this key (same records, same decoding)."""
        query = (
            select(SqlEvaluation)
            .where(SqlEvaluation.checkpoint_id == checkpoint_id, SqlEvaluation.eval_key == eval_key)
            .order_by(SqlEvaluation.id.desc())
            .limit(1)
        )
        with self.session() as s:
            row = s.scalars(query).first()
            return None if row is None else rows.to_evaluation(row)

    def evaluations(self, run_id: int) -> list[Evaluation]:
        query = (
            select(SqlEvaluation)
            .join(SqlCheckpoint, SqlCheckpoint.id == SqlEvaluation.checkpoint_id)
            .where(SqlCheckpoint.run_id == run_id)
            .order_by(SqlCheckpoint.step, SqlEvaluation.id)
        )
        with self.session() as s:
            return [rows.to_evaluation(row) for row in s.scalars(query)]

    def add_event(
        self, run_id: int, kind: str, message: str, level: str = "info", *, lease: Lease | None = None
    ) -> None:
        """Append an event; with a ``lease`` (a trainer's own events) fenced like its other writes."""
        if level not in EVENT_LEVELS:
            raise RunDBError(f"run {run_id} event {kind!r}: level {level!r} not in {EVENT_LEVELS}")
        with self.session(write=True) as s:
            if lease is not None:
                self._fence(s, lease)
            s.add(SqlEvent(run_id=run_id, time=time.time(), level=level, kind=kind, message=message))

    def events(self, run_id: int) -> list[Event]:
        with self.session() as s:
            query = select(SqlEvent).where(SqlEvent.run_id == run_id).order_by(SqlEvent.time, SqlEvent.id)
            return [Event(e.id, e.run_id, e.time, e.level, e.kind, e.message) for e in s.scalars(query)]

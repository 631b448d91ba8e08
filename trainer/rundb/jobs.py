"""Background jobs (evaluations) in the run database: part of ``RunStore`` (a mixin).

A job follows the run's state machine (``states.py``: queued -> running -> finished | failed |
aborted, never resumed) and owner rules (``liveness.py``), through the same compare-and-set writes
(``owned.py``). Its owner reports progress and, when it ends, a result (``{"evaluation_id": 7}``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import select, update

from trainer.core.errors import RunDBError
from trainer.rundb import liveness, rows, states
from trainer.rundb.entities import Job
from trainer.rundb.liveness import Owner
from trainer.rundb.models import SqlJob, SqlRun
from trainer.rundb.owned import OwnedRows, owned_by

JOB_KINDS = ("evaluate",)


class JobRows(OwnedRows):
    def create_job(
        self,
        kind: str,
        params: Mapping[str, Any],
        *,
        run_id: int | None = None,
        owner: Owner | None = None,
        log_path: str | None = None,
    ) -> Job:
        """A new ``queued`` job, held by ``owner`` (the process that will run it) when given."""
        if kind not in JOB_KINDS:
            raise RunDBError(f"job kind {kind!r} is not one of {JOB_KINDS}")
        with self.session(write=True) as s:
            if run_id is not None and s.get(SqlRun, run_id) is None:
                raise RunDBError(f"job {kind}: no run {run_id} in {self.url}")
            row = SqlJob(
                kind=kind,
                run_id=run_id,
                status=states.QUEUED,
                created_at=time.time(),
                params=dict(params),
                log_path=log_path,
                progress_done=0,
            )
            if owner is not None:
                row.pid, row.pid_create_time, row.host = owner.pid, owner.create_time, owner.host
            s.add(row)
            s.flush()
            return rows.to_job(row)

    def get_job(self, job_id: int) -> Job:
        with self.session() as s:
            row = s.get(SqlJob, job_id)
            if row is None:
                raise RunDBError(f"no job {job_id} in {self.url}")
            return rows.to_job(row)

    def jobs(
        self, *, run_id: int | None = None, kind: str | None = None, status: Iterable[str] | None = None
    ) -> list[Job]:
        """Jobs, newest first, optionally of one run, kind, or statuses."""
        query = select(SqlJob).order_by(SqlJob.id.desc())
        if run_id is not None:
            query = query.where(SqlJob.run_id == run_id)
        if kind is not None:
            query = query.where(SqlJob.kind == kind)
        if status is not None:
            query = query.where(SqlJob.status.in_(list(status)))
        with self.session() as s:
            return [rows.to_job(row) for row in s.scalars(query)]

    def claim_job(
        self,
        job_id: int,
        owner: Owner | None = None,
        *,
        heartbeat_interval_s: float = liveness.DEFAULT_HEARTBEAT_INTERVAL_S,
    ) -> Job:
        """queued -> running for ``owner`` (this process by default): the process holding it or one it
        launched (see ``OwnedRows._claim``); ``OwnerAlive`` if another live process holds it."""
        launchers = Owner.lineage() if owner is None else []
        self._claim(SqlJob, job_id, owner or Owner.current(), heartbeat_interval_s, launchers)
        return self.get_job(job_id)

    def beat_job(self, job_id: int, owner: Owner) -> bool:
        return self._beat(SqlJob, job_id, owner)

    def set_job_progress(self, job_id: int, owner: Owner, done: int, total: int | None = None) -> bool:
        """The owner reports ``done`` of ``total`` units (records); False when it no longer holds it."""
        with self.session(write=True) as s:
            return (
                s.execute(
                    update(SqlJob)
                    .where(SqlJob.id == job_id, SqlJob.status == states.RUNNING, *owned_by(SqlJob, owner))
                    .values(progress_done=done, progress_total=total, heartbeat_at=time.time())
                    .execution_options(synchronize_session=False)
                ).rowcount
                == 1
            )

    def end_job(
        self,
        job_id: int,
        owner: Owner,
        status: str,
        *,
        result: Mapping[str, Any] | None = None,
        reason: str | None = None,
        error: str | None = None,
        traceback: str | None = None,
    ) -> bool:
        """The owner ends its job (with ``result`` when finished); False when it no longer holds it."""
        extra = {"result": dict(result)} if result is not None else None
        return self._end(
            SqlJob, job_id, owner, status, reason=reason, error=error, traceback=traceback, extra=extra
        )

    def hand_over_job(self, job_id: int, expected: Owner | None, new: Owner) -> bool:
        return self._hand_over(SqlJob, job_id, expected, new)

    def request_job_stop(self, job_id: int) -> Job:
        """Record the user's cancel (the job then ends ``aborted``); RunDBError when it is not active."""
        return rows.to_job(self._request_stop(SqlJob, job_id))

    def reap_dead_jobs(
        self,
        job_ids: Iterable[int] | None = None,
        *,
        now: float | None = None,
        exited: Owner | None = None,
        detail: str | None = None,
        traceback: str | None = None,
    ) -> list[int]:
        """End queued/running jobs whose owner is dead; returns their ids."""
        return self._reap(SqlJob, job_ids, now=now, exited=exited, detail=detail, traceback=traceback)

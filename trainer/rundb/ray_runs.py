"""Runs owned by a Ray job: part of ``RunStore`` (a mixin).

A run launched on a Ray cluster is queued by its launcher (the studio, ``vgrpo train --launcher
ray``) like any other, then given to the job it submitted (``assign_ray_job``: a compare-and-set
on the queued row its launcher holds). From then on the job owns the run: rank 0 of that job claims
it (``claim_run(..., ray_job=...)``), a restart of the job's workers takes it over as a new attempt,
its liveness is the job's status (``liveness.ray_death_reason``), and the job's driver writes how
it ended when its trainers could not (``end_ray_run``). Rank 0 records where every rank ran
(``record_workers``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from sqlalchemy import select, update

from trainer.rundb import rows, states
from trainer.rundb.entities import Lease, Run, Worker
from trainer.rundb.liveness import Owner
from trainer.rundb.models import SqlEvent, SqlRun, SqlRunWorker
from trainer.rundb.owned import OwnedRows, owned_by

RAY_JOB_EVENT = "ray_job"


class RayRunRows(OwnedRows):
    def get_run(self, run_id: int) -> Run:  # RunStore.get_run
        raise NotImplementedError

    def assign_ray_job(
        self, run_id: int, launcher: Owner, job_id: str, address: str, *, ended: bool = False
    ) -> bool:
        """The queued run ``launcher`` holds is given to Ray job ``job_id`` at ``address`` (before the
        job is submitted, so its rank 0 can never find the run not yet its own). False when the run
        is no longer queued by ``launcher`` (aborted meanwhile, or taken).

        ``ended``: the run is an ended one a terminal trains further (``vgrpo train
        --resume_from_checkpoint latest --max_steps N`` on a finished run, which a local trainer
        claims directly from its ending): it stays ended, job noted, until the job's rank 0 claims it."""
        where = [SqlRun.status.in_(states.ENDED)] if ended else [SqlRun.status == states.QUEUED]
        where += [] if ended else owned_by(SqlRun, launcher)
        with self.session(write=True) as s:
            won = (
                s.execute(
                    update(SqlRun)
                    .where(SqlRun.id == run_id, *where)
                    .values(ray_job_id=job_id, ray_address=address)
                    .execution_options(synchronize_session=False)
                ).rowcount
                == 1
            )
            if won:
                s.add(
                    SqlEvent(
                        run_id=run_id,
                        time=time.time(),
                        level="info",
                        kind=RAY_JOB_EVENT,
                        message=f"submitted as Ray job {job_id} to {address}",
                    )
                )
            return won

    def end_ray_run(
        self,
        run_id: int,
        job_id: str,
        status: str,
        *,
        reason: str | None = None,
        error: str | None = None,
        traceback: str | None = None,
    ) -> bool:
        """The job's driver ends the run its workers could not end themselves (a worker died, the
        group could not start): only while the run is active and still owned by ``job_id``."""
        return self._end(
            SqlRun,
            run_id,
            None,
            status,
            reason=reason,
            error=error,
            traceback=traceback,
            where=[SqlRun.ray_job_id == job_id],
        )

    def explain_ray_failure(self, run_id: int, job_id: str, error: str, traceback: str | None = None) -> bool:
        """The job's driver puts what Ray saw first in the error of a run its rank 0 already ended
        ``failed``: when a worker process dies, rank 0 fails first in a collective ("connection closed
        by peer") and records that, while Ray knows which worker died and why. Only for a run still
        ``failed`` by this job; the rank 0 error is kept after it. Not a status change."""
        with self.session(write=True) as s:
            row = s.get(SqlRun, run_id)
            if row is None or row.status != states.FAILED or row.ray_job_id != job_id:
                return False
            if row.error and row.error.startswith(error):
                return False
            row.error = f"{error} (rank 0 recorded: {row.error})" if row.error else error
            if traceback:
                row.traceback = f"{traceback}\n--- rank 0 recorded ---\n{row.traceback or ''}"
            s.add(SqlEvent(run_id=run_id, time=time.time(), level="error", kind=RAY_JOB_EVENT, message=error))
            return True

    def record_workers(self, lease: Lease, workers: Sequence[Worker]) -> None:
        """Rank 0 records its attempt's workers (fenced: only while its lease holds the run)."""
        now = time.time()
        with self.session(write=True) as s:
            self._fence(s, lease)
            for w in workers:
                s.add(
                    SqlRunWorker(
                        run_id=lease.run_id,
                        attempt=lease.attempt,
                        rank=w.rank,
                        node_id=w.node_id,
                        host=w.host,
                        ip=w.ip,
                        pid=w.pid,
                        ray_job_id=w.ray_job_id,
                        recorded_at=now,
                    )
                )

    def workers(self, run_id: int, attempt: int | None = None) -> list[Worker]:
        """The workers of ``attempt`` (default: the newest attempt that recorded any), by rank."""
        with self.session() as s:
            if attempt is None:
                attempt = s.scalar(
                    select(SqlRunWorker.attempt)
                    .where(SqlRunWorker.run_id == run_id)
                    .order_by(SqlRunWorker.attempt.desc())
                    .limit(1)
                )
                if attempt is None:
                    return []
            query = (
                select(SqlRunWorker)
                .where(SqlRunWorker.run_id == run_id, SqlRunWorker.attempt == attempt)
                .order_by(SqlRunWorker.rank)
            )
            return [rows.to_worker(row) for row in s.scalars(query)]

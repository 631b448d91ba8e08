"""The compare-and-set status writes shared by runs and jobs: part of ``RunStore`` (a mixin).

Every method here is one ``UPDATE ... WHERE id = ? AND status IN (sources) [AND owner = ?]``; its
row count says whether this caller won. Nothing outside this module writes a ``status`` column
(the transitions themselves are in ``states.py``, the death rules in ``liveness.py``).

``_fence`` is the same idea for a trainer's data writes: the first statement of their transaction
matches the run only while the writer's lease (run, attempt, process) still holds it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import and_, case, or_, select, update
from sqlalchemy.orm import Session

from trainer.core.errors import RunDBError
from trainer.rundb import liveness, states
from trainer.rundb.entities import Lease
from trainer.rundb.liveness import Owner
from trainer.rundb.models import SqlAttempt, SqlEvent, SqlJob, SqlRun

logger = logging.getLogger(__name__)

# The end_reason of an attempt whose Ray job started a new one (Ray Train restarted its workers).
RAY_RESTART_REASON = "its Ray job restarted the workers (max_failures): a new attempt took over"


def ray_job_status(address: str, job_id: str) -> tuple[str | None, str]:
    """(status, message) of a Ray job as its head reports it; (None, why) when the head does not
    answer. Ray is imported only here, and only for runs that have a Ray job."""
    from trainer.cluster import ray_jobs

    try:
        state = ray_jobs.job_state(address, job_id)
    except ray_jobs.ClusterUnreachable as exc:
        return None, str(exc)
    return state.status, state.message


Model = type[SqlRun] | type[SqlJob]


def _kind(model: Model) -> str:
    return states.RUN if model is SqlRun else states.JOB


def owned_by(model: Model, owner: Owner) -> list[Any]:
    """WHERE clauses matching exactly this process instance."""
    return [model.pid == owner.pid, model.pid_create_time == owner.create_time, model.host == owner.host]


def launched_by(model: Model, launchers: Iterable[Owner]) -> Any:
    """WHERE clause: the row is held by one of ``launchers`` (start times compared with psutil's
    margin: a process's start time computed in another process may differ in the last digits)."""
    tol = liveness.CREATE_TIME_TOLERANCE_S
    return or_(
        *(
            and_(
                model.pid == o.pid,
                model.host == o.host,
                model.pid_create_time.between(o.create_time - tol, o.create_time + tol),
            )
            for o in launchers
        )
    )


def _attempt(
    run_id: int,
    number: int,
    owner: Owner,
    started_at: float,
    status: str,
    *,
    ended_at: float | None = None,
    end_reason: str | None = None,
) -> SqlAttempt:
    """The attempts row of ``owner``'s stint on a run."""
    return SqlAttempt(
        run_id=run_id,
        number=number,
        pid=owner.pid,
        pid_create_time=owner.create_time,
        host=owner.host,
        started_at=started_at,
        ended_at=ended_at,
        status=status,
        end_reason=end_reason,
    )


def _owner_of(row: Any) -> Owner | None:
    if row.pid is None or row.pid_create_time is None or row.host is None:
        return None
    return Owner(row.pid, row.pid_create_time, row.host)


def _claimable(model: Model, claimants: list[Owner], ray_job: str | None) -> Any:
    """WHERE clause of a claim (see ``OwnedRows._claim``): queued for one of ``claimants`` (or for
    nobody), queued or running for ``ray_job``, or ended."""
    kind = _kind(model)
    queued = and_(model.status == states.QUEUED, or_(model.pid.is_(None), launched_by(model, claimants)))
    if ray_job is not None and model is SqlRun:
        queued = or_(
            queued,
            and_(SqlRun.ray_job_id == ray_job, SqlRun.status.in_([states.QUEUED, states.RUNNING])),
        )
    ended = [s for s in states.sources(kind, states.RUNNING) if s != states.QUEUED]
    return or_(queued, model.status.in_(ended)) if ended else queued


class OwnedRows:
    """Claim, beat, end, stop, re-queue and reap rows of ``runs`` and ``jobs``."""

    url: str
    # (address, job id) -> (Ray's job status or None when the head does not answer, its message).
    ray_job_status = staticmethod(ray_job_status)

    def session(self, write: bool = False) -> AbstractContextManager[Session]:  # RunStore.session
        raise NotImplementedError

    # ---- the owner's own writes ----------------------------------------------------------------

    def _claim(
        self,
        model: Model,
        row_id: int,
        owner: Owner,
        interval_s: float,
        launchers: Iterable[Owner] = (),
        ray_job: str | None = None,
    ) -> Any:
        """``-> running`` for ``owner``; takes over from a dead owner; OwnerAlive while one lives.

        A queued row is taken only by the process that holds it (``owner`` after a hand-over) or by
        one that process launched (``launchers``: the claimant's ancestors, so a trainer started by
        the studio claims before the studio has handed the row over); a row queued without an owner
        by anyone. Another process (``vgrpo train --attach_run`` typed while the studio starts a
        trainer) is refused while that launcher lives. An ended row is claimed by whoever comes first.

        ``ray_job``: the claimant is rank 0 of the Ray job the run was given to (``assign_ray_job``).
        It claims the run queued for that job, and also takes it over ``running`` from an earlier
        rank 0 of the same job: Ray Train starts a new worker group only after the old one is gone
        (a worker died and ``max_failures`` allows a restart), so that attempt ends and this one begins.
        """
        kind = _kind(model)
        claimable = _claimable(model, [owner, *launchers], ray_job)
        for _ in range(2):
            now = time.time()
            values: dict[str, Any] = {
                "status": states.RUNNING,
                "pid": owner.pid,
                "pid_create_time": owner.create_time,
                "host": owner.host,
                "started_at": now,
                "ended_at": None,
                "heartbeat_at": now,
                "heartbeat_interval_s": interval_s,
                "error": None,
                "traceback": None,
                "end_reason": None,
                # A stop asked for while queued still applies; one left from an ended attempt does not.
                "stop_requested_at": case(
                    (model.status == states.QUEUED, model.stop_requested_at), else_=None
                ),
            }
            if model is SqlRun:
                values["attempt"] = SqlRun.attempt + 1
            with self.session(write=True) as s:
                won = s.execute(
                    update(model)
                    .where(model.id == row_id, claimable)
                    .values(**values)
                    .execution_options(synchronize_session=False)
                ).rowcount
                if won:
                    row = s.get(model, row_id)
                    if model is SqlRun:
                        # Only a Ray job's restart claims a run whose attempt is still open.
                        s.execute(
                            update(SqlAttempt)
                            .where(SqlAttempt.run_id == row_id, SqlAttempt.ended_at.is_(None))
                            .values(ended_at=now, status=states.FAILED, end_reason=RAY_RESTART_REASON)
                            .execution_options(synchronize_session=False)
                        )
                        s.add(_attempt(row_id, row.attempt, owner, now, states.RUNNING))
                        s.add(
                            SqlEvent(
                                run_id=row_id,
                                time=now,
                                level="info",
                                kind="started",
                                message=f"attempt {row.attempt}: {owner.describe()}",
                            )
                        )
                    return row
            if not self._take_over_if_dead(model, row_id):
                break
        raise RunDBError(f"{kind} {row_id} could not be claimed by {owner.describe()}")

    def _take_over_if_dead(self, model: Model, row_id: int) -> bool:
        """After a lost claim: end a dead owner's row (True: try again) or refuse a live owner."""
        kind = _kind(model)
        with self.session() as s:
            row = s.get(model, row_id)
            if row is None:
                raise RunDBError(f"no {kind} {row_id} in {self.url}")
            status, owner, started = row.status, _owner_of(row), row.started_at or row.created_at
        if status not in states.ACTIVE:
            states.check(kind, row_id, status, states.RUNNING)
            return True  # it ended between our UPDATE and this read: claim again
        if self._reap(model, [row_id]):
            return True
        who = owner.describe(started) if owner is not None else "a process that has not started yet"
        raise states.OwnerAlive(
            f"{kind} {row_id} is {status}, owned by {who}; abort it first or wait for it to end"
        )

    def _beat(self, model: Model, row_id: int, owner: Owner, attempt: int | None = None) -> bool:
        """Refresh the heartbeat; False when ``owner`` (in ``attempt``, for a run) no longer holds a
        running row (reaped, taken over)."""
        conditions = [model.id == row_id, model.status == states.RUNNING, *owned_by(model, owner)]
        if attempt is not None:
            conditions.append(SqlRun.attempt == attempt)
        with self.session(write=True) as s:
            return (
                s.execute(
                    update(model)
                    .where(*conditions)
                    .values(heartbeat_at=time.time())
                    .execution_options(synchronize_session=False)
                ).rowcount
                == 1
            )

    def _fence(self, s: Session, lease: Lease) -> None:
        """First statement of a trainer's write transaction: RunLost unless ``lease`` still holds the run.

        An UPDATE that changes nothing, matched on the run, its current attempt, ``running`` and the
        owner process: it takes the run row's write lock (PostgreSQL's row lock; SQLite's database
        lock, held since BEGIN IMMEDIATE) until the transaction commits. A claim or reap that ends the
        lease therefore either commits before (then this matches no row and nothing is written) or
        waits for this transaction: no row of a lost attempt lands after its successor took over."""
        held = s.execute(
            update(SqlRun)
            .where(
                SqlRun.id == lease.run_id,
                SqlRun.attempt == lease.attempt,
                SqlRun.status == states.RUNNING,
                *owned_by(SqlRun, lease.owner),
            )
            .values(attempt=SqlRun.attempt)
            .execution_options(synchronize_session=False)
        ).rowcount
        if held != 1:
            row = s.get(SqlRun, lease.run_id)
            now = "deleted" if row is None else f"{row.status} in attempt {row.attempt}"
            raise states.RunLost(f"{lease.describe()} no longer holds the run (it is {now}): write refused")

    def _hold_in(self, s: Session, model: Model, row_id: int, statuses: Iterable[str]) -> bool:
        """Lock the row for the rest of ``s``'s transaction if it is in one of ``statuses`` (an UPDATE
        that changes nothing, as ``_fence``): a delete conditioned on an ended status cannot
        interleave with a resume that queues it again."""
        return (
            s.execute(
                update(model)
                .where(model.id == row_id, model.status.in_(list(statuses)))
                .values(id=model.id)
                .execution_options(synchronize_session=False)
            ).rowcount
            == 1
        )

    def _end(
        self,
        model: Model,
        row_id: int,
        owner: Owner | None,
        status: str,
        *,
        reason: str | None = None,
        error: str | None = None,
        traceback: str | None = None,
        extra: dict[str, Any] | None = None,
        where: Iterable[Any] = (),
        attempt: int | None = None,
    ) -> bool:
        """``-> status`` (an end) if the row is still in a source state (and held by ``owner``, in
        ``attempt`` for a run)."""
        kind = _kind(model)
        if status not in states.ENDED:
            raise RunDBError(f"{kind} {row_id}: cannot end with status {status!r}; use one of {states.ENDED}")
        now = time.time()
        conditions = [model.id == row_id, model.status.in_(states.sources(kind, status)), *where]
        if owner is not None:
            conditions += owned_by(model, owner)
        if attempt is not None:
            conditions.append(SqlRun.attempt == attempt)
        values = {"status": status, "ended_at": now, "error": error, "traceback": traceback}
        values |= {"end_reason": reason, **(extra or {})}
        with self.session(write=True) as s:
            won = (
                s.execute(
                    update(model)
                    .where(*conditions)
                    .values(**values)
                    .execution_options(synchronize_session=False)
                ).rowcount
                == 1
            )
            if won and model is SqlRun:
                closed = s.execute(
                    update(SqlAttempt)
                    .where(SqlAttempt.run_id == row_id, SqlAttempt.ended_at.is_(None))
                    .values(ended_at=now, status=status, end_reason=reason or error)
                    .execution_options(synchronize_session=False)
                ).rowcount
                if not closed:
                    self._record_unstarted_attempt(s, row_id, now, status, reason or error)
                level = {"finished": "info", "failed": "error"}.get(status, "warning")
                message = error or reason or status
                s.add(SqlEvent(run_id=row_id, time=now, level=level, kind=status, message=message))
            return won

    def _record_unstarted_attempt(
        self, s: Session, row_id: int, now: float, status: str, why: str | None
    ) -> None:
        """A queued run ended before its trainer claimed it (aborted while starting, the trainer or
        its launcher died): that launch is still an attempt, numbered and listed with its process,
        so `runs show` has one line per Resume. Its start is the process's own start time."""
        row = s.get(SqlRun, row_id)
        if row is None or row.pid is None or row.pid_create_time is None or row.host is None:
            return  # queued without a process: nothing was launched
        row.attempt += 1
        launched = Owner(row.pid, row.pid_create_time, row.host)
        s.add(
            _attempt(row_id, row.attempt, launched, row.pid_create_time, status, ended_at=now, end_reason=why)
        )

    # ---- everybody else's --------------------------------------------------------------------

    def _request_stop(self, model: Model, row_id: int) -> Any:
        """Record that a stop was asked for (the owner ends ``aborted``); RunDBError when ended."""
        kind = _kind(model)
        with self.session(write=True) as s:
            won = s.execute(
                update(model)
                .where(model.id == row_id, model.status.in_(states.ACTIVE))
                .values(stop_requested_at=time.time())
                .execution_options(synchronize_session=False)
            ).rowcount
            row = s.get(model, row_id)
            if row is None:
                raise RunDBError(f"no {kind} {row_id} in {self.url}")
            if not won:
                raise RunDBError(f"{kind} {row_id} is {row.status}: nothing to abort")
            return row

    def _requeue(self, row_id: int, launcher: Owner) -> Any:
        """An ended run is queued for a new attempt, held by ``launcher`` until the trainer it starts
        claims it. Takes over from a dead owner; ``OwnerAlive`` while one lives, so of two resumes at
        once exactly one wins."""
        for _ in range(2):
            with self.session(write=True) as s:
                won = s.execute(
                    update(SqlRun)
                    .where(SqlRun.id == row_id, SqlRun.status.in_(states.sources(states.RUN, states.QUEUED)))
                    .values(
                        status=states.QUEUED,
                        pid=launcher.pid,
                        pid_create_time=launcher.create_time,
                        host=launcher.host,
                        heartbeat_at=None,
                        ended_at=None,
                        stop_requested_at=None,
                        # How the last attempt ended stays in its attempts row.
                        end_reason=None,
                        error=None,
                        traceback=None,
                        # The next attempt gets its own job (assign_ray_job); the ended one's
                        # state must not decide this queued row's liveness.
                        ray_job_id=None,
                        ray_address=None,
                    )
                    .execution_options(synchronize_session=False)
                ).rowcount
                if won:
                    message = f"by {launcher.describe()}"
                    s.add(
                        SqlEvent(
                            run_id=row_id,
                            time=time.time(),
                            level="info",
                            kind="resume_requested",
                            message=message,
                        )
                    )
                    return s.get(SqlRun, row_id)
            self._take_over_if_dead(SqlRun, row_id)
        raise RunDBError(f"run {row_id} could not be queued for resuming")

    def _hand_over(self, model: Model, row_id: int, expected: Owner | None, new: Owner) -> bool:
        """A queued row's owner becomes ``new`` (the subprocess started for it) if still ``expected``."""
        conditions = [model.id == row_id, model.status == states.QUEUED]
        if expected is not None:
            conditions += owned_by(model, expected)
        else:
            conditions.append(model.pid.is_(None))
        with self.session(write=True) as s:
            return (
                s.execute(
                    update(model)
                    .where(*conditions)
                    .values(pid=new.pid, pid_create_time=new.create_time, host=new.host)
                    .execution_options(synchronize_session=False)
                ).rowcount
                == 1
            )

    def _reap(
        self,
        model: Model,
        row_ids: Iterable[int] | None = None,
        *,
        now: float | None = None,
        exited: Owner | None = None,
        detail: str | None = None,
        traceback: str | None = None,
    ) -> list[int]:
        """End every queued/running row whose owner is dead: ``aborted`` when a stop was requested,
        else ``failed``. ``exited``: a process its parent saw exit (dead at once, no heartbeat wait),
        and what is known about its end (``detail``, e.g. the exit code and last log line; ``traceback``)."""
        now = time.time() if now is None else now
        host = liveness.this_host()
        query = select(model).where(model.status.in_(states.ACTIVE))
        if row_ids is not None:
            query = query.where(model.id.in_(list(row_ids)))
        with self.session() as s:
            seen = [
                (
                    row.id,
                    row.status,
                    _owner_of(row),
                    row.heartbeat_at,
                    row.stop_requested_at,
                    row.heartbeat_interval_s,
                    getattr(row, "ray_job_id", None),
                    getattr(row, "ray_address", None),
                )
                for row in s.scalars(query)
            ]
        reaped = []
        for row_id, status, owner, beat_at, stop_at, interval, job_id, address in seen:
            is_exited = owner is not None and owner == exited
            if job_id is not None:
                # A Ray run: its job is its owner (liveness.ray_death_reason), not a local pid.
                is_exited = False
                job_status, message = self.ray_job_status(address or "", job_id)
                reason = liveness.ray_death_reason(
                    status=status, job_id=job_id, job_status=job_status, job_message=message
                )
            else:
                reason = liveness.death_reason(
                    status=status,
                    owner=owner,
                    heartbeat_at=beat_at,
                    heartbeat_interval_s=interval,
                    now=now,
                    current_host=host,
                    exited=is_exited,
                )
            if reason is None:
                continue
            if is_exited and detail:
                reason = detail
            tb = traceback if is_exited else None
            # Only the owner we judged, and only if no beat arrived since: a live owner is never ended.
            same = [model.status == status, model.heartbeat_at.is_not_distinct_from(beat_at)]
            if stop_at is not None:
                # A trainer stopped while still starting dies of the signal before it can say
                # anything: its exit code and last log line (an import, a migration) explain nothing.
                why = (
                    "stopped while the trainer was starting"
                    if status == states.QUEUED
                    else f"stopped: {reason}"
                )
                ended = self._end(model, row_id, owner, states.ABORTED, reason=why, where=same)
            else:
                ended = self._end(model, row_id, owner, states.FAILED, error=reason, traceback=tb, where=same)
            if ended:
                reaped.append(row_id)
                logger.warning("%s %d ended: %s", _kind(model), row_id, reason)
        return reaped

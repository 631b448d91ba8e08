"""A run's state machine as the store applies it: part of ``RunStore`` (a mixin).

Claims (a new attempt), heartbeats, endings, stop requests, resumes and the reaping of dead owners,
each one compare-and-set write of ``owned.py`` following ``states.py``; plus the attempts history.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select

from trainer.core.errors import RunDBError
from trainer.rundb import liveness, rows, states
from trainer.rundb.entities import Attempt, Lease, Run
from trainer.rundb.liveness import Owner
from trainer.rundb.models import SqlAttempt, SqlRun
from trainer.rundb.owned import OwnedRows


class RunRows(OwnedRows):
    def get_run(self, run_id: int) -> Run:  # RunStore.get_run
        raise NotImplementedError

    def claim_run(
        self,
        run_id: int,
        owner: Owner | None = None,
        *,
        heartbeat_interval_s: float = liveness.DEFAULT_HEARTBEAT_INTERVAL_S,
        ray_job: str | None = None,
    ) -> Run:
        """``owner`` (this process by default) starts a new attempt: queued/ended -> running.

        A queued run is taken only by the process holding it or one it launched (this process's
        ancestors are its possible launchers); takes over from a dead owner; raises ``OwnerAlive``
        (naming it) while the owner lives. ``ray_job``: the claimant is rank 0 of that Ray job, which
        owns the run (``ray_runs``); it also takes the run over from an earlier rank 0 of the job.
        """
        self._require_training_run(run_id, "trained")
        launchers = Owner.lineage() if owner is None else []
        row = self._claim(SqlRun, run_id, owner or Owner.current(), heartbeat_interval_s, launchers, ray_job)
        return self.get_run(row.id)

    def beat(self, run_id: int, owner: Owner, attempt: int | None = None) -> bool:
        """Refresh the heartbeat; False when ``owner`` (in ``attempt``) no longer holds the run (e.g.
        it was reaped, or taken over)."""
        return self._beat(SqlRun, run_id, owner, attempt)

    def end_run(
        self,
        run_id: int,
        owner: Owner,
        status: str,
        *,
        reason: str | None = None,
        error: str | None = None,
        traceback: str | None = None,
        attempt: int | None = None,
    ) -> bool:
        """The owner ends its attempt: ``finished``, ``aborted`` (``reason``) or ``failed`` (error,
        traceback). False when it no longer holds the run (reaped, taken over)."""
        return self._end(
            SqlRun, run_id, owner, status, reason=reason, error=error, traceback=traceback, attempt=attempt
        )

    def request_resume(self, run_id: int, launcher: Owner | None = None) -> Run:
        """An ended run is queued for a new attempt, held by ``launcher`` (this process by default)
        until the trainer it starts claims it. Takes over from a dead owner; ``OwnerAlive`` while
        one lives, so of two resumes at once exactly one wins. A registered model is refused."""
        self._require_training_run(run_id, "resumed")
        return rows.to_run(self._requeue(run_id, launcher or Owner.current()))

    def _require_training_run(self, run_id: int, what: str) -> None:
        """RunDBError naming the run when it is a registered model (its kind never changes, so this
        check before the compare-and-set cannot go stale)."""
        run = self.get_run(run_id)
        if run.is_model:
            raise RunDBError(
                f"run {run_id} ({run.name}) is a model registered for evaluation, not a training run: "
                f"it cannot be {what}"
            )

    def check_lease(self, lease: Lease) -> None:
        """RunLost unless ``lease`` still holds its run (asked before writing files the run's
        successor would own, e.g. a checkpoint)."""
        with self.session(write=True) as s:
            self._fence(s, lease)

    def refuse_live_owner(self, run_id: int) -> Run:
        """The run, after ending a dead owner's attempt; ``OwnerAlive`` (naming the process) while a
        live one trains it. An early, friendly check for a would-be trainer: the guarantee is the
        claim's compare-and-set (a queued run is claimable by whoever comes first)."""
        run = self.get_run(run_id)
        if run.status == states.RUNNING:
            self._take_over_if_dead(SqlRun, run_id)
            run = self.get_run(run_id)
        return run

    def hand_over_run(self, run_id: int, expected: Owner | None, new: Owner) -> bool:
        """A queued run's owner becomes the subprocess started for it (if still ``expected``)."""
        return self._hand_over(SqlRun, run_id, expected, new)

    def request_stop(self, run_id: int) -> Run:
        """Record the user's abort (the run then ends ``aborted``); RunDBError when it is not active."""
        return rows.to_run(self._request_stop(SqlRun, run_id))

    def reap_dead_runs(
        self,
        run_ids: Iterable[int] | None = None,
        *,
        now: float | None = None,
        exited: Owner | None = None,
        detail: str | None = None,
        traceback: str | None = None,
    ) -> list[int]:
        """End queued/running runs whose owner is dead (``liveness.py``); returns their ids.

        The only writer of a dead owner's ending. ``exited``: a process its parent saw exit, with
        ``detail`` (exit code, last log line) and ``traceback`` (log tail) for its ending."""
        return self._reap(SqlRun, run_ids, now=now, exited=exited, detail=detail, traceback=traceback)

    def attempts(self, run_id: int) -> list[Attempt]:
        """Every trainer process that held the run, in order (a resumed run's history)."""
        return self.attempts_of([run_id]).get(run_id, [])

    def attempts_of(self, run_ids: Iterable[int]) -> dict[int, list[Attempt]]:
        """The attempts of several runs in one query: ``{run_id: [attempt, ...]}`` in claim order
        (a run never claimed has no entry). ``history.run_duration_s`` sums them."""
        ids = list(run_ids)
        out: dict[int, list[Attempt]] = {}
        if not ids:
            return out
        query = (
            select(SqlAttempt)
            .where(SqlAttempt.run_id.in_(ids))
            .order_by(SqlAttempt.run_id, SqlAttempt.number)
        )
        with self.session() as s:
            for row in s.scalars(query):
                out.setdefault(row.run_id, []).append(rows.to_attempt(row))
        return out

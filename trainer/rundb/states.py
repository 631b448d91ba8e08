"""The one state machine of runs and jobs. The store applies it with compare-and-set UPDATEs.

::

    queued ──claim──> running ──end──> finished | failed | aborted
      ^                                              │
      └────────── resume (new attempt) ──────────────┘  (failed | aborted only)

* ``queued``: a trainer (or evaluation) was asked for. Its owner is the process that will run it
  (the studio records the subprocess it started); nobody trains yet.
* ``running``: exactly one owner process (pid + process start time + host) holds it and beats.
* ``finished | failed | aborted``: ended. ``aborted`` is the user's stop, with a reason, not an error.
* A run that failed or was aborted can be queued again (the studio's Resume); any ended run can be
  claimed directly (``vgrpo train`` resuming from a checkpoint, e.g. with more steps): that starts a
  new *attempt* of the same run. A finished run is not re-queued: it did all it was asked, and a
  Resume would only re-save its last step and turn "finished" into whatever ends the new attempt.
  Jobs are not resumed.
* A ``running`` or ``queued`` row whose owner is dead (``liveness.py``) is ended by the reaper
  (``failed``, or ``aborted`` when a stop had been requested), after which it can be taken over.

Every status write in ``store.py`` is ``UPDATE ... WHERE id = ? AND status IN (allowed sources)``
(and, for an owner's own writes, ``AND pid = ? AND pid_create_time = ? AND host = ?``); the row
count says who won. Nothing else writes a status.
"""

from __future__ import annotations

from trainer.core.errors import RunDBError

QUEUED, RUNNING = "queued", "running"
FINISHED, FAILED, ABORTED = "finished", "failed", "aborted"
STATUSES = (QUEUED, RUNNING, FINISHED, FAILED, ABORTED)
ACTIVE = (QUEUED, RUNNING)
ENDED = (FINISHED, FAILED, ABORTED)

RUN, JOB = "run", "job"

# target status -> the statuses it may be reached from, per kind of row.
TRANSITIONS: dict[str, dict[str, tuple[str, ...]]] = {
    RUN: {
        QUEUED: (FAILED, ABORTED),  # resume requested: a new attempt is on its way
        # Claimed by a trainer (directly from ENDED: `vgrpo train` resuming). Also RUNNING -> RUNNING,
        # a new attempt, for one claimant only: rank 0 of the Ray job that owns the run, after Ray
        # restarted its workers (owned.OwnedRows._claim's ray_job); not listed, as nobody else may.
        RUNNING: (QUEUED, *ENDED),
        FINISHED: (RUNNING,),
        FAILED: ACTIVE,
        ABORTED: ACTIVE,
    },
    JOB: {
        RUNNING: (QUEUED,),
        FINISHED: (RUNNING,),
        FAILED: ACTIVE,
        ABORTED: ACTIVE,
    },
}
# Statuses a row may be created in: queued, or (runs only) finished for a model registered from outside.
INITIAL: dict[str, tuple[str, ...]] = {RUN: (QUEUED, FINISHED), JOB: (QUEUED,)}


def sources(kind: str, target: str) -> tuple[str, ...]:
    """The statuses from which a ``kind`` row may move to ``target``; RunDBError for no such move."""
    try:
        return TRANSITIONS[kind][target]
    except KeyError:
        raise RunDBError(
            f"a {kind} cannot move to status {target!r}; targets: {sorted(TRANSITIONS.get(kind, {}))}"
        ) from None


def check(kind: str, row_id: int, current: str, target: str) -> None:
    """Raise RunDBError naming the row when ``current -> target`` is not allowed."""
    if current not in sources(kind, target):
        raise RunDBError(f"{kind} {row_id} is {current}: it cannot become {target}")


def check_initial(kind: str, status: str) -> None:
    if status not in INITIAL[kind]:
        raise RunDBError(f"a new {kind} starts {' or '.join(INITIAL[kind])}, not {status!r}")


class OwnerAlive(RunDBError):
    """A run or job is held by a live process; a second owner is refused. Names that process."""


class RunLost(RunDBError):
    """A trainer's write or beat was refused: its attempt no longer holds the run (reaped after a
    stall, taken over by a resume, deleted). The trainer stops without writing anything more."""

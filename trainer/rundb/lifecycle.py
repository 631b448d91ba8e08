"""A run's (or job's) lifetime as its owner process sees it: claim it, beat, and always write how it ended.

    with run_lifecycle(store, run.id, heartbeat_interval_s=5.0) as handle:
        train(..., lease=handle.lease)       # every write carries the lease
        handle.raise_if_lost()               # at each step boundary

claims the run for this process (a new attempt; refused with ``OwnerAlive`` while another live
process holds it) and ends it ``finished`` when the block returns, ``aborted`` (with the reason, not
an error) on Ctrl-C or SIGTERM (the studio's abort), and ``failed`` with the traceback on any other
exception, which is then re-raised. Every write is a compare-and-set on this process's identity and
attempt, so a process that lost the run (reaped after a stall, taken over) never overwrites its new
owner: its writes are refused (``RunLost``), and the handle says it lost the run (a refused beat or
write marks it), so the body stops at its next check. A process killed outright (SIGKILL, OOM
killer, power) cannot write anything: the reaper ends it (``liveness.py``).

``job_lifecycle`` does the same for a job and lets the body report progress and a result.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from trainer.core.errors import RunDBError
from trainer.rundb import states
from trainer.rundb.entities import Job, Lease, Run
from trainer.rundb.liveness import DEFAULT_HEARTBEAT_INTERVAL_S, Owner
from trainer.rundb.store import RunStore

logger = logging.getLogger(__name__)


class RunAborted(BaseException):
    """Raised in the main thread on SIGTERM inside ``run_lifecycle``; a BaseException so that a
    broad ``except Exception`` in training code does not swallow the abort."""


class Heartbeat:
    """A daemon thread calling ``beat()`` every ``interval_s`` seconds (False: we lost the row).

    ``stop_requested()`` is asked after each beat; the first time it says yes, ``on_stop()`` runs:
    by default this process sends itself SIGTERM, so an abort recorded in the database (from another
    host, or before the trainer had a pid anyone could signal) stops it the same way the studio's
    signal does. A trainer that cannot take a signal (a Ray worker trains in a thread of its actor,
    whose SIGTERM ends the actor) passes its own stop. ``on_lost()`` is called once, the first time a
    beat finds the row no longer held."""

    def __init__(
        self,
        beat: Callable[[], bool],
        label: str,
        interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S,
        stop_requested: Callable[[], bool] | None = None,
        on_lost: Callable[[], None] | None = None,
        on_stop: Callable[[], None] | None = None,
    ) -> None:
        if interval_s <= 0:
            raise RunDBError(f"{label}: heartbeat interval must be > 0 s, got {interval_s}")
        self.beat = beat
        self.label = label
        self.interval_s = interval_s
        self.stop_requested = stop_requested
        self.on_lost = on_lost
        self.on_stop = on_stop or (lambda: os.kill(os.getpid(), signal.SIGTERM))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"rundb-heartbeat-{label}", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        warned = signalled = False
        while not self._stop.wait(self.interval_s):
            try:
                held = self.beat()
                if held and not signalled and self.stop_requested is not None and self.stop_requested():
                    signalled = True
                    logger.warning("%s: stop requested in the run database", self.label)
                    self.on_stop()
            except RunDBError as exc:
                # A missed beat is survivable (the reaper tolerates one); keep trying.
                logger.warning("%s: heartbeat failed: %s", self.label, exc)
                continue
            if not held and not warned:
                warned = True
                logger.warning("%s is no longer held by this process in the run database", self.label)
                if self.on_lost is not None:
                    self.on_lost()


class _SigtermAbort:
    """The SIGTERM handler of an owned block: raises RunAborted once it is armed (inside the
    block's ``try``), remembers a SIGTERM that comes before (during the claim) and raises it when
    armed, and ignores a second one (the studio's signal and the heartbeat's, both for one abort,
    must not interrupt the unwinding that records the ending)."""

    def __init__(self) -> None:
        self.armed = False
        self.pending: int | None = None
        self.fired = False

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        if self.fired:
            logger.info("%s again: already stopping", signal.Signals(signum).name)
            return
        if not self.armed:
            self.pending = signum
            return
        self._fire(signum)

    def arm(self) -> None:
        self.armed = True
        if self.pending is not None and not self.fired:
            self._fire(self.pending)

    def _fire(self, signum: int) -> None:
        self.fired = True
        raise RunAborted(f"stopped by {signal.Signals(signum).name}")


@dataclass(frozen=True)
class _Ending:
    status: str
    reason: str | None = None
    error: str | None = None
    traceback: str | None = None


@contextmanager
def _owned(
    label: str,
    claim: Callable[[], Any],
    beat: Callable[[], bool],
    end: Callable[[Any, _Ending], bool],
    stop_requested: Callable[[], bool],
    *,
    heartbeat_interval_s: float,
    handle_sigterm: bool,
    on_lost: Callable[[Any], None] | None = None,
    on_stop: Callable[[], None] | None = None,
) -> Iterator[Any]:
    """Claim (``claim()``'s value is yielded), beat while the block runs, then write how it ended
    through ``end(claimed, ending)``.

    The SIGTERM handler is in place before the claim and armed inside the ``try``: once the claim
    shows the row ``running`` a user may abort at once, and a signal in between used to kill the
    process with nothing recorded (the supervisor then said "exited with code -15", not the abort)."""
    # Signal handlers can only be set from the main thread.
    use_signal = handle_sigterm and threading.current_thread() is threading.main_thread()
    on_sigterm = _SigtermAbort()
    previous = signal.signal(signal.SIGTERM, on_sigterm) if use_signal else None
    try:
        claimed = claim()
        lost = None if on_lost is None else (lambda: on_lost(claimed))
        heartbeat = Heartbeat(beat, label, heartbeat_interval_s, stop_requested, lost, on_stop).start()
    except BaseException:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        raise
    ending = _Ending(states.FAILED)
    try:
        # A SIGTERM that came during the claim raises RunAborted here, inside the try.
        on_sigterm.arm()
        yield claimed
        ending = _Ending(states.FINISHED)
    except (KeyboardInterrupt, RunAborted) as exc:
        ending = _Ending(states.ABORTED, reason=str(exc) or type(exc).__name__)
        raise
    except SystemExit as exc:
        if exc.code in (None, 0):
            ending = _Ending(states.FINISHED)
        else:
            ending = _Ending(states.FAILED, error=f"SystemExit: {exc.code}", traceback=traceback.format_exc())
        raise
    except BaseException as exc:
        ending = _Ending(
            states.FAILED, error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc()
        )
        raise
    finally:
        heartbeat.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        try:
            if not end(claimed, ending):
                logger.warning(
                    "%s: not recorded as %s: this process no longer holds it", label, ending.status
                )
        except RunDBError:
            # Never hide the real error behind a bookkeeping one.
            if ending.status != states.FINISHED:
                logger.exception("%s: could not record status %s", label, ending.status)
            else:
                raise


class RunHandle:
    """What an owned run's body holds: the run as claimed, the lease every write of it carries, and
    whether this process lost the run (a beat or a fenced write was refused). Thread-safe: the
    heartbeat and the metrics writer mark it, the training loop asks."""

    def __init__(self, run: Run, lease: Lease) -> None:
        self.run = run
        self.lease = lease
        self._lost = threading.Event()
        self._reason = ""

    def lose(self, reason: str) -> None:
        if not self._lost.is_set():
            self._reason = reason
            self._lost.set()

    @property
    def is_lost(self) -> bool:
        return self._lost.is_set()

    def raise_if_lost(self) -> None:
        if self._lost.is_set():
            raise states.RunLost(f"{self.lease.describe()} lost the run: {self._reason}; stopping")


@contextmanager
def run_lifecycle(
    store: RunStore,
    run_id: int,
    *,
    heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S,
    handle_sigterm: bool = True,
    ray_job: str | None = None,
    on_stop: Callable[[], None] | None = None,
) -> Iterator[RunHandle]:
    """Claim the run for this process (a new attempt) and beat; on exit end it finished, aborted or failed.

    ``ray_job``: this process is rank 0 of the Ray job that owns the run (``RunStore.claim_run``).
    ``on_stop``: what a stop request found in the database does (default: SIGTERM to this process)."""
    owner = Owner.current()
    claimed: list[Lease] = []  # set once the claim won: the beats match its attempt

    def claim() -> RunHandle:
        run = store.claim_run(run_id, heartbeat_interval_s=heartbeat_interval_s, ray_job=ray_job)
        claimed.append(Lease(run_id, run.attempt, owner))
        return RunHandle(run, claimed[0])

    def end(handle: RunHandle, e: _Ending) -> bool:
        return store.end_run(
            run_id,
            owner,
            e.status,
            reason=e.reason,
            error=e.error,
            traceback=e.traceback,
            attempt=handle.lease.attempt,
        )

    def lost(handle: RunHandle) -> None:
        handle.lose("the run database says another process holds it now, or that it ended")

    with _owned(
        f"run {run_id}",
        claim,
        lambda: store.beat(run_id, owner, claimed[0].attempt),
        end,
        lambda: store.get_run(run_id).stop_requested_at is not None,
        heartbeat_interval_s=heartbeat_interval_s,
        handle_sigterm=handle_sigterm,
        on_lost=lost,
        on_stop=on_stop,
    ) as handle:
        yield handle


@dataclass
class JobHandle:
    """What a job's body gets: the job, its owner, progress reports and the result to record."""

    store: RunStore
    job: Job
    owner: Owner
    result: dict[str, Any] = field(default_factory=dict)

    def progress(self, done: int, total: int | None = None) -> None:
        self.store.set_job_progress(self.job.id, self.owner, done, total)

    def stop_requested(self) -> bool:
        return self.store.get_job(self.job.id).stop_requested_at is not None


@contextmanager
def job_lifecycle(
    store: RunStore,
    job_id: int,
    *,
    heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S,
    handle_sigterm: bool = True,
) -> Iterator[JobHandle]:
    """Claim the job and beat; on exit end it (``finished`` with ``handle.result``), aborted or failed."""
    owner = Owner.current()

    def claim() -> JobHandle:
        job = store.claim_job(job_id, owner, heartbeat_interval_s=heartbeat_interval_s)
        return JobHandle(store, job, owner)

    def end(handle: JobHandle, e: _Ending) -> bool:
        result: Mapping[str, Any] | None = handle.result if e.status == states.FINISHED else None
        return store.end_job(
            job_id, owner, e.status, result=result, reason=e.reason, error=e.error, traceback=e.traceback
        )

    with _owned(
        f"job {job_id}",
        claim,
        lambda: store.beat_job(job_id, owner),
        end,
        lambda: store.get_job(job_id).stop_requested_at is not None,
        heartbeat_interval_s=heartbeat_interval_s,
        handle_sigterm=handle_sigterm,
    ) as handle:
        yield handle

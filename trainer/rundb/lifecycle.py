"""A run's (or job's) lifetime as its owner process sees it: claim it, beat, and always write how it ended.

    with run_lifecycle(store, run.id, heartbeat_interval_s=5.0):
        train(...)

claims the run for this process (a new attempt; refused with ``OwnerAlive`` while another live
process holds it) and ends it ``finished`` when the block returns, ``aborted`` (with the reason, not
an error) on Ctrl-C or SIGTERM (the studio's abort), and ``failed`` with the traceback on any other
exception, which is then re-raised. Every write is a compare-and-set on this process's identity, so
a process that lost the run (reaped, taken over) never overwrites its new owner. A process killed
outright (SIGKILL, OOM killer, power) cannot write anything: the reaper ends it (``liveness.py``).

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
from trainer.rundb.entities import Job, Run
from trainer.rundb.liveness import DEFAULT_HEARTBEAT_INTERVAL_S, Owner
from trainer.rundb.store import RunStore

logger = logging.getLogger(__name__)


class RunAborted(BaseException):
    """Raised in the main thread on SIGTERM inside ``run_lifecycle``; a BaseException so that a
    broad ``except Exception`` in training code does not swallow the abort."""


class Heartbeat:
    """A daemon thread calling ``beat()`` every ``interval_s`` seconds (False: we lost the row).

    ``stop_requested()`` is asked after each beat; the first time it says yes, this process sends
    itself SIGTERM, so an abort recorded in the database (from another host, or before the trainer
    had a pid anyone could signal) stops it the same way the studio's signal does."""

    def __init__(
        self,
        beat: Callable[[], bool],
        label: str,
        interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S,
        stop_requested: Callable[[], bool] | None = None,
    ) -> None:
        if interval_s <= 0:
            raise RunDBError(f"{label}: heartbeat interval must be > 0 s, got {interval_s}")
        self.beat = beat
        self.label = label
        self.interval_s = interval_s
        self.stop_requested = stop_requested
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
                    os.kill(os.getpid(), signal.SIGTERM)
            except RunDBError as exc:
                # A missed beat is survivable (the reaper tolerates one); keep trying.
                logger.warning("%s: heartbeat failed: %s", self.label, exc)
                continue
            if not held and not warned:
                warned = True
                logger.warning("%s is no longer held by this process in the run database", self.label)


def _abort_once() -> Callable[[int, FrameType | None], None]:
    """A SIGTERM handler raising RunAborted once: a second SIGTERM (the studio's signal and the
    heartbeat's, both for one abort) must not interrupt the unwinding that records the ending."""
    fired: list[int] = []

    def handler(signum: int, _frame: FrameType | None) -> None:
        if fired:
            logger.info("%s again: already stopping", signal.Signals(signum).name)
            return
        fired.append(signum)
        raise RunAborted(f"stopped by {signal.Signals(signum).name}")

    return handler


@dataclass(frozen=True)
class _Ending:
    status: str
    reason: str | None = None
    error: str | None = None
    traceback: str | None = None


@contextmanager
def _owned(
    label: str,
    beat: Callable[[], bool],
    end: Callable[[_Ending], bool],
    stop_requested: Callable[[], bool],
    *,
    heartbeat_interval_s: float,
    handle_sigterm: bool,
) -> Iterator[None]:
    """Beat while the block runs; then write how it ended through ``end`` (after a claim)."""
    heartbeat = Heartbeat(beat, label, heartbeat_interval_s, stop_requested).start()
    previous = None
    if handle_sigterm and threading.current_thread() is threading.main_thread():
        # Signal handlers can only be set from the main thread.
        previous = signal.signal(signal.SIGTERM, _abort_once())
    ending = _Ending(states.FAILED)
    try:
        yield
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
            if not end(ending):
                logger.warning(
                    "%s: not recorded as %s: this process no longer holds it", label, ending.status
                )
        except RunDBError:
            # Never hide the real error behind a bookkeeping one.
            if ending.status != states.FINISHED:
                logger.exception("%s: could not record status %s", label, ending.status)
            else:
                raise


@contextmanager
def run_lifecycle(
    store: RunStore,
    run_id: int,
    *,
    heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S,
    handle_sigterm: bool = True,
) -> Iterator[Run]:
    """Claim the run for this process (a new attempt) and beat; on exit end it finished, aborted or failed."""
    owner = Owner.current()
    run = store.claim_run(run_id, owner, heartbeat_interval_s=heartbeat_interval_s)

    def end(e: _Ending) -> bool:
        return store.end_run(run_id, owner, e.status, reason=e.reason, error=e.error, traceback=e.traceback)

    with _owned(
        f"run {run_id}",
        lambda: store.beat(run_id, owner),
        end,
        lambda: store.get_run(run_id).stop_requested_at is not None,
        heartbeat_interval_s=heartbeat_interval_s,
        handle_sigterm=handle_sigterm,
    ):
        yield run


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
    handle = JobHandle(
        store, store.claim_job(job_id, owner, heartbeat_interval_s=heartbeat_interval_s), owner
    )

    def end(e: _Ending) -> bool:
        result: Mapping[str, Any] | None = handle.result if e.status == states.FINISHED else None
        return store.end_job(
            job_id, owner, e.status, result=result, reason=e.reason, error=e.error, traceback=e.traceback
        )

    with _owned(
        f"job {job_id}",
        lambda: store.beat_job(job_id, owner),
        end,
        lambda: store.get_job(job_id).stop_requested_at is not None,
        heartbeat_interval_s=heartbeat_interval_s,
        handle_sigterm=handle_sigterm,
    ):
        yield handle

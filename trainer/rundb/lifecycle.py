"""A run's lifetime as the trainer sees it: mark it running, beat, and always write how it ended.

    with run_lifecycle(store, run.id, heartbeat_interval_s=5.0):
        train(...)

ends the run ``finished`` when the block returns, ``aborted`` on Ctrl-C or SIGTERM (the studio's
abort), and ``failed`` with the traceback on any other exception, which is then re-raised. A process
killed outright (SIGKILL, OOM killer, power) cannot write anything: its heartbeat stops and the next
reader marks it failed (``liveness.py``).
"""

from __future__ import annotations

import logging
import signal
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from trainer.errors import RunDBError
from trainer.rundb.entities import Run
from trainer.rundb.liveness import DEFAULT_HEARTBEAT_INTERVAL_S
from trainer.rundb.store import RunStore

logger = logging.getLogger(__name__)


class RunAborted(BaseException):
    """Raised in the main thread on SIGTERM inside ``run_lifecycle``; a BaseException so that a
    broad ``except Exception`` in training code does not swallow the abort."""


class Heartbeat:
    """A daemon thread refreshing the run's heartbeat every ``interval_s`` seconds."""

    def __init__(
        self, store: RunStore, run_id: int, interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S
    ) -> None:
        if interval_s <= 0:
            raise RunDBError(f"run {run_id}: heartbeat interval must be > 0 s, got {interval_s}")
        self.store = store
        self.run_id = run_id
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"rundb-heartbeat-{run_id}", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        warned = False
        while not self._stop.wait(self.interval_s):
            try:
                alive = self.store.beat(self.run_id)
            except RunDBError as exc:
                # A missed beat is survivable (the reader tolerates one); keep trying.
                logger.warning("run %d: heartbeat failed: %s", self.run_id, exc)
                continue
            if not alive and not warned:
                warned = True
                logger.warning("run %d is no longer 'running' in the run database", self.run_id)


def _raise_aborted(signum: int, _frame: FrameType | None) -> None:
    raise RunAborted(f"received signal {signal.Signals(signum).name}")


@contextmanager
def run_lifecycle(
    store: RunStore,
    run_id: int,
    *,
    heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S,
    handle_sigterm: bool = True,
) -> Iterator[Run]:
    """Mark the run running with a heartbeat; on exit mark it finished, aborted or failed(traceback)."""
    heartbeat = Heartbeat(store, run_id, heartbeat_interval_s)
    run = store.mark_running(run_id, heartbeat_interval_s=heartbeat_interval_s)
    heartbeat.start()
    # Signal handlers can only be set from the main thread.
    previous = None
    if handle_sigterm and threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_aborted)
    status, error, trace = "failed", None, None
    try:
        yield run
        status = "finished"
    except (KeyboardInterrupt, RunAborted) as exc:
        status, error = "aborted", f"aborted: {str(exc) or type(exc).__name__}"
        raise
    except SystemExit as exc:
        if exc.code in (None, 0):
            status = "finished"
        else:
            error, trace = f"SystemExit: {exc.code}", traceback.format_exc()
        raise
    except BaseException as exc:
        error, trace = f"{type(exc).__name__}: {exc}", traceback.format_exc()
        raise
    finally:
        heartbeat.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        try:
            store.finish_run(run_id, status, error=error, traceback=trace)
        except RunDBError:
            # Never hide the training error behind a bookkeeping one.
            if status != "finished":
                logger.exception("run %d: could not record status %s", run_id, status)
            else:
                raise

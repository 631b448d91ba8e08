"""The trainer's side of the run database: buffered metric and rollout writes off the training thread.

``log_metrics``/``log_rollouts`` only put the rows on a bounded queue (microseconds). A background
thread drains everything queued so far and writes it in one transaction, so a step costs one commit
however many metrics it logs, and a slow disk or a busy database never stalls the training step
(up to the queue bound; past it, rows are dropped with a warning rather than blocking training).

    with MetricsWriter(store, run.id, lease=handle.lease, on_lost=handle.lose) as writer:
        writer.log_metrics(step, {KL_DIV: 0.01, LOSS: 0.3})
        writer.log_rollouts([Rollout(step=step, ...), ...])
    # leaving the block flushes and stops the thread

With a lease, every batch is fenced (``RunStore.write_rows``): once one is refused (the attempt lost
the run) nothing more is written, and ``on_lost`` tells the trainer, which stops at its next step.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from trainer.core.errors import RunDBError
from trainer.rundb.entities import Lease, MetricPoint, Rollout
from trainer.rundb.states import RunLost
from trainer.rundb.store import RunStore

logger = logging.getLogger(__name__)

_STOP = object()


class MetricsWriter:
    """Buffered, idempotent writes of one run's metrics and rollouts.

    ``max_pending``: queued items (one per ``log_*`` call) before ``log_*`` waits; ``put_timeout_s``:
    how long it waits for room before dropping the item; ``max_batch_rows``: rows per transaction;
    ``lease``: the trainer's hold on the run, carried by every write; ``on_lost(reason)``: called
    once when a write is refused because that lease no longer holds the run.
    """

    def __init__(
        self,
        store: RunStore,
        run_id: int,
        *,
        max_pending: int = 1024,
        put_timeout_s: float = 1.0,
        max_batch_rows: int = 5000,
        lease: Lease | None = None,
        on_lost: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.lease = lease
        self.on_lost = on_lost
        self.lost: str | None = None  # why the lease's writes were refused; nothing is written after
        self.put_timeout_s = put_timeout_s
        self.max_batch_rows = max_batch_rows
        self.dropped_items = 0
        self.written_rows = 0
        self._error: RunDBError | None = None
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max_pending)
        self._thread = threading.Thread(target=self._loop, name=f"rundb-writer-{run_id}", daemon=True)
        self._closed = False
        self._thread.start()

    # ---- training thread -----------------------------------------------------------------------

    def log_metrics(self, step: int, values: Mapping[str, float], wall_time: float | None = None) -> None:
        """Queue one step's metrics; a re-logged (step, name) overwrites the stored point."""
        wall = time.time() if wall_time is None else wall_time
        self._put([MetricPoint(step, name, float(value), wall) for name, value in values.items()])

    def log_rollouts(self, rollouts: Sequence[Rollout]) -> None:
        self._put(list(rollouts))

    def flush(self, timeout_s: float | None = 60.0) -> None:
        """Wait until everything queued so far is written; raises the first write error."""
        done = threading.Event()
        self._put(done, drop=False)
        if not done.wait(timeout_s):
            raise RunDBError(f"run {self.run_id}: metrics writer did not flush within {timeout_s} s")
        self._raise_error()

    def close(self) -> None:
        """Flush, stop the thread, and raise the first write error if there was one."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join()
        if self.dropped_items:
            logger.warning("run %d: %d metric/rollout batches were dropped", self.run_id, self.dropped_items)
        self._raise_error()

    def __enter__(self) -> MetricsWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        try:
            self.close()
        except RunDBError:
            if exc_type is None:
                raise
            logger.exception("run %d: metrics writer failed while another error was raised", self.run_id)

    def _put(self, item: object, drop: bool = True) -> None:
        if self._closed:
            raise RunDBError(f"run {self.run_id}: metrics writer is closed")
        if not self._thread.is_alive():
            raise RunDBError(f"run {self.run_id}: metrics writer thread is not running")
        try:
            self._queue.put(item, timeout=self.put_timeout_s if drop else None)
        except queue.Full:
            self.dropped_items += 1
            logger.warning("run %d: run database is not keeping up; dropped one batch of rows", self.run_id)

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    # ---- writer thread -------------------------------------------------------------------------

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            batch = [self._queue.get()]
            # Take whatever else is already queued: one transaction for all of it.
            while len(batch) < self.max_batch_rows:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            metrics: list[MetricPoint] = []
            rollouts: list[Rollout] = []
            waiters: list[threading.Event] = []
            for item in batch:
                if item is _STOP:
                    stopping = True
                elif isinstance(item, threading.Event):
                    waiters.append(item)
                elif item and isinstance(item[0], MetricPoint):  # type: ignore[index]
                    metrics.extend(item)  # type: ignore[arg-type]
                else:
                    rollouts.extend(item)  # type: ignore[arg-type]
            self._write(metrics, rollouts)
            for waiter in waiters:
                waiter.set()

    def _write(self, metrics: list[MetricPoint], rollouts: list[Rollout]) -> None:
        if not metrics and not rollouts:
            return
        if self.lost is not None:
            self.dropped_items += 1
            return
        try:
            self.store.write_rows(self.run_id, metrics, rollouts, lease=self.lease)
            self.written_rows += len(metrics) + len(rollouts)
        except RunLost as exc:
            # Not an error to raise at close: the trainer stops on on_lost at its next step.
            logger.warning("run %d: %s; writing nothing more", self.run_id, exc)
            self.lost = str(exc)
            if self.on_lost is not None:
                self.on_lost(self.lost)
        except RunDBError as exc:
            # Keep the thread alive (training goes on); the error surfaces on flush/close.
            logger.error(
                "run %d: could not write %d rows: %s", self.run_id, len(metrics) + len(rollouts), exc
            )
            if self._error is None:
                self._error = exc

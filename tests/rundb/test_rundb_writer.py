"""MetricsWriter: buffered background writes, flush on close, errors surfaced, bounded queue."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest
from rundb_helpers import STEP_METRICS, metrics_for, rollouts_for

from trainer.core.errors import RunDBError
from trainer.core.metrics_keys import KL_DIV
from trainer.rundb import MetricPoint, MetricsWriter, Rollout, RunStore


def test_close_flushes_everything(store: RunStore) -> None:
    run = store.create_run("r")
    with MetricsWriter(store, run.id) as writer:
        for step in range(50):
            writer.log_metrics(step, metrics_for(step), wall_time=float(step))
            writer.log_rollouts(rollouts_for(step))
    assert writer.written_rows == 50 * 12 + 50 * 2
    assert store.count_rows(run.id) == {"metrics": 600, "rollouts": 100}
    series = store.metrics_since(run.id)[STEP_METRICS[3]]
    assert series.steps == tuple(range(50))
    assert series.values == pytest.approx(tuple(step + 0.03 for step in range(50)), abs=1e-12)


def test_flush_makes_rows_visible_and_relogs_overwrite(store: RunStore) -> None:
    run = store.create_run("r")
    writer = MetricsWriter(store, run.id)
    writer.log_metrics(4, {KL_DIV: 0.5}, wall_time=1.0)
    writer.flush()
    assert store.metrics_since(run.id)[KL_DIV].values == (0.5,)
    writer.log_metrics(4, {KL_DIV: 0.75}, wall_time=2.0)
    writer.close()
    assert store.metrics_since(run.id)[KL_DIV].values == (0.75,)
    assert store.count_rows(run.id)["metrics"] == 1
    with pytest.raises(RunDBError, match="metrics writer is closed"):
        writer.log_metrics(5, {KL_DIV: 1.0})


def test_write_errors_surface_on_flush_and_close(store: RunStore) -> None:
    writer = MetricsWriter(store, run_id=12345)  # no such run: the foreign key refuses the rows
    writer.log_metrics(1, {KL_DIV: 0.1})
    with pytest.raises(RunDBError, match="FOREIGN KEY constraint failed|violates foreign key constraint"):
        writer.flush()
    with pytest.raises(RunDBError, match="FOREIGN KEY constraint failed|violates foreign key constraint"):
        writer.close()


class _StuckStore:
    """A store whose first write hangs until released: the database 'is not keeping up'."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.batches: list[tuple[int, int]] = []

    def write_rows(
        self, run_id: int, metrics: Sequence[MetricPoint], rollouts: Sequence[Rollout], lease: object = None
    ) -> None:
        self.entered.set()
        assert self.release.wait(30)
        self.batches.append((len(metrics), len(rollouts)))


def test_full_queue_drops_instead_of_blocking_training() -> None:
    stuck = _StuckStore()
    writer = MetricsWriter(stuck, run_id=1, max_pending=2, put_timeout_s=0.01)  # type: ignore[arg-type]
    writer.log_metrics(0, {KL_DIV: 0.0})
    assert stuck.entered.wait(30)  # the thread now holds step 0 and is stuck writing it
    for step in range(1, 6):  # two fit in the queue, three are dropped
        writer.log_metrics(step, {KL_DIV: float(step)})
    assert writer.dropped_items == 3
    stuck.release.set()
    writer.close()
    # Step 0 alone, then the two queued steps together in one transaction.
    assert stuck.batches == [(1, 0), (2, 0)]

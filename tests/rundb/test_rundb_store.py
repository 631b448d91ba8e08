"""The store's reads and writes: idempotent upserts, live-plot queries, rollouts, deletes."""

from __future__ import annotations

import math
from dataclasses import FrozenInstanceError

import pytest
from rundb_helpers import metrics_for, rollouts_for

from trainer.core.errors import RunDBError
from trainer.core.metrics_keys import KL_DIV, LOSS, TOTAL_REWARD
from trainer.rundb import MetricSeries, Owner, Run, RunStore


def test_create_run_returns_frozen_dataclass_with_config(store: RunStore) -> None:
    run = store.create_run(
        "motion-grpo", config={"grpo_beta": 0.1}, dataset_fingerprints={"train": "sha256:ab"}, output_dir="/o"
    )
    assert isinstance(run, Run)
    assert (run.name, run.status, run.output_dir, run.started_at) == ("motion-grpo", "queued", "/o", None)
    with pytest.raises(FrozenInstanceError):
        run.status = "running"  # type: ignore[misc]
    config = store.get_config(run.id)
    assert config is not None
    assert (dict(config.config), dict(config.dataset_fingerprints)) == (
        {"grpo_beta": 0.1},
        {"train": "sha256:ab"},
    )
    store.set_config(run.id, {"grpo_beta": 0.2})
    assert dict(store.get_config(run.id).config) == {"grpo_beta": 0.2}  # type: ignore[union-attr]


def test_metric_upsert_is_idempotent_on_run_step_name(store: RunStore) -> None:
    run = store.create_run("r")
    store.log_metrics(run.id, 1, {KL_DIV: 0.1, LOSS: 2.0}, wall_time=10.0)
    store.log_metrics(run.id, 2, {KL_DIV: 0.2}, wall_time=11.0)
    # A resumed run logs step 2 again: the point is replaced, not added.
    store.log_metrics(run.id, 2, {KL_DIV: 0.25}, wall_time=12.0)
    assert store.count_rows(run.id) == {"metrics": 3, "rollouts": 0}
    assert store.metrics_since(run.id)[KL_DIV] == MetricSeries(KL_DIV, (1, 2), (0.1, 0.25), (10.0, 12.0))


def test_metrics_since_returns_only_newer_steps_by_name(store: RunStore) -> None:
    run = store.create_run("r")
    for step in range(1, 6):
        store.log_metrics(run.id, step, {KL_DIV: step / 10, LOSS: float(step)}, wall_time=100.0 + step)
    since = store.metrics_since(run.id, after_step=3)
    assert set(since) == {KL_DIV, LOSS}
    assert since[KL_DIV].steps == (4, 5)
    assert since[KL_DIV].values == pytest.approx((0.4, 0.5), abs=1e-12)
    assert since[LOSS].last_step == 5
    assert set(store.metrics_since(run.id, after_step=3, names=[LOSS])) == {LOSS}
    assert store.metrics_since(run.id, after_step=5) == {}


def test_nan_metric_reads_back_as_nan(store: RunStore) -> None:
    run = store.create_run("r")
    store.log_metrics(run.id, 1, {LOSS: float("nan")}, wall_time=1.0)
    assert math.isnan(store.metrics_since(run.id)[LOSS].values[0])
    assert math.isnan(store.latest_metrics([run.id])[run.id][LOSS].value)


def test_compare_and_latest_metrics_across_runs(store: RunStore) -> None:
    a, b, c = store.create_run("a"), store.create_run("b"), store.create_run("c")
    for step in (1, 2, 3):
        store.log_metrics(a.id, step, {TOTAL_REWARD: step * 1.0, LOSS: -step * 1.0}, wall_time=1.0)
    store.log_metrics(b.id, 5, {TOTAL_REWARD: 0.5}, wall_time=1.0)
    compared = store.compare_runs([a.id, b.id, c.id], [TOTAL_REWARD])
    assert set(compared) == {a.id, b.id}
    assert compared[a.id][TOTAL_REWARD].values == (1.0, 2.0, 3.0)
    assert compared[b.id][TOTAL_REWARD].steps == (5,)
    latest = store.latest_metrics()
    assert {name: (p.step, p.value) for name, p in latest[a.id].items()} == {
        TOTAL_REWARD: (3, 3.0),
        LOSS: (3, -3.0),
    }
    assert latest[b.id][TOTAL_REWARD].value == 0.5
    assert c.id not in latest


def test_rollouts_upsert_and_steps(store: RunStore) -> None:
    run = store.create_run("r")
    store.log_rollouts(run.id, rollouts_for(3) + rollouts_for(7))
    store.log_rollouts(run.id, rollouts_for(7))  # re-logged step: replaced, not doubled
    assert store.rollout_steps(run.id) == [3, 7]
    at_7 = store.rollouts(run.id, 7)
    assert at_7 == rollouts_for(7)
    assert [(r.group_index, r.total_reward, r.advantage) for r in at_7] == [(0, 0.3, -0.5), (1, 1.0, 0.5)]
    assert dict(at_7[0].options) == {"A": "left", "B": "right"}
    assert store.count_rows(run.id)["rollouts"] == 4


def test_resolve_run_by_id_or_unique_name(store: RunStore) -> None:
    first = store.create_run("alpha")
    store.create_run("beta")
    store.create_run("beta")
    assert store.resolve_run(str(first.id)).name == "alpha"
    assert store.resolve_run("alpha").id == first.id
    with pytest.raises(RunDBError, match=r"run name 'beta' is ambiguous \(runs 2, 3\)"):
        store.resolve_run("beta")
    with pytest.raises(RunDBError, match="no run with id or name 'gamma'"):
        store.resolve_run("gamma")


def test_delete_run_removes_all_its_rows_and_nothing_else(store: RunStore) -> None:
    keep, gone = store.create_run("keep"), store.create_run("gone", config={"x": 1})
    resumed = store.create_run("resumed", resumed_from=gone.id)
    with pytest.raises(
        RunDBError, match=f"run {gone.id} is queued: abort it, or let it end, before deleting"
    ):
        store.delete_run(gone.id)
    store.claim_run(gone.id)
    with pytest.raises(RunDBError, match=f"run {gone.id} is running: abort it"):
        store.delete_run(gone.id)
    store.end_run(gone.id, Owner.current(), "aborted", reason="stopped")
    for run in (keep, gone):
        store.log_metrics(run.id, 1, metrics_for(1))
        store.log_rollouts(run.id, rollouts_for(1))
    ckpt = store.add_checkpoint(gone.id, 1, "/ckpt/1", {LOSS: 1.0})
    store.add_evaluation(
        ckpt.id, "val", accuracy=0.5, format_rate=0.9, results=[{"id": "q1", "correct": True}]
    )
    deleted = store.delete_run(gone.id)
    assert (deleted.runs, deleted.metrics, deleted.rollouts, deleted.checkpoints) == (1, 12, 2, 1)
    assert deleted.events == 3  # started, aborted, the checkpoint
    assert [r.name for r in store.list_runs()] == ["resumed", "keep"]
    assert store.get_run(resumed.id).resumed_from is None
    assert store.count_rows(keep.id) == {"metrics": 12, "rollouts": 2}
    assert store.get_config(gone.id) is None
    with pytest.raises(RunDBError, match=f"no run {gone.id}"):
        store.get_run(gone.id)


def test_checkpoints_evaluations_and_events(store: RunStore) -> None:
    run = store.create_run("r")
    ckpt = store.add_checkpoint(run.id, 50, "/out/checkpoint-50", {TOTAL_REWARD: 0.8})
    evaluation = store.add_evaluation(
        ckpt.id, "synthetic_motion", accuracy=0.625, format_rate=1.0, results=[{"id": "q1", "correct": False}]
    )
    assert [(c.step, c.path, dict(c.metrics)) for c in store.checkpoints(run.id)] == [
        (50, "/out/checkpoint-50", {TOTAL_REWARD: 0.8})
    ]
    assert store.evaluations(run.id) == [evaluation]
    assert evaluation.results == ({"id": "q1", "correct": False},)
    store.add_event(run.id, "warning", "reward std is zero in 3 of 4 groups", level="warning")
    assert [(e.kind, e.level) for e in store.events(run.id)] == [
        ("checkpoint", "info"),
        ("warning", "warning"),
    ]
    with pytest.raises(RunDBError, match="level 'loud' not in"):
        store.add_event(run.id, "x", "y", level="loud")
    with pytest.raises(RunDBError, match="no checkpoint 999"):
        store.add_evaluation(999, "val", accuracy=0.0, format_rate=0.0)


def test_end_run_rejects_a_non_final_status(store: RunStore) -> None:
    run = store.create_run("r")
    with pytest.raises(RunDBError, match="cannot end with status 'running'"):
        store.end_run(run.id, Owner.current(), "running")

"""Fencing and compare-and-set races: a trainer that lost its run writes nothing more into it; a
queued run is claimed only by its launcher (or what it launched); a run is deleted only once ended."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable

import pytest
from rundb_helpers import metrics_for, rollouts_for, wait_for

from trainer.core.errors import RunDBError
from trainer.rundb import (
    Lease,
    MetricPoint,
    MetricsWriter,
    Owner,
    OwnerAlive,
    RunLost,
    RunStore,
    run_lifecycle,
)


def _points(step: int) -> list[MetricPoint]:
    return [MetricPoint(step, name, value, float(step)) for name, value in metrics_for(step).items()]


def _stalled_elsewhere(store: RunStore, run_id: int) -> Lease:
    """The run claimed by a trainer on another host whose last beat is long past (a SIGSTOPped
    process, as another machine sees it): the claim's lease."""
    elsewhere = Owner(pid=4242, create_time=1000.0, host="stalled-node")
    run = store.claim_run(run_id, elsewhere, heartbeat_interval_s=0.01)
    return Lease(run_id, run.attempt, elsewhere)


def test_writes_of_an_attempt_that_was_taken_over_are_refused(store: RunStore) -> None:
    run = store.create_run("r")
    old = _stalled_elsewhere(store, run.id)
    store.write_rows(run.id, _points(1), rollouts_for(1), lease=old)
    assert store.add_checkpoint(run.id, 1, "/out/checkpoint-1", {}, lease=old).attempt == 1
    # Another host's Resume: the stalled owner is declared dead, the run queued and claimed anew.
    wait_for(lambda: store.reap_dead_runs([run.id]) == [run.id], 30)
    store.request_resume(run.id)
    new = Lease(run.id, store.claim_run(run.id).attempt, Owner.current())
    assert new.attempt == 2
    # The stalled trainer wakes up: every kind of write it makes is refused, naming its attempt.
    refused = f"run {run.id} attempt 1 .* no longer holds the run \\(it is running in attempt 2\\)"
    with pytest.raises(RunLost, match=refused):
        store.write_rows(run.id, _points(2), rollouts_for(2), lease=old)
    with pytest.raises(RunLost, match=refused):
        store.add_checkpoint(run.id, 2, "/out/checkpoint-2", {}, lease=old)
    with pytest.raises(RunLost, match=refused):
        store.mark_checkpoints_deleted(run.id, ["/out/checkpoint-1"], lease=old)
    with pytest.raises(RunLost, match=refused):
        store.add_event(run.id, "ended_early", "max_train_seconds", lease=old)
    with pytest.raises(RunLost, match=refused):
        store.set_config(run.id, {"x": 1}, lease=old)
    with pytest.raises(RunLost, match=refused):
        store.check_lease(old)
    assert store.beat(run.id, old.owner, old.attempt) is False
    assert store.end_run(run.id, old.owner, "finished", attempt=old.attempt) is False
    # Nothing of the refused writes landed; the new attempt writes and owns its rows.
    assert {p.step for p in store.metric_points(run.id)} == {1}
    store.write_rows(run.id, _points(1), [], lease=new)  # re-running step 1 takes the point over
    assert {(p.step, p.attempt) for p in store.metric_points(run.id)} == {(1, 2)}
    assert [(c.step, c.attempt, c.is_deleted) for c in store.checkpoints(run.id)] == [(1, 1, False)]
    assert store.get_run(run.id).status == "running"


def test_a_lease_fences_only_its_own_run(store: RunStore) -> None:
    mine, other = store.create_run("mine"), store.create_run("other")
    lease = Lease(mine.id, store.claim_run(mine.id).attempt, Owner.current())
    with pytest.raises(RunDBError, match=f"rows of run {other.id} written with the lease of run {mine.id}"):
        store.write_rows(other.id, _points(1), [], lease=lease)


def test_the_writer_stops_writing_and_says_so_once_its_lease_is_refused(store: RunStore) -> None:
    run = store.create_run("r")
    old = _stalled_elsewhere(store, run.id)
    lost: list[str] = []
    with MetricsWriter(store, run.id, lease=old, on_lost=lost.append) as writer:
        writer.log_metrics(1, metrics_for(1))
        writer.flush()
        wait_for(lambda: store.reap_dead_runs([run.id]) == [run.id], 30)
        store.request_resume(run.id)
        store.claim_run(run.id)
        writer.log_metrics(2, metrics_for(2))
        writer.flush()  # no error raised: losing the run is the trainer's business, via on_lost
        writer.log_rollouts(rollouts_for(3))
        writer.flush()
    assert len(lost) == 1 and "attempt 1" in lost[0] and "write refused" in lost[0]
    assert writer.dropped_items == 1  # the rollouts after the refusal were not even tried
    assert {p.step for p in store.metric_points(run.id)} == {1}
    assert store.rollouts(run.id) == []


def test_the_heartbeat_marks_the_handle_lost_when_the_run_is_ended_under_it(store: RunStore) -> None:
    run = store.create_run("r")
    with run_lifecycle(store, run.id, heartbeat_interval_s=0.05, handle_sigterm=False) as held:
        assert not held.is_lost
        held.raise_if_lost()
        # What a reaper on another host does to a stalled trainer: ends its attempt.
        assert store.end_run(run.id, Owner.current(), "failed", error="no heartbeat for 12.0 s")
        wait_for(lambda: held.is_lost, 30)
        with pytest.raises(RunLost, match=f"run {run.id} attempt 1 .* lost the run"):
            held.raise_if_lost()
    # The lifecycle's own ending is refused too: the reaper's verdict stands.
    assert (store.get_run(run.id).status, store.get_run(run.id).error) == (
        "failed",
        "no heartbeat for 12.0 s",
    )


def test_a_queued_run_is_claimed_only_by_its_launcher_or_what_it_launched(
    store: RunStore, db_url: str
) -> None:
    # A studio (here: a live process that is not our ancestor) queued the run for its trainer.
    studio = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        launcher = Owner.of(studio.pid)
        run = store.create_run("r", owner=launcher)
        with pytest.raises(OwnerAlive, match=f"run {run.id} is queued, owned by pid {studio.pid} on "):
            store.claim_run(run.id)  # `vgrpo train --attach_run` typed in a terminal meanwhile
        assert store.get_run(run.id).status == "queued"
    finally:
        studio.kill()
        studio.wait()
    # Its launcher died before starting a trainer: the queued row is ended, then claimable again.
    claimed = store.claim_run(run.id)
    assert (claimed.status, claimed.pid, claimed.attempt) == ("running", Owner.current().pid, 2)
    assert [(a.number, a.pid, a.status) for a in store.attempts(run.id)] == [
        (1, studio.pid, "failed"),  # the launch that never started a trainer
        (2, Owner.current().pid, "running"),
    ]
    # A run this process queued is claimed by a trainer it started, before any hand-over.
    mine = store.create_run("mine", owner=Owner.current())
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            f"from trainer.rundb import RunStore; print(RunStore({db_url!r}).claim_run({mine.id}).pid)",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    assert store.get_run(mine.id).status == "running"
    assert store.get_run(mine.id).pid == int(child.stdout.split()[-1]) != Owner.current().pid


def _delete_and_resume_at_once(store: RunStore, run_id: int) -> dict[str, bool]:
    """Press Delete and Resume on one ended run at the same moment: which of them succeeded."""
    go = threading.Barrier(2)
    won: dict[str, bool] = {}

    def press(name: str, action: Callable[[], object]) -> None:
        go.wait()
        try:
            action()
            won[name] = True
        except RunDBError:
            won[name] = False

    threads = [
        threading.Thread(target=press, args=("delete", lambda: store.delete_run(run_id))),
        threading.Thread(target=press, args=("resume", lambda: store.request_resume(run_id))),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return won


def test_delete_and_resume_at_once_exactly_one_wins(store: RunStore) -> None:
    # Which one wins is up to the scheduler; never both (a queued run without its rows), never neither.
    for _ in range(20):
        run = store.create_run("r")
        with pytest.raises(KeyboardInterrupt), run_lifecycle(store, run.id, handle_sigterm=False):
            raise KeyboardInterrupt  # aborted: a run Resume may queue again, and Delete may delete
        won = _delete_and_resume_at_once(store, run.id)
        assert won["delete"] != won["resume"], won
        exists = run.id in {r.id for r in store.list_runs()}
        assert exists == won["resume"]
        if exists:
            assert store.get_run(run.id).status == "queued"

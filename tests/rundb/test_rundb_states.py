"""The one state machine, applied by compare-and-set: who may move a run or job where, and races."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys

import pytest
from rundb_helpers import race_for_run
from sqlalchemy import text

from trainer.core.errors import RunDBError
from trainer.rundb import Owner, OwnerAlive, RunStore, job_lifecycle, run_lifecycle, schema, states


def _dead_owner() -> Owner:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    owner = Owner.of(proc.pid)
    proc.wait()
    return owner


def test_transition_table() -> None:
    states.check(states.RUN, 1, "queued", "running")
    states.check(states.RUN, 1, "aborted", "running")  # `vgrpo train` resuming: a new attempt
    states.check(states.RUN, 1, "failed", "queued")  # the studio's Resume
    with pytest.raises(RunDBError, match="run 1 is finished: it cannot become queued"):
        states.check(states.RUN, 1, "finished", "queued")  # nothing left to resume
    states.check(states.RUN, 1, "finished", "running")  # `vgrpo train` continuing it, with more steps
    with pytest.raises(RunDBError, match="run 1 is running: it cannot become queued"):
        states.check(states.RUN, 1, "running", "queued")
    with pytest.raises(RunDBError, match="job 2 is finished: it cannot become running"):
        states.check(states.JOB, 2, "finished", "running")
    with pytest.raises(RunDBError, match="run 3 is queued: it cannot become finished"):
        states.check(states.RUN, 3, "queued", "finished")


def test_a_live_owner_is_refused_by_name_and_a_dead_one_taken_over(store: RunStore) -> None:
    run = store.create_run("r")
    gone = _dead_owner()
    store.claim_run(run.id, gone, heartbeat_interval_s=0.001)
    me = Owner.current()
    taken = store.claim_run(run.id, me)  # the dead attempt is ended first, through the same CAS
    assert (taken.status, taken.attempt, taken.owner) == ("running", 2, me)
    first, second = store.attempts(run.id)
    assert (first.number, first.pid, first.status) == (1, gone.pid, "failed")
    assert first.end_reason == f"trainer process died: pid {gone.pid} on {gone.host} is gone"
    assert (second.number, second.pid, second.status, second.ended_at) == (2, me.pid, "running", None)
    with pytest.raises(
        OwnerAlive, match=rf"run {run.id} is running, owned by pid {me.pid} on {me.host}, started "
    ):
        store.claim_run(run.id)
    with pytest.raises(OwnerAlive, match="abort it first"):
        store.request_resume(run.id)
    # Only the owner writes its ending or beats; the dead one lost the row.
    assert store.beat(run.id, gone) is False and store.end_run(run.id, gone, "finished") is False
    assert store.end_run(run.id, me, "finished") is True
    assert store.get_run(run.id).status == "finished"


def test_abort_is_a_status_with_a_reason_and_a_stale_request_does_not_leak(store: RunStore) -> None:
    run = store.create_run("r")
    assert store.end_run(run.id, Owner.current(), "finished") is False  # queued: nothing to finish
    gone = _dead_owner()
    store.claim_run(run.id, gone, heartbeat_interval_s=0.001)
    assert store.request_stop(run.id).stop_requested_at is not None
    assert store.reap_dead_runs([run.id]) == [run.id]
    ended = store.get_run(run.id)
    assert (ended.status, ended.error) == ("aborted", None)
    assert ended.end_reason == f"stopped: trainer process died: pid {gone.pid} on {gone.host} is gone"
    with pytest.raises(RunDBError, match=f"run {run.id} is aborted: nothing to abort"):
        store.request_stop(run.id)
    # A new attempt does not inherit the old request...
    assert store.claim_run(run.id).stop_requested_at is None
    store.end_run(run.id, Owner.current(), "aborted", reason="stopped by SIGTERM")
    # ...but a stop asked for while queued holds when the trainer (its launcher's) claims.
    store.request_resume(run.id, Owner.current())
    store.request_stop(run.id)
    assert store.claim_run(run.id).stop_requested_at is not None


def test_queued_run_is_handed_to_its_trainer_and_reaped_when_that_dies(store: RunStore) -> None:
    me, child = Owner.current(), _dead_owner()
    run = store.create_run("r", owner=me)
    assert store.reap_dead_runs() == []  # its launcher lives
    assert store.hand_over_run(run.id, me, child) is True
    assert store.hand_over_run(run.id, me, child) is False  # no longer ours to hand over
    assert store.reap_dead_runs(exited=child, detail="trainer exited with code 3: boom") == [run.id]
    failed = store.get_run(run.id)
    assert (failed.status, failed.error, failed.attempt) == ("failed", "trainer exited with code 3: boom", 1)
    # The launch that never trained is still an attempt, with the process that was started.
    [launch] = store.attempts(run.id)
    assert (launch.number, launch.pid, launch.status, launch.end_reason) == (
        1,
        child.pid,
        "failed",
        failed.error,
    )
    assert launch.started_at == child.create_time


@pytest.mark.parametrize("action", ["claim", "resume"])
def test_two_processes_at_once_exactly_one_wins(db_url: str, action: str) -> None:
    with RunStore(db_url) as store:
        run = store.create_run("contended")
        if action == "resume":
            with pytest.raises(KeyboardInterrupt), run_lifecycle(store, run.id):
                raise KeyboardInterrupt  # aborted: a run Resume may queue again
    ctx = multiprocessing.get_context("spawn")
    go, done, results = ctx.Event(), ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=race_for_run, args=(db_url, run.id, action, go, done, results)) for _ in range(3)
    ]
    for proc in procs:
        proc.start()
    try:
        go.set()
        outcomes = sorted(results.get(timeout=120) for _ in procs)
    finally:
        done.set()
        for proc in procs:
            proc.join(60)
    assert [kind for kind, _ in outcomes] == ["refused", "refused", "won"]
    winner = outcomes[-1][1]
    for _, message in outcomes[:2]:
        assert f"owned by pid {winner} on " in message
    with RunStore(db_url) as store:
        assert store.get_run(run.id).pid == winner
        # A claim is the winner's attempt 1; a resume queues the run for the winner and adds no
        # attempt until its trainer claims (the one attempt is this test's aborted one).
        want = [(1, winner, "running")] if action == "claim" else [(1, os.getpid(), "aborted")]
        assert [(a.number, a.pid, a.status) for a in store.attempts(run.id)] == want
        assert store.get_run(run.id).status == ("running" if action == "claim" else "queued")


def test_processes_opening_a_new_database_at_once_migrate_it_once(db_url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    go, done, results = ctx.Event(), ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=race_for_run, args=(db_url, 0, "migrate", go, done, results)) for _ in range(4)
    ]
    for proc in procs:
        proc.start()
    go.set()
    outcomes = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(60)
    assert [kind for kind, _ in outcomes] == ["won"] * 4
    assert [p.exitcode for p in procs] == [0] * 4
    engine = schema.make_engine(db_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [
            schema.head_revision()
        ]
    engine.dispose()


def test_rotated_checkpoints_are_marked_deleted_and_a_resaved_step_keeps_its_row(store: RunStore) -> None:
    run = store.create_run("r")
    first = store.add_checkpoint(run.id, 2, "/out/checkpoint-2", {})
    store.add_checkpoint(run.id, 4, "/out/checkpoint-4", {})
    evaluation = store.add_evaluation(first.id, "val", accuracy=0.5, format_rate=1.0)
    assert store.mark_checkpoints_deleted(run.id, ["/out/checkpoint-2", "/elsewhere"]) == 1
    assert [c.step for c in store.checkpoints(run.id)] == [4]
    assert [(c.step, c.is_deleted) for c in store.checkpoints(run.id, include_deleted=True)] == [
        (2, True),
        (4, False),
    ]
    # A resumed attempt saving step 2 again (what used to fail with UNIQUE constraint failed).
    again = store.add_checkpoint(run.id, 2, "/out/checkpoint-2", {"r": 1.0})
    assert (again.id, again.is_deleted, dict(again.metrics)) == (first.id, False, {"r": 1.0})
    assert store.evaluations(run.id) == [evaluation]


def test_job_lifecycle_progress_result_cancel_and_reap(store: RunStore) -> None:
    run = store.create_run("r")
    job = store.create_job("evaluate", {"checkpoint": "/c", "dataset": "val"}, run_id=run.id)
    with job_lifecycle(store, job.id) as handle:
        assert store.get_job(job.id).status == "running"
        handle.progress(3, 8)
        assert (store.get_job(job.id).progress_done, store.get_job(job.id).progress_total) == (3, 8)
        handle.result["evaluation_id"] = 7
    done = store.get_job(job.id)
    assert (done.status, dict(done.result or {}), done.error) == ("finished", {"evaluation_id": 7}, None)
    with pytest.raises(RunDBError, match=f"job {job.id} is finished: it cannot become running"):
        store.claim_job(job.id)
    # Cancelled while its process is gone: the reap ends it aborted.
    other = store.create_job("evaluate", {"checkpoint": "/c"}, run_id=run.id, owner=_dead_owner())
    store.request_job_stop(other.id)
    assert store.reap_dead_jobs() == [other.id]
    assert (store.get_job(other.id).status, store.get_job(other.id).error) == ("aborted", None)
    assert [j.id for j in store.jobs(run_id=run.id, kind="evaluate")] == [other.id, job.id]
    with pytest.raises(RunDBError, match="job kind 'train' is not one of"):
        store.create_job("train", {})

"""Runs owned by a Ray job (``ray_runs.py``): given to a job, claimed by its rank 0, taken over by a
restart of its workers, alive while the head says the job runs, reaped once it says the job ended,
and never declared dead while the head does not answer. The head is stood in for by a lookup
(``RunStore.ray_job_status``); the real one is tested on a local cluster in tests/cluster."""

from __future__ import annotations

import time

import pytest

from trainer.rundb import Lease, MetricPoint, Owner, OwnerAlive, RunStore, Worker, liveness, states

STUDIO = Owner(4242, 100.0, "studio-host")
RANK0 = Owner(7001, 200.0, "node-a")
RANK0_AGAIN = Owner(7002, 300.0, "node-b")  # the new rank 0 after Ray restarted the workers
JOB = "vgrpo-run1-abc"
ADDRESS = "http://head:8265"


class FakeHead:
    """Answers ``ray_job_status`` as a head would: a status per job, or None (no answer)."""

    def __init__(self) -> None:
        self.status: str | None = "RUNNING"
        self.message = ""
        self.asked: list[tuple[str, str]] = []

    def __call__(self, address: str, job_id: str) -> tuple[str | None, str]:
        self.asked.append((address, job_id))
        if self.status is None:
            return None, f"Ray cluster at {address} is unreachable"
        return self.status, self.message


@pytest.fixture
def head(store: RunStore) -> FakeHead:
    fake = FakeHead()
    store.ray_job_status = fake  # type: ignore[method-assign]
    return fake


def _queued_for_job(store: RunStore) -> int:
    run = store.create_run("ray-run", config={}, owner=STUDIO)
    assert store.assign_ray_job(run.id, STUDIO, JOB, ADDRESS)
    return run.id


def test_assign_needs_the_launcher_that_holds_the_queued_run(store: RunStore, head: FakeHead) -> None:
    run = store.create_run("r", config={}, owner=STUDIO)
    assert not store.assign_ray_job(run.id, RANK0, JOB, ADDRESS)  # not its launcher
    assert store.assign_ray_job(run.id, STUDIO, JOB, ADDRESS)
    got = store.get_run(run.id)
    assert (got.ray_job_id, got.ray_address, got.status) == (JOB, ADDRESS, "queued")
    assert [e.message for e in store.events(run.id) if e.kind == "ray_job"] == [
        f"submitted as Ray job {JOB} to {ADDRESS}"
    ]


def test_rank0_of_the_job_claims_and_a_stranger_cannot(store: RunStore, head: FakeHead) -> None:
    run_id = _queued_for_job(store)
    with pytest.raises(OwnerAlive):  # another process, not of the job: the launcher lives (the job runs)
        store.claim_run(run_id, Owner(9, 1.0, "elsewhere"), ray_job="vgrpo-other-job")
    run = store.claim_run(run_id, RANK0, ray_job=JOB)
    assert (run.status, run.attempt, run.pid, run.host) == ("running", 1, RANK0.pid, RANK0.host)


def test_a_restart_of_the_jobs_workers_takes_over_as_a_new_attempt(store: RunStore, head: FakeHead) -> None:
    run_id = _queued_for_job(store)
    store.claim_run(run_id, RANK0, ray_job=JOB)
    old = Lease(run_id, 1, RANK0)
    store.write_rows(run_id, [MetricPoint(1, "loss", 1.0, 0.0)], [], lease=old)
    run = store.claim_run(run_id, RANK0_AGAIN, ray_job=JOB)
    assert (run.status, run.attempt, run.pid) == ("running", 2, RANK0_AGAIN.pid)
    first, second = store.attempts(run_id)
    assert (first.status, second.status) == ("failed", "running")
    assert "restarted the workers" in (first.end_reason or "")
    with pytest.raises(states.RunLost):  # the old rank 0 can no longer write
        store.write_rows(run_id, [MetricPoint(2, "loss", 0.5, 0.0)], [], lease=old)


def test_liveness_is_the_jobs_status_not_a_pid(store: RunStore, head: FakeHead) -> None:
    run_id = _queued_for_job(store)
    store.claim_run(run_id, RANK0, ray_job=JOB)
    long_after = time.time() + 3600  # no beat for an hour: a local run would be reaped
    assert store.reap_dead_runs([run_id], now=long_after) == []
    head.status = None  # the head does not answer: nothing is known, nothing is ended
    assert store.reap_dead_runs([run_id], now=long_after) == []
    assert store.get_run(run_id).status == "running"
    head.status, head.message = "FAILED", "Job entrypoint command failed with exit code 1"
    assert store.reap_dead_runs([run_id]) == [run_id]
    run = store.get_run(run_id)
    assert run.status == "failed"
    assert (
        run.error
        == f"ray job {JOB} failed without ending the run: Job entrypoint command failed with exit code 1"
    )
    assert head.asked[-1] == (ADDRESS, JOB)


def test_a_stopped_job_with_an_abort_pending_ends_aborted(store: RunStore, head: FakeHead) -> None:
    run_id = _queued_for_job(store)
    store.request_stop(run_id)
    head.status = "STOPPED"
    assert store.reap_dead_runs([run_id]) == [run_id]
    run = store.get_run(run_id)
    assert run.status == "aborted" and run.end_reason == "stopped while the trainer was starting"


def test_the_driver_ends_the_run_only_while_its_job_owns_it(store: RunStore, head: FakeHead) -> None:
    run_id = _queued_for_job(store)
    store.claim_run(run_id, RANK0, ray_job=JOB)
    assert not store.end_ray_run(run_id, "vgrpo-some-other-job", "failed", error="x")
    assert store.end_ray_run(run_id, JOB, "failed", error="worker rank 1: ActorDiedError: killed")
    assert store.get_run(run_id).error == "worker rank 1: ActorDiedError: killed"
    assert not store.end_ray_run(run_id, JOB, "failed", error="again")  # ended: nothing to end


def test_resume_forgets_the_ended_job(store: RunStore, head: FakeHead) -> None:
    """A queued attempt must not be judged by the previous attempt's ended job (it would be reaped
    as dead before its own job is submitted)."""
    run_id = _queued_for_job(store)
    store.claim_run(run_id, RANK0, ray_job=JOB)
    store.end_run(run_id, RANK0, "aborted", reason="stopped", attempt=1)
    head.status = "SUCCEEDED"
    run = store.request_resume(run_id, STUDIO)
    assert (run.status, run.ray_job_id, run.ray_address) == ("queued", None, None)
    assert store.reap_dead_runs([run_id]) == []


def test_workers_are_recorded_under_the_lease(store: RunStore, head: FakeHead) -> None:
    run_id = _queued_for_job(store)
    store.claim_run(run_id, RANK0, ray_job=JOB)
    lease = Lease(run_id, 1, RANK0)
    store.record_workers(
        lease,
        [
            Worker(0, 0, 1, "node-b", "host-b", 8001, "10.0.0.2", JOB),
            Worker(0, 0, 0, "node-a", "host-a", 7001, "10.0.0.1", JOB),
        ],
    )
    workers = store.workers(run_id)
    assert [(w.rank, w.node_id, w.attempt, w.run_id) for w in workers] == [
        (0, "node-a", 1, run_id),
        (1, "node-b", 1, run_id),
    ]
    store.end_run(run_id, RANK0, "finished", attempt=1)
    with pytest.raises(states.RunLost):
        store.record_workers(lease, [Worker(0, 0, 0, "n", "h", 1)])
    assert store.delete_run(run_id).runs == 1
    assert store.workers(run_id) == []


@pytest.mark.parametrize(
    ("status", "job_status", "expected"),
    [
        ("running", "RUNNING", None),
        ("queued", "PENDING", None),
        ("running", None, None),  # no answer: not dead
        ("finished", "FAILED", None),  # an ended run has no owner to judge
        ("running", "SUCCEEDED", "ray job j succeeded without ending the run"),
        ("running", "FAILED", "ray job j failed without ending the run: boom"),
    ],
)
def test_ray_death_reason(status: str, job_status: str | None, expected: str | None) -> None:
    message = "boom" if job_status == "FAILED" else ""
    assert (
        liveness.ray_death_reason(status=status, job_id="j", job_status=job_status, job_message=message)
        == expected
    )

"""run_lifecycle end states, the heartbeat, and a SIGKILLed trainer ended failed by the reaper."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time

import pytest
from rundb_helpers import train_until_killed, wait_for

from trainer.rundb import Heartbeat, Owner, RunAborted, RunStore, run_lifecycle
from trainer.rundb.liveness import DIED_MESSAGE


def test_clean_exit_marks_finished(store: RunStore) -> None:
    run = store.create_run("r")
    with run_lifecycle(store, run.id) as running:
        assert (running.run.status, running.run.pid) == ("running", os.getpid())
        assert (running.lease.run_id, running.lease.attempt, running.is_lost) == (run.id, 1, False)
    done = store.get_run(run.id)
    assert (done.status, done.error, done.traceback) == ("finished", None, None)
    assert done.ended_at is not None and done.ended_at >= done.started_at  # type: ignore[operator]
    assert [e.kind for e in store.events(run.id)] == ["started", "finished"]


def test_crash_marks_failed_with_traceback(store: RunStore) -> None:
    run = store.create_run("r")

    def explode() -> None:
        raise ValueError("reward is NaN at step 17")

    with pytest.raises(ValueError, match="reward is NaN"), run_lifecycle(store, run.id):
        explode()
    failed = store.get_run(run.id)
    assert failed.status == "failed"
    assert failed.error == "ValueError: reward is NaN at step 17"
    assert failed.traceback is not None
    assert "in explode" in failed.traceback
    assert failed.traceback.rstrip().endswith("ValueError: reward is NaN at step 17")
    assert [(e.kind, e.level) for e in store.events(run.id)] == [("started", "info"), ("failed", "error")]


def test_ctrl_c_marks_aborted(store: RunStore) -> None:
    run = store.create_run("r")
    with pytest.raises(KeyboardInterrupt), run_lifecycle(store, run.id):
        raise KeyboardInterrupt
    aborted = store.get_run(run.id)
    # The user's stop is a status with a reason, not an error.
    assert (aborted.status, aborted.end_reason, aborted.error, aborted.traceback) == (
        "aborted",
        "KeyboardInterrupt",
        None,
        None,
    )


def test_sigterm_marks_aborted_and_restores_handler(store: RunStore) -> None:
    run = store.create_run("r")
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(RunAborted, match="SIGTERM"), run_lifecycle(store, run.id):
        os.kill(os.getpid(), signal.SIGTERM)
        wait_for(lambda: False, timeout_s=5.0)  # the signal interrupts this wait
    aborted = store.get_run(run.id)
    assert (aborted.status, aborted.end_reason, aborted.error) == ("aborted", "stopped by SIGTERM", None)
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_sigterm_right_after_the_claim_is_recorded_as_the_abort(store: RunStore, monkeypatch) -> None:
    """The studio shows the run running as soon as it is claimed, and a user may abort at once: a
    SIGTERM then, before the block starts, ends the run aborted by SIGTERM (it used to meet the
    previous handler, here a sentinel; in a trainer the default one, which killed it unrecorded)."""
    run = store.create_run("r")
    reached_the_sentinel: list[int] = []
    before = signal.signal(signal.SIGTERM, lambda signum, _frame: reached_the_sentinel.append(signum))
    claim_run = store.claim_run

    def claim_then_abort(*args, **kwargs):  # type: ignore[no-untyped-def]
        claimed = claim_run(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)
        threading.Event().wait(0.2)  # the signal lands while the claim is still running
        return claimed

    monkeypatch.setattr(store, "claim_run", claim_then_abort)
    body_ran = []
    try:
        with pytest.raises(RunAborted, match="SIGTERM"), run_lifecycle(store, run.id):
            body_ran.append(True)
    finally:
        signal.signal(signal.SIGTERM, before)
    assert reached_the_sentinel == [] and body_ran == []
    aborted = store.get_run(run.id)
    assert (aborted.status, aborted.end_reason, aborted.error) == ("aborted", "stopped by SIGTERM", None)


def test_system_exit_zero_is_finished(store: RunStore) -> None:
    run = store.create_run("r")
    with pytest.raises(SystemExit), run_lifecycle(store, run.id):
        raise SystemExit(0)
    assert store.get_run(run.id).status == "finished"


def test_heartbeat_advances(store: RunStore) -> None:
    run = store.create_run("r")
    owner = Owner.current()
    first = store.claim_run(run.id, owner, heartbeat_interval_s=0.05).heartbeat_at
    beat = Heartbeat(lambda: store.beat(run.id, owner), "run", interval_s=0.05).start()
    try:
        wait_for(lambda: store.get_run(run.id).heartbeat_at > first, timeout_s=5.0)  # type: ignore[operator]
    finally:
        beat.stop()


def test_sigkilled_trainer_is_marked_failed_within_two_intervals(db_url: str) -> None:
    interval_s = 0.5
    store = RunStore(db_url)
    run = store.create_run("doomed")
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=train_until_killed, args=(db_url, run.id, interval_s, ready))
    proc.start()
    try:
        assert ready.wait(60), "trainer process did not start"
        assert store.get_run(run.id).status == "running"
    finally:
        proc.kill()
        proc.join()  # reap it: a zombie still has a pid
    killed_at = time.time()
    assert proc.exitcode == -signal.SIGKILL
    # Reading never writes; the reaper (the studio's list refresh, `vgrpo runs list`) ends it.
    assert store.get_run(run.id).status == "running"
    dead = wait_for(
        lambda: store.reap_dead_runs([run.id]) and store.get_run(run.id), timeout_s=2 * interval_s + 2
    )
    seen_at = time.time()
    assert seen_at - killed_at <= 2 * interval_s
    assert dead.error is not None and dead.error.startswith(DIED_MESSAGE)
    assert store.count_rows(run.id)["metrics"] >= 5 * 12
    store.close()


def test_a_stop_recorded_in_the_database_stops_the_owner(store: RunStore) -> None:
    """An abort from another host (or before the trainer could be signalled) arrives by heartbeat."""
    run = store.create_run("r")
    with pytest.raises(RunAborted, match="SIGTERM"), run_lifecycle(store, run.id, heartbeat_interval_s=0.05):
        store.request_stop(run.id)
        wait_for(lambda: False, timeout_s=10.0)  # the heartbeat's SIGTERM interrupts this wait
    stopped = store.get_run(run.id)
    assert (stopped.status, stopped.end_reason, stopped.error) == ("aborted", "stopped by SIGTERM", None)

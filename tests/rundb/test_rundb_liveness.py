"""Owner identity (pid + start time + host) and the pure rules deciding when an owner is dead."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from trainer.rundb import Owner, RunStore, liveness

ME = Owner(1234, 50.0, "h1")


def _reason(**kw: object) -> str | None:
    base: dict[str, object] = dict(
        status="running",
        owner=ME,
        heartbeat_at=100.0,
        heartbeat_interval_s=5.0,
        now=100.0,
        current_host="h2",
        process_alive=True,
    )
    return liveness.death_reason(**(base | kw))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        # Another host: only the heartbeat tells; one missed beat is tolerated, a second is not.
        ({"now": 109.9}, None),
        ({"now": 110.1}, "trainer process died: no heartbeat for 10.1 s (interval 5 s)"),
        (
            {"heartbeat_interval_s": None, "now": 110.1},
            "trainer process died: no heartbeat for 10.1 s (interval 5 s)",
        ),
        ({"process_alive": False, "now": 105.1}, None),  # another host's pid says nothing here
        ({"status": "queued", "heartbeat_at": None, "now": 1000.0}, None),
        # Ended rows and rows without a recorded owner are never judged.
        ({"status": "finished", "now": 1000.0}, None),
        ({"owner": None, "now": 1000.0}, None),
        # This host: the process identity decides, once the beat is older than one interval.
        (
            {"current_host": "h1", "process_alive": False, "now": 105.1},
            "trainer process died: pid 1234 on h1 is gone",
        ),
        ({"current_host": "h1", "process_alive": False, "now": 104.9}, None),
        # A live process is never declared dead, however old its beat.
        ({"current_host": "h1", "process_alive": True, "now": 1000.0}, None),
        # A queued row (no beat yet) whose launcher is gone is dead at once.
        (
            {"current_host": "h1", "status": "queued", "heartbeat_at": None, "process_alive": False},
            "trainer process died: pid 1234 on h1 is gone",
        ),
        # Its parent saw it exit: dead at once.
        ({"current_host": "h1", "now": 100.1, "exited": True}, "trainer process died: pid 1234 on h1 exited"),
    ],
)
def test_death_reason(kw: dict[str, object], expected: str | None) -> None:
    assert _reason(**kw) == expected


def test_process_identity_tells_a_reused_pid_from_the_original() -> None:
    me = Owner.current()
    assert (me.pid, me.host) == (os.getpid(), liveness.this_host())
    assert liveness.is_process_alive(me) is True
    # Same pid, another start time: a different process (the kernel reused the pid).
    assert liveness.is_process_alive(Owner(me.pid, me.create_time - 100.0, me.host)) is False
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    child = Owner.of(proc.pid)
    proc.wait()
    assert liveness.is_process_alive(child) is False
    # Beyond the kernel's pid_max (at most 2**22), so never a live process.
    assert liveness.is_pid_alive(2**22 + 1) is False


def test_reap_ends_a_stale_run_and_spares_a_fresh_one(store: RunStore) -> None:
    fresh, stale = store.create_run("fresh"), store.create_run("stale")
    here = Owner.current()
    far = Owner(4321, 10.0, "elsewhere")
    store.claim_run(fresh.id, here, heartbeat_interval_s=5.0)
    started = store.claim_run(stale.id, far, heartbeat_interval_s=0.5)
    assert store.reap_dead_runs(now=started.heartbeat_at + 0.9) == []  # type: ignore[operator]
    # Reading never writes: the stale run stays running until someone reaps it.
    assert store.get_run(stale.id).status == "running"
    assert store.reap_dead_runs(now=started.heartbeat_at + 1.1) == [stale.id]  # type: ignore[operator]
    run = store.get_run(stale.id)
    assert (run.status, run.error) == (
        "failed",
        "trainer process died: no heartbeat for 1.1 s (interval 0.5 s)",
    )
    assert store.get_run(fresh.id).status == "running"
    assert [e.kind for e in store.events(stale.id)] == ["started", "failed"]
    assert store.beat(stale.id, far) is False and store.beat(fresh.id, here) is True
    assert [(a.number, a.status) for a in store.attempts(stale.id)] == [(1, "failed")]

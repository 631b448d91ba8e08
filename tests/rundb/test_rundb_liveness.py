"""The pure rules deciding when a 'running' run is dead."""

from __future__ import annotations

import os

import pytest

from trainer.rundb import RunStore, liveness


def _reason(**kw: object) -> str | None:
    base: dict[str, object] = dict(
        status="running",
        heartbeat_at=100.0,
        heartbeat_interval_s=5.0,
        pid=1234,
        host="h1",
        now=100.0,
        current_host="h2",
        pid_alive=True,
    )
    return liveness.death_reason(**(base | kw))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({"now": 109.9}, None),  # one missed beat is tolerated
        ({"now": 110.1}, "trainer process died: no heartbeat for 10.1 s (interval 5 s)"),
        ({"status": "finished", "now": 1000.0}, None),
        ({"status": "queued", "now": 1000.0}, None),
        # Same host, pid gone: dead as soon as the beat is older than one interval.
        (
            {"current_host": "h1", "pid_alive": False, "now": 105.1},
            "trainer process died: pid 1234 on h1 is gone",
        ),
        ({"current_host": "h1", "pid_alive": False, "now": 104.9}, None),
        # Another host's pid says nothing about this host.
        ({"pid_alive": False, "now": 105.1}, None),
        (
            {"heartbeat_interval_s": None, "now": 110.1},
            "trainer process died: no heartbeat for 10.1 s (interval 5 s)",
        ),
    ],
)
def test_death_reason(kw: dict[str, object], expected: str | None) -> None:
    assert _reason(**kw) == expected


def test_is_pid_alive() -> None:
    assert liveness.is_pid_alive(os.getpid()) is True
    # Beyond the kernel's pid_max (at most 2**22), so never a live process.
    assert liveness.is_pid_alive(2**22 + 1) is False


def test_reader_marks_a_stale_run_failed_and_a_fresh_one_not(store: RunStore) -> None:
    fresh, stale = store.create_run("fresh"), store.create_run("stale")
    store.mark_running(fresh.id, heartbeat_interval_s=5.0)
    started = store.mark_running(stale.id, heartbeat_interval_s=0.5, host="elsewhere")
    assert store.reap_dead_runs(now=started.heartbeat_at + 0.9) == []  # type: ignore[operator]
    assert store.reap_dead_runs(now=started.heartbeat_at + 1.1) == [stale.id]  # type: ignore[operator]
    run = store.get_run(stale.id)
    assert (run.status, run.error) == (
        "failed",
        "trainer process died: no heartbeat for 1.1 s (interval 0.5 s)",
    )
    assert store.get_run(fresh.id).status == "running"
    assert [e.kind for e in store.events(stale.id)] == ["started", "failed"]
    assert store.beat(stale.id) is False and store.beat(fresh.id) is True

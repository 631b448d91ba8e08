"""A run's history over its attempts: the one duration (the sum of the attempts), and the checkpoint
each attempt resumed from (its "resumed" event), by hand-made attempts and events."""

from __future__ import annotations

import pytest

from trainer.rundb import RESUMED_EVENT, Attempt, Event, Run, resumed_checkpoints, run_duration_s


def _run(started_at: float | None = None, ended_at: float | None = None) -> Run:
    return Run(id=1, name="r", status="finished", created_at=0.0, started_at=started_at, ended_at=ended_at)


def _attempt(number: int, started_at: float, ended_at: float | None) -> Attempt:
    status = "running" if ended_at is None else "finished"
    return Attempt(1, number, 100 + number, 1.0, "h", started_at, ended_at, status, None)


def _event(time: float, kind: str, message: str) -> Event:
    return Event(int(time), 1, time, "info", kind, message)


def test_duration_is_the_sum_of_the_attempts_not_the_idle_time_between_them() -> None:
    # 60 s, then 90 s after an hour's pause, then 30 s: 180 s trained (the span from the first claim
    # to the last end is 5030 - 100 = 4930 s, the last attempt alone 30 s).
    attempts = [_attempt(1, 100.0, 160.0), _attempt(2, 1000.0, 1090.0), _attempt(3, 5000.0, 5030.0)]
    assert run_duration_s(_run(5000.0, 5030.0), attempts, now=9999.0) == pytest.approx(180.0)


def test_a_running_attempt_counts_up_to_now() -> None:
    attempts = [_attempt(1, 100.0, 160.0), _attempt(2, 1000.0, None)]
    assert run_duration_s(_run(1000.0), attempts, now=1025.0) == pytest.approx(60.0 + 25.0)


def test_without_attempts_the_rows_span_or_nothing() -> None:
    # A run from before attempts were recorded: its row's own span; a queued run or a registered
    # model never started.
    assert run_duration_s(_run(10.0, 70.0), [], now=1e9) == pytest.approx(60.0)
    assert run_duration_s(_run(10.0), [], now=40.0) == pytest.approx(30.0)
    assert run_duration_s(_run(), [], now=40.0) is None


def test_each_attempt_resumed_from_the_checkpoint_its_event_names() -> None:
    attempts = [_attempt(1, 100.0, 160.0), _attempt(2, 1000.0, 1090.0), _attempt(3, 5000.0, None)]
    events = [
        _event(100.0, "started", "attempt 1"),
        _event(150.0, "checkpoint", "step 4: /out/r/checkpoint-4"),
        _event(1000.5, RESUMED_EVENT, "from /out/r/checkpoint-4"),
        _event(5001.0, RESUMED_EVENT, "from /out/r/checkpoint-8"),
    ]
    assert resumed_checkpoints(attempts, events) == {2: "/out/r/checkpoint-4", 3: "/out/r/checkpoint-8"}
    assert resumed_checkpoints(attempts[:1], events[:2]) == {}

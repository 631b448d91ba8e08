"""Helpers shared by the run-database tests (and their spawned worker processes)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from trainer.core.metrics_keys import ALL_METRICS
from trainer.rundb import Rollout

T = TypeVar("T")

# 12 metric names per step, as a tiny-model GRPO step logs.
STEP_METRICS = ALL_METRICS[:12]


def wait_for(condition: Callable[[], T], timeout_s: float, every_s: float = 0.02) -> T:
    """Poll ``condition`` until it returns something truthy; fail with a clear message at the deadline."""
    deadline = time.monotonic() + timeout_s
    pause = threading.Event()
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s (last value {value!r})")
        pause.wait(every_s)


def metrics_for(step: int) -> dict[str, float]:
    return {name: step + i / 100 for i, name in enumerate(STEP_METRICS)}


def rollouts_for(step: int, group_size: int = 2) -> list[Rollout]:
    return [
        Rollout(
            step=step,
            prompt_id=f"q_{step:05d}",
            group_index=g,
            question="Which way does the ball move?",
            completion=f"<think>step {step}</think> <answer>(A) left</answer>",
            options={"A": "left", "B": "right"},
            video_path=f"videos/{step}.mp4",
            correct_letter="A",
            think=f"step {step}",
            answer="A",
            format_reward=1.0,
            accuracy_reward=float(g % 2),
            total_reward=0.3 + 0.7 * (g % 2),
            advantage=0.5 if g % 2 else -0.5,
            log_prob=-1.25,
        )
        for g in range(group_size)
    ]


def train_until_killed(url: str, run_id: int, interval_s: float, ready) -> None:  # type: ignore[no-untyped-def]
    """Spawned worker: a 'trainer' that logs metrics forever, until the test SIGKILLs it."""
    from trainer.rundb import MetricsWriter, RunStore, run_lifecycle

    store = RunStore(url)
    pause = threading.Event()
    with (
        run_lifecycle(store, run_id, heartbeat_interval_s=interval_s),
        MetricsWriter(store, run_id) as writer,
    ):
        step = 0
        while True:
            writer.log_metrics(step, metrics_for(step))
            step += 1
            if step == 5:
                writer.flush()
                ready.set()
            pause.wait(0.01)


def write_for(url: str, name: str, duration_s: float, results) -> None:  # type: ignore[no-untyped-def]
    """Spawned worker: log 12 metrics and 2 rollouts per step for ``duration_s``; report the step count."""
    from trainer.rundb import MetricsWriter, RunStore, run_lifecycle

    store = RunStore(url)
    run = store.create_run(name)
    pause = threading.Event()
    steps = 0
    # put_timeout_s: back-pressure instead of dropping, so the counts must match exactly.
    with (
        run_lifecycle(store, run.id, heartbeat_interval_s=1.0, handle_sigterm=False),
        MetricsWriter(store, run.id, put_timeout_s=120.0) as writer,
    ):
        deadline = time.monotonic() + duration_s
        while time.monotonic() < deadline:
            writer.log_metrics(steps, metrics_for(steps))
            writer.log_rollouts(rollouts_for(steps))
            steps += 1
            if steps % 10 == 0:  # a resumed run re-logging old points must not duplicate them
                writer.log_metrics(0, metrics_for(0))
            pause.wait(0.01)
    store.close()
    results.put((run.id, steps))


def race_for_run(url: str, run_id: int, action: str, go, done, results) -> None:  # type: ignore[no-untyped-def]
    """Spawned worker: on ``go``, try ``action`` (claim | resume | migrate) on the run; report
    ("won", pid) or ("refused", message); stay alive until ``done`` so the others see a live owner."""
    import os

    from trainer.core.errors import RunDBError
    from trainer.rundb import RunStore

    if action == "migrate":
        go.wait(60)
        with RunStore(url) as store:
            results.put(("won", store.url))
        return
    store = RunStore(url)
    go.wait(60)
    try:
        if action == "claim":
            store.claim_run(run_id)
        else:
            store.request_resume(run_id)
        results.put(("won", os.getpid()))
    except RunDBError as exc:
        results.put(("refused", str(exc)))
    done.wait(60)
    store.close()

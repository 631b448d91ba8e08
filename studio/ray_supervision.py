"""The Supervisor's runs on a Ray cluster: submitting one, its job's log, its cluster's answer, and
its abort. A Ray run is no subprocess of the studio: its job owns it (``trainer.rundb.ray_runs``),
so everything here goes through the run database and the head's Jobs API, and a restarted studio
does the same from the run row alone.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from studio.context import StudioContext
from studio.run_records import ABORT_EVENT, LAUNCH_EVENT, LOG_FILE
from trainer.core.config import TrainConfig
from trainer.core.errors import StudioError
from trainer.run.ray_launch import submit_run
from trainer.rundb import Owner, Run

logger = logging.getLogger(__name__)

# After the grace period the stopped job's run is reaped; this long at most.
REAP_AFTER_STOP_S = 30.0


@dataclass(frozen=True)
class SubmittedRun:
    job_id: str
    config_path: Path
    log_path: Path


def submit(ctx: StudioContext, run: Run, cfg: TrainConfig, me: Owner, total: int | None) -> SubmittedRun:
    """Write the run's YAML, give the queued run ``me`` holds to a new Ray job and submit it (a
    failed submission ends the run, saying why); record the launch (the job, not a pid)."""
    config_path = ctx.configs_dir / f"{cfg.run.run_name}.yaml"
    ctx.configs_dir.mkdir(parents=True, exist_ok=True)
    config_path.write_text(cfg.to_yaml())
    submitted = submit_run(ctx.store, cfg, run.id, me)
    log_path = Path(cfg.run.output_dir) / LOG_FILE
    info = {
        "pid": 0,
        "host": "",
        "total_steps": total,
        "log": str(log_path),
        "config": str(config_path),
        "ray_job": submitted.job_id,
        "ray_address": submitted.address,
    }
    ctx.store.add_event(run.id, LAUNCH_EVENT, json.dumps(info))
    return SubmittedRun(submitted.job_id, config_path, log_path)


# Ray colours the prefixes of forwarded lines ("(RayTrainWorker pid=...)") for a terminal.
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def log_tail(address: str, job_id: str, max_lines: int) -> str:
    """The last ``max_lines`` of a Ray job's log (the workers' output is forwarded into it), without
    terminal colours, or why it cannot be read now."""
    from trainer.cluster import ray_jobs

    try:
        text = ray_jobs.logs(address, job_id)
    except ray_jobs.ClusterUnreachable as exc:
        return f"[{exc}: the job's log cannot be read now]"
    return "\n".join(ANSI_ESCAPE.sub("", line) for line in text.splitlines()[-max_lines:])


def cluster_note(run: Run) -> str | None:
    """For an active Ray run: its job's status, or that its cluster does not answer (the run is
    not declared failed for that: its job may still be running); None for any other run."""
    if not (run.is_active and run.ray_job_id and run.ray_address):
        return None
    from trainer.cluster import ray_jobs

    try:
        state = ray_jobs.job_state(run.ray_address, run.ray_job_id)
    except ray_jobs.ClusterUnreachable as exc:
        return f"cluster unreachable: {exc}; the run is shown as last recorded until the head answers"
    return f"Ray job {run.ray_job_id}: {state.status.lower()}"


def abort(ctx: StudioContext, run: Run, grace_s: float, reap: Callable[[Sequence[int]], list[int]]) -> int:
    """The abort is recorded already (``request_stop``). The run's rank 0 reads it at its next
    heartbeat, saves and ends the run ``aborted``. If the run is still active after ``grace_s``
    (its job still waits for resources, or its trainer does not answer), the job is stopped and the
    reap ends the run ``aborted``. Returns 0: there is no local pid."""
    ctx.store.add_event(
        run.id,
        ABORT_EVENT,
        f"recorded; Ray job {run.ray_job_id}'s trainer stops at its next heartbeat",
        "warning",
    )

    def escalate() -> None:
        try:
            _stop_if_still_active(ctx, run, reap)
        except StudioError as exc:  # a timer thread must not die of the database or the head
            logger.warning("run %d: after the grace period: %s", run.id, exc)

    timer = threading.Timer(grace_s, escalate)
    timer.daemon = True
    timer.start()
    return 0


def _stop_if_still_active(ctx: StudioContext, run: Run, reap: Callable[[Sequence[int]], list[int]]) -> None:
    """The grace period is over: stop the job if its run is still active, then reap the run."""
    from trainer.cluster import ray_jobs

    current = ctx.store.get_run(run.id)
    if not current.is_active or current.ray_job_id != run.ray_job_id:
        return
    ray_jobs.stop(run.ray_address or "", run.ray_job_id or "")
    ctx.store.add_event(
        run.id, ABORT_EVENT, f"Ray job {run.ray_job_id} stopped after the grace period", "warning"
    )
    deadline, pause = time.monotonic() + REAP_AFTER_STOP_S, threading.Event()
    while time.monotonic() < deadline and not reap([run.id]):
        if not ctx.store.get_run(run.id).is_active:
            return
        pause.wait(1.0)

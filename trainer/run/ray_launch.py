"""Sending a run to a Ray cluster: the run row queued by its launcher, given to a new Ray job, and the
job submitted (``submit_run``); and ``vgrpo train --launcher ray`` following that job from a
terminal until the run ends (``follow``).

The studio's Supervisor and the CLI share ``submit_run``: one way to make a Ray job own a run. The job
gets the whole config (YAML) in its environment, so the head needs neither the launcher's files nor
its workspace; what every node must share is the run database (PostgreSQL) and ``output_dir``.
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trainer.cluster import ray_jobs
from trainer.core.config import TrainConfig, build_config, merge
from trainer.core.errors import StudioError
from trainer.core.paths import default_workspace
from trainer.run.cluster_check import run_db_url
from trainer.run.ray_job import CONFIG_ENV
from trainer.rundb import Owner, RunStore

logger = logging.getLogger(__name__)

POLL_S = 1.0


@dataclass(frozen=True)
class Submitted:
    run_id: int
    job_id: str
    address: str
    attempt_before: int  # the run's attempts before this job: its rank 0's claim makes one more


def new_job_id(run_id: int) -> str:
    """A submission id naming the run (Ray's job list then says which run a job trains)."""
    return f"vgrpo-run{run_id}-{uuid.uuid4().hex[:8]}"


def entrypoint(cfg: TrainConfig, run_id: int, job_id: str) -> str:
    return f"{cfg.launch.ray_python} -m trainer.run.ray_job --run {run_id} --job {job_id}"


def resolved(cfg: TrainConfig) -> TrainConfig:
    """The config as the cluster will run it: a run name, an absolute output_dir and the database
    URL written out (the workers have neither this machine's cwd nor its environment)."""
    workspace = Path(cfg.data.workspace).resolve() if cfg.data.workspace else default_workspace()
    name = cfg.run.run_name or time.strftime("grpo-%Y%m%d-%H%M%S")
    output_dir = Path(cfg.run.output_dir) if cfg.run.output_dir else workspace / "outputs" / name
    return build_config(
        merge(
            cfg.to_dict(),
            {
                "run_name": name,
                "output_dir": str(output_dir.resolve()),
                "workspace": str(workspace),
                "db": run_db_url(cfg, workspace),
            },
        )
    )


def submit_run(store: RunStore, cfg: TrainConfig, run_id: int, launcher: Owner) -> Submitted:
    """Give the queued run ``launcher`` holds (or a finished one trained further) to a new Ray job
    and submit that job. A submission that fails ends a queued run ``failed`` saying why (nobody
    else would: its launcher is alive)."""
    address = cfg.launch.ray_address
    job_id = new_job_id(run_id)
    before = store.get_run(run_id)
    if not store.assign_ray_job(run_id, launcher, job_id, address, ended=not before.is_active):
        run = store.get_run(run_id)
        raise StudioError(
            f"run {run_id} is {run.status} and no longer waits for this launcher: not submitted"
        )
    env = {CONFIG_ENV: cfg.to_yaml()}
    try:
        ray_jobs.submit(address, entrypoint(cfg, run_id, job_id), job_id, env, {"vgrpo_run": str(run_id)})
    except Exception as exc:
        store.end_ray_run(run_id, job_id, "failed", error=f"could not submit the Ray job to {address}: {exc}")
        raise StudioError(f"run {run_id}: could not submit the Ray job to {address}: {exc}") from exc
    return Submitted(run_id, job_id, address, before.attempt)


def queue_run(store: RunStore, cfg: TrainConfig, launcher: Owner) -> int:
    """The run a ``vgrpo train --launcher ray`` trains, queued and held by ``launcher``: the run the
    resumed checkpoint came from (a new attempt of it), else a new run."""
    from trainer.run.checkpoint import read_state, resolve_resume
    from trainer.run.run_row import dataset_fingerprints

    resume = resolve_resume(cfg.run.resume_from_checkpoint, cfg.run.output_dir)
    if resume is not None:
        state = read_state(resume)
        if state.run_id:
            run = store.refuse_live_owner(int(state.run_id))  # OwnerAlive while its trainer lives
            if run.status == "finished":
                return run.id  # trained further: its job's rank 0 claims it from its ending
            return store.request_resume(run.id, launcher).id
    workspace = Path(cfg.data.workspace)
    run = store.create_run(
        cfg.run.run_name,
        config=cfg.to_dict(),
        dataset_fingerprints=dataset_fingerprints(cfg.data.dataset_use, workspace),
        output_dir=cfg.run.output_dir,
        owner=launcher,
    )
    return run.id


def follow(
    store: RunStore,
    submitted: Submitted,
    write: Callable[[str], None] = sys.stderr.write,
    poll_s: float = POLL_S,
) -> str:
    """Print the job's log as it grows until the run ends; returns the run's final status. Ctrl-C
    asks the run to stop (it saves a checkpoint and ends ``aborted``) and keeps following.

    A finished run trained further stays ``finished`` until the job's rank 0 claims it: its end is
    an ending of a later attempt, or the job ending without claiming it (then ``failed``)."""
    printed = 0
    stopping = False
    while True:
        try:
            try:
                text = ray_jobs.logs(submitted.address, submitted.job_id)
                if len(text) > printed:
                    write(text[printed:])
                    printed = len(text)
            except ray_jobs.ClusterUnreachable as exc:
                write(f"vgrpo: {exc}; waiting\n")
            run = store.get_run(submitted.run_id)
            if not run.is_active and run.attempt > submitted.attempt_before:
                _wait_for_job_end(submitted, write, printed)  # its driver may add why it failed
                return store.get_run(submitted.run_id).status
            if run.is_active:
                store.reap_dead_runs([submitted.run_id])  # the job ended without the run: say so
            elif _job_ended(submitted):
                write(f"vgrpo: Ray job {submitted.job_id} ended before it claimed run {run.id}\n")
                return "failed"
            time.sleep(poll_s)
        except KeyboardInterrupt:
            if stopping:
                raise
            stopping = True
            write(
                f"\nvgrpo: stopping run {submitted.run_id} (it saves a checkpoint); Ctrl-C again to leave\n"
            )
            try:
                store.request_stop(submitted.run_id)
            except StudioError as exc:  # not claimed yet, or ended meanwhile
                ray_jobs.stop(submitted.address, submitted.job_id)
                write(f"vgrpo: {exc}: stopped Ray job {submitted.job_id}\n")


def _wait_for_job_end(
    submitted: Submitted, write: Callable[[str], None], printed: int, timeout_s: float = 60.0
) -> None:
    """After the run ended: let the job end too (at most ``timeout_s``), printing the rest of its log."""
    deadline = time.monotonic() + timeout_s
    while not _job_ended(submitted) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    try:
        text = ray_jobs.logs(submitted.address, submitted.job_id)
    except ray_jobs.ClusterUnreachable:
        return
    if len(text) > printed:
        write(text[printed:])


def _job_ended(submitted: Submitted) -> bool:
    try:
        return ray_jobs.job_state(submitted.address, submitted.job_id).is_terminal
    except ray_jobs.ClusterUnreachable:
        return False

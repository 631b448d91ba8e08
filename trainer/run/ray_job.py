"""The Ray job of a run: its entrypoint (the job's driver) starts Ray Train's ``TorchTrainer`` over
the run's workers and waits for it.

    python -m trainer.run.ray_job --run 12 --job vgrpo-run12-3f9a1c2e     (config in $VGRPO_RUN_CONFIG)

Ray places the workers (``SPREAD``: one per node while nodes have room), forms their process group,
and restarts them ``max_failures`` times after a failure; each worker runs
``trainer.run.ray_worker.train_worker``. The run is this job's (``RunStore.assign_ray_job``): its rank
0 claims and ends it. When the workers cannot end it themselves (a worker process died, the group
could not start), this driver does, with the failing worker's error; its exit code is then 1, so Ray
marks the job ``FAILED``. An aborted run ends the job cleanly (exit 0): the run row says ``aborted``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from pathlib import Path

import yaml

from trainer.core.config import TrainConfig, build_config
from trainer.rundb import RunStore

logger = logging.getLogger(__name__)

# The run's config (YAML), passed in the job's runtime_env: the head need not see the launcher's files.
CONFIG_ENV = "VGRPO_RUN_CONFIG"
# Ray Train's own files (its run state, worker logs it keeps) under the run's output_dir.
RAY_STORAGE_DIR = "ray"


def worker_failure(exc: BaseException) -> tuple[str, str]:
    """(one line, traceback text) for a failed ``fit()``: the failing ranks' errors when Ray says
    which (``WorkerGroupError.worker_failures``), else the error itself."""
    failures = getattr(exc, "worker_failures", None) or {}
    if failures:
        lines, tbs = [], []
        # A worker whose process died first: the others failed after it, in a collective with it.
        for rank, err in sorted(failures.items(), key=lambda item: (not _process_died(item[1]), item[0])):
            cause = err.__cause__
            why = f" ({type(cause).__name__}: {_first_line(cause)})" if cause is not None else ""
            lines.append(f"worker rank {rank}: {type(err).__name__}: {_first_line(err)}{why}")
            tbs.append(f"--- rank {rank} ---\n" + "".join(traceback.format_exception(err)))
        return "; ".join(lines), "\n".join(tbs)
    return f"{type(exc).__name__}: {_first_line(exc)}", "".join(traceback.format_exception(exc))


# Ray's words for a worker whose process is gone (killed, crashed, lost with its node).
DIED_ERRORS = ("ActorDied", "ActorUnavailable", "WorkerHealthCheckFailed", "NodeDied")


def _process_died(err: BaseException) -> bool:
    return any(name in type(err).__name__ for name in DIED_ERRORS)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:500] if text else type(err).__name__


def make_trainer(cfg: TrainConfig, run_id: int, job_id: str) -> object:
    """The ``TorchTrainer`` running ``train_worker`` on ``num_workers`` workers of the requested size."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from trainer.run.ray_worker import train_worker

    launch = cfg.launch
    resources = {"CPU": launch.cpus_per_worker}
    if launch.gpus_per_worker:
        resources["GPU"] = launch.gpus_per_worker
    return TorchTrainer(
        train_worker,
        train_loop_config={"config": cfg.to_dict(), "run_id": run_id, "job_id": job_id},
        scaling_config=ScalingConfig(
            num_workers=launch.num_workers,
            use_gpu=launch.gpus_per_worker > 0,
            resources_per_worker=resources,
            placement_strategy="SPREAD",
        ),
        run_config=RunConfig(
            name=job_id,
            storage_path=str(Path(cfg.run.output_dir) / RAY_STORAGE_DIR),
            failure_config=FailureConfig(max_failures=launch.max_failures),
        ),
    )


def drive(cfg: TrainConfig, run_id: int, job_id: str) -> int:
    """Run the trainer; on failure end the run (if its workers could not) with the worker's error."""
    import ray

    ray.init(log_to_driver=True)
    trainer = make_trainer(cfg, run_id, job_id)
    try:
        trainer.fit()  # type: ignore[attr-defined]
    except Exception as exc:  # noqa: BLE001 - every failure ends the run with what it said
        error, tb = worker_failure(exc)
        logger.error("run %d: training failed: %s", run_id, error)
        with RunStore(cfg.run.db) as store:
            if store.end_ray_run(run_id, job_id, "failed", error=error, traceback=tb):
                logger.error("run %d ended failed by job %s's driver", run_id, job_id)
            elif any(_process_died(e) for e in (getattr(exc, "worker_failures", None) or {}).values()):
                # Rank 0 ended it with what it saw (a collective's "connection closed by peer"):
                # put the worker that died first.
                store.explain_ray_failure(run_id, job_id, error, tb)
        return 1
    with RunStore(cfg.run.db) as store:
        run = store.get_run(run_id)
        if run.is_active and run.ray_job_id == job_id:
            # The workers returned without ending the run (cannot happen through train(); said, not hidden).
            store.end_ray_run(
                run_id, job_id, "failed", error="the Ray workers returned without ending the run"
            )
            return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.run.ray_job", description=__doc__)
    parser.add_argument("--run", type=int, required=True, help="the run row this job trains")
    parser.add_argument("--job", required=True, help="this job's submission id")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    text = os.environ.get(CONFIG_ENV)
    if not text:
        sys.stderr.write(
            f"ray_job: ${CONFIG_ENV} is empty: submit the job with `vgrpo train --launcher ray`\n"
        )
        return 2
    cfg = build_config(yaml.safe_load(text))
    return drive(cfg, args.run, args.job)


if __name__ == "__main__":
    sys.exit(main())

"""What each worker of a Ray run does: Ray Train's ``train_loop_per_worker``.

Ray Train's ``TorchTrainer`` has placed the worker and formed the process group (it sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``... and calls ``init_process_group``: gloo on CPUs,
NCCL on GPUs). Here the worker sets what ``accelerate launch --config_file`` would set (DeepSpeed
ZeRO, FSDP: accelerate's own translation of the file into ``ACCELERATE_*`` variables), says where it
sits (rank, node, host, pid: gathered so rank 0 records them all), and runs the same training loop as
a local run (``trainer.run.loop.train``), which builds its ``Accelerator`` on that process group.

Restarts: with ``max_failures`` > 0 Ray Train starts a new group after a worker dies, calling this
function again in every new worker. A marker file in ``output_dir`` (which every node sees) says
that the job trained already, so the new group resumes from the last checkpoint instead of starting
over; the run itself is taken over by the new rank 0 as a new attempt (``RunStore.claim_run``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from trainer.core.config import TrainConfig, build_config, merge
from trainer.core.paths import REPO_ROOT
from trainer.rundb import RunAborted, Worker
from trainer.rundb.liveness import this_host

logger = logging.getLogger(__name__)

# In output_dir: written by rank 0 of a job once it holds the run; names the job.
STARTED_MARKER = ".ray_job_started"


def accelerate_env(config_file: str, world_size: int) -> dict[str, str]:
    """The ``ACCELERATE_*`` (and DeepSpeed/FSDP) variables ``accelerate launch --config_file
    config_file`` sets for its processes: accelerate's own parser and validation read the file, so a
    config that works with ``accelerate launch`` means the same here. Empty file: plain DDP."""
    if not config_file:
        return {}
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    path = Path(config_file)
    if not path.is_absolute() and not path.exists() and (REPO_ROOT / path).exists():
        path = REPO_ROOT / path  # a shipped config named as in the README (configs/...)
    argv = ["--config_file", str(path), "--num_processes", str(world_size), "--num_machines", "1"]
    args, defaults, _ = _validate_launch_command(launch_command_parser().parse_args([*argv, "train.py"]))
    if args.use_deepspeed:
        fields = list(defaults.deepspeed_config.keys()) if defaults else []
        args.deepspeed_fields_from_accelerate_config = ",".join(fields)
        _, env = prepare_deepspeed_cmd_env(args)
    else:
        env = prepare_multi_gpu_env(args)
    wanted = ("ACCELERATE_", "FSDP_", "DS_", "DEEPSPEED_")
    return {k: v for k, v in env.items() if k.startswith(wanted)}


def this_worker(rank: int, job_id: str) -> Worker:
    """This process as a row of ``run_workers`` (run and attempt are filled in by the store)."""
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    # The address Ray knows the node by (`ray start --node-ip-address`), not a guess from routes.
    ip = next((n.get("NodeManagerAddress") for n in ray.nodes() if n.get("NodeID") == node_id), None)
    return Worker(
        run_id=0,
        attempt=0,
        rank=rank,
        node_id=node_id,
        host=this_host(),
        pid=os.getpid(),
        ip=ip,
        ray_job_id=job_id,
    )


def gather_workers(me: Worker) -> tuple[Worker, ...]:
    """Every rank's ``Worker``, by rank, on every rank (one all_gather on Ray's process group)."""
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_world_size() == 1:
        return (me,)
    everyone: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, me)
    return tuple(sorted(everyone, key=lambda w: w.rank))


def resume_setting(cfg: TrainConfig, job_id: str) -> str:
    """``resume_from_checkpoint`` for this start of the job's workers: as configured on the job's
    first start; ``latest`` on a restart (the marker names this job) when a checkpoint exists."""
    from trainer.run.checkpoint import checkpoint_dirs

    marker = Path(cfg.run.output_dir) / STARTED_MARKER
    restarted = marker.exists() and marker.read_text().strip() == job_id
    if restarted and checkpoint_dirs(cfg.run.output_dir):
        return "latest"
    return cfg.run.resume_from_checkpoint


def train_worker(params: dict[str, Any]) -> dict[str, Any]:
    """``train_loop_per_worker``: ``params`` = {config (a TrainConfig dict), run_id, job_id}."""
    import torch.distributed as dist

    from trainer.run.loop import train
    from trainer.run.run_row import RaySeat

    job_id, run_id = str(params["job_id"]), int(params["run_id"])
    cfg = build_config(params["config"])
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    os.environ.update(accelerate_env(cfg.launch.accelerate_config, world))
    if cfg.launch.gpus_per_worker == 0:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # a CPU worker on a GPU node must not take its GPU
        if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true":
            os.environ.setdefault("DS_ACCELERATOR", "cpu")
    if cfg.run.num_threads:
        os.environ["OMP_NUM_THREADS"] = str(cfg.run.num_threads)
    workers = gather_workers(this_worker(rank, job_id))
    resume = resume_setting(cfg, job_id)
    if resume != cfg.run.resume_from_checkpoint:
        logger.warning(
            "job %s restarted its workers: resuming run %d from its %s checkpoint", job_id, run_id, resume
        )
        cfg = build_config(merge(cfg.to_dict(), {"resume_from_checkpoint": resume}))
    if rank == 0:
        Path(cfg.run.output_dir).mkdir(parents=True, exist_ok=True)
        (Path(cfg.run.output_dir) / STARTED_MARKER).write_text(job_id)
    try:
        outcome = train(cfg, attach_run_id=run_id, seat=RaySeat(job_id, workers))
    except RunAborted as exc:
        # The abort is recorded (rank 0 ended the run aborted after saving); the job ends cleanly.
        logger.warning("rank %d: %s", rank, exc)
        return {"aborted": True, "rank": rank}
    return {"aborted": False, "rank": rank, "steps": outcome.steps}

"""Evaluation jobs (no Gradio): the ``vgrpo eval`` command, its launch through the supervisor, and
one line or one table row per job, read from the run database."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from studio.context import StudioContext
from studio.supervisor import Supervisor
from studio.tabs.evaluate.datasets import check_eval_mode
from trainer.core.errors import ConfigError
from trainer.rundb import Job

logger = logging.getLogger(__name__)


def eval_command(
    checkpoint: str,
    dataset: str,
    db_url: str,
    workspace: Path,
    run_id: int | None = None,
    max_records: int | None = None,
    batch_size: int = 8,
    json_path: Path | None = None,
    python: str = sys.executable,
    compare: bool = False,
) -> list[str]:
    """The ``vgrpo eval`` argument list (no shell) the tab starts; ``compare``: the run's base model
    and all its checkpoints instead of ``checkpoint``."""
    models = ["--checkpoints", "all", "--base"] if compare else ["--checkpoint", checkpoint]
    cmd = [python, "-m", "trainer.cli", "eval", *models, "--dataset_use", dataset]
    cmd += ["--db", db_url, "--workspace", str(workspace), "--batch_size", str(int(batch_size))]
    if run_id is not None:
        cmd += ["--run", str(int(run_id))]
    if max_records:
        cmd += ["--max_records", str(int(max_records))]
    if json_path is not None:
        cmd += ["--json", str(json_path)]
    return cmd


def start_evaluation(
    ctx: StudioContext,
    checkpoint: str | None,
    dataset: str | None,
    run_id: int | None = None,
    max_records: float | None = None,
    batch_size: float | None = 8,
    supervisor: Supervisor | None = None,
    compare: bool = False,
) -> Job:
    """Check the form and start the command as an evaluation job; ConfigError names the bad field,
    or the dataset and both answer formats when a trained checkpoint would be asked in the other
    (``datasets.check_eval_mode``; ``vgrpo eval`` refuses it too, but only in the job's log)."""
    checkpoint = (checkpoint or "").strip()
    dataset = (dataset or "").strip()
    if compare and run_id is None:
        raise ConfigError("pick a run to compare its base model with its checkpoints")
    if compare:
        checkpoint = checkpoint or "base + all checkpoints"
    if not checkpoint:
        raise ConfigError("pick a checkpoint or type a model folder")
    if not dataset:
        raise ConfigError("pick a dataset (a registered name, optionally name%N)")
    if max_records is not None and max_records < 0:
        raise ConfigError(f"max records must be >= 0 (0: all), got {max_records}")
    if batch_size is None or batch_size < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}")
    check_eval_mode(ctx, checkpoint, dataset, run_id, compare)
    supervisor = supervisor or Supervisor(ctx)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    log = ctx.workspace / "logs" / f"eval-{stamp}.log"
    limit = int(max_records) if max_records else None
    cmd = eval_command(
        checkpoint,
        dataset,
        ctx.db_url,
        ctx.workspace,
        run_id=run_id,
        max_records=limit,
        batch_size=int(batch_size),
        compare=compare,
    )
    params = {"checkpoint": "base + all checkpoints" if compare else checkpoint, "dataset": dataset,
              "max_records": limit}  # fmt: skip
    job = supervisor.start_job(
        "evaluate", cmd, params, log, run_id=int(run_id) if run_id is not None else None
    )
    logger.info("evaluation job %d started: pid %s, log %s", job.id, job.pid, log)
    return job


def job_status(job: Job, log_tail: str = "") -> str:
    """One line on an evaluation job, read from the run database: progress, result, or why it ended.

    Jobs and evaluations are numbered apart (one job stores an evaluation per model, a reused one
    none): the line says "job #4", and the evaluations it stored by their own numbers, the ones the
    results below show ("Evaluation #8")."""
    head = f"Evaluation job #{job.id} **{_JOB_WORDS.get(job.status, job.status)}**"
    if job.status == "running":
        total = f" of {job.progress_total}" if job.progress_total else ""
        detail = f"{job.progress_done}{total} records · pid {job.pid}"
    elif job.status == "finished" and job.result:
        accuracy, format_rate = job.result.get("accuracy", 0.0), job.result.get("format_rate", 0.0)
        detail = f"accuracy {accuracy:.3f} · format rate {format_rate:.3f}"
    elif job.status == "failed":
        lines = [line.strip() for line in log_tail.splitlines() if line.strip()]
        errors = [line for line in lines if "error" in line.lower()]
        detail = (errors[-1] if errors else (job.error or "").splitlines()[0] if job.error else "").strip(
            "` "
        )
    elif job.status == "aborted":
        detail = ""  # the headline says "cancelled": the user's stop, not an error
    else:
        detail = "starting"
    params = job.params
    what = f"{Path(str(params.get('checkpoint', '?'))).name} on {params.get('dataset', '?')}"
    return f"{head} · {what}" + (f" · `{detail}`" if detail else "") + _stored(job)


def _stored(job: Job) -> str:
    """`` · stored as evaluation #8`` (``evaluations #6, #7, #8`` for several models) once finished."""
    result = job.result or {}
    ids = [i for i in result.get("evaluation_ids") or [result.get("evaluation_id")] if i is not None]
    if job.status != "finished" or not ids:
        return ""
    return f" · stored as evaluation{'s' if len(ids) > 1 else ''} " + ", ".join(f"#{i}" for i in ids)


_JOB_WORDS = {
    "queued": "starting",
    "running": "running",
    "finished": "finished",
    "failed": "failed",
    "aborted": "cancelled",
}
JOB_HEADERS = ["job", "run", "checkpoint", "dataset", "status", "progress", "started"]


def job_rows(jobs: Sequence[Job]) -> list[list[Any]]:
    rows = []
    for job in jobs:
        total = job.progress_total
        progress = f"{job.progress_done}/{total}" if total else "-"
        started = datetime.fromtimestamp(job.started_at or job.created_at).strftime("%m-%d %H:%M:%S")
        checkpoint = Path(str(job.params.get("checkpoint", "?"))).name
        rows.append(
            [
                job.id,
                job.run_id or "-",
                checkpoint,
                job.params.get("dataset", "?"),
                _JOB_WORDS.get(job.status, job.status),
                progress,
                started,
            ]
        )
    return rows

"""Check config / Launch / ``vgrpo train --check`` for a run on a Ray cluster, before anything is
submitted: each problem a ``ConfigError`` naming the field, all of them at once.

* the run database is a server (PostgreSQL): a SQLite file lives on one machine, and the workers'
  writes to it from other nodes would be lost or corrupt it;
* the head answers at ``ray_address``;
* the cluster can hold ``num_workers`` workers of ``cpus_per_worker`` / ``gpus_per_worker``;
* from every node, the run database answers, ``output_dir`` can be written, and the model folder
  and datasets the workers read are there (a probe job, ``trainer.run.ray_probe``, which also shows
  that ``ray_python`` on the head has this package).
"""

from __future__ import annotations

import json
import shlex
import time
import uuid
from pathlib import Path

from sqlalchemy.engine import make_url

from trainer.cluster import ray_jobs
from trainer.core.config import TrainConfig
from trainer.core.errors import ConfigError
from trainer.core.paths import default_db_url, resolve_repo_path
from trainer.run.ray_probe import MARKER

PROBE_TIMEOUT_S = 90.0


def run_db_url(cfg: TrainConfig, workspace: Path) -> str:
    return cfg.run.db or default_db_url(workspace)


def check_database_kind(url: str) -> None:
    """ConfigError unless ``url`` is a database server every node can reach (not SQLite)."""
    try:
        driver = make_url(url).drivername
    except Exception as exc:  # noqa: BLE001 - any unparsable URL is a config error
        raise ConfigError(f"db: {url!r} is not a database URL: {exc}") from exc
    if driver.startswith("sqlite"):
        raise ConfigError(
            f"db: launcher ray needs a run database every node reaches, and {url} is a SQLite file on "
            "this machine: use PostgreSQL (db: postgresql+psycopg://USER:PASSWORD@HOST/DB, or $VGRPO_DB; "
            "from the studio, start it on that database: vgrpo studio --db postgresql+psycopg://...)"
        )


def check_accelerate_config(path: str, workers: int) -> None:
    """ConfigError naming the field when accelerate cannot read the file the workers would apply."""
    from trainer.run.ray_worker import accelerate_env

    if not path:
        return
    try:
        accelerate_env(path, workers)
    except (OSError, ValueError, KeyError, TypeError, SystemExit) as exc:
        raise ConfigError(f"accelerate_config: accelerate cannot use {path}: {exc}") from None


def planned_output_dir(cfg: TrainConfig, workspace: Path) -> Path:
    """The run's output_dir, or the folder it will be made in (workspace/outputs)."""
    return Path(cfg.run.output_dir) if cfg.run.output_dir else workspace / "outputs"


def check_cluster(cfg: TrainConfig, workspace: Path) -> None:
    """Every check above; ConfigError listing what is wrong. A no-op for ``launcher: local``."""
    if not cfg.launch.is_ray:
        return
    url = run_db_url(cfg, workspace)
    check_database_kind(url)
    launch = cfg.launch
    address = launch.ray_address
    check_accelerate_config(launch.accelerate_config, launch.num_workers)
    ray_jobs.require_ray()
    ray_jobs.forget_unreachable()  # a Check asks again, whatever an earlier call found
    try:
        nodes = ray_jobs.nodes(address)
    except ray_jobs.ClusterUnreachable as exc:
        raise ConfigError(
            f"ray_address: no Ray cluster answers at {address} ({exc}); start one with `ray start --head "
            "--dashboard-host 0.0.0.0` and give its dashboard address (http://HEAD:8265)"
        ) from exc
    too_small = ray_jobs.fits(nodes, launch.num_workers, launch.cpus_per_worker, launch.gpus_per_worker)
    if too_small:
        raise ConfigError(f"num_workers: {too_small}; lower num_workers, cpus_per_worker or gpus_per_worker")
    problems = probe(cfg, url, planned_output_dir(cfg, workspace))
    if problems:
        raise ConfigError("; ".join(problems))


def required_paths(cfg: TrainConfig) -> dict[str, str]:
    """{path: the field naming it} for what every worker reads from its own disk: a local model
    folder and the training and evaluation datasets' annotation files (their videos sit beside them)."""
    from trainer.data import resolve_dataset_use

    workspace = Path(cfg.data.workspace) if cfg.data.workspace else Path.cwd()
    paths: dict[str, str] = {}
    model = Path(resolve_repo_path(cfg.model.model_name_or_path))
    if model.exists():
        paths[str(model.resolve())] = "model_name_or_path"
    for field, spec in (
        ("dataset_use", cfg.data.dataset_use),
        ("eval_dataset_use", cfg.data.eval_dataset_use),
    ):
        if spec.strip():
            for entry, _ in resolve_dataset_use(spec, workspace):
                paths.setdefault(str(Path(entry.annotation_path).resolve()), field)
    return paths


def probe(cfg: TrainConfig, url: str, output_dir: Path) -> list[str]:
    """Run the probe job and turn its answers into problems naming the field and the node."""
    address = cfg.launch.ray_address
    job_id = f"vgrpo-check-{uuid.uuid4().hex[:8]}"
    required = required_paths(cfg)
    flags = " ".join(f"--require {shlex.quote(path)}" for path in required)
    where = shlex.quote(str(output_dir))
    entrypoint = f"{cfg.launch.ray_python} -m trainer.run.ray_probe --output_dir {where} {flags}"
    ray_jobs.submit(address, entrypoint, job_id, {"VGRPO_DB": url}, {"vgrpo": "check"})
    deadline = time.monotonic() + PROBE_TIMEOUT_S
    state = ray_jobs.job_state(address, job_id)
    while not state.is_terminal and time.monotonic() < deadline:
        time.sleep(0.5)
        state = ray_jobs.job_state(address, job_id)
    if not state.is_terminal:
        ray_jobs.stop(address, job_id)
        return [f"ray_address: the check job {job_id} did not finish in {PROBE_TIMEOUT_S:g} s on {address}"]
    log = ray_jobs.logs(address, job_id)
    found = [line.split(MARKER, 1)[1] for line in log.splitlines() if MARKER in line]
    answers = json.loads(found[-1]) if found else None
    if answers is None:
        last = next((line for line in reversed(log.splitlines()) if line.strip()), state.message)
        return [
            f"ray_python: the check job could not run `{cfg.launch.ray_python} -m trainer.run.ray_probe` "
            f"on the head ({state.status}: {last.strip()[:300]}); install video-grpo-studio there or "
            "set ray_python"
        ]
    problems = []
    for node, answer in answers.items():
        where = f"node {answer.get('host')} ({node[:12]})"
        if answer.get("db"):
            problems.append(f"db: the run database does not answer from {where}: {answer['db']}")
        for path in answer.get("missing", []):
            problems.append(
                f"{required[path]}: {path} is not on {where} (it must be on storage every node sees)"
            )
        if answer.get("output_dir"):
            problems.append(
                f"output_dir: {output_dir} cannot be written from {where} (it must be storage every node "
                f"sees): {answer['output_dir']}"
            )
    return problems

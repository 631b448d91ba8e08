"""Does a step cost the same on two Ray workers as on one? Weak scaling of the Ray launcher.

The embedded tiny Qwen2.5-VL (configs/tiny_cpu.yaml) trains through ``vgrpo train --launcher ray``
on a throwaway two-node Ray cluster on 127.0.0.1 (``tests/helpers/ray_cluster.py``: two nodes of one
CPU each, only this cluster is stopped afterwards), first with one worker, then with two. Each worker
answers the same ``per_device_train_batch_size`` questions a step, so two workers do twice the
questions; a perfect launcher keeps the step time. Ends with one line:

    scaling: workers=1 step_s=X workers=2 step_s=Y efficiency=Z

``step_s``: median ``time/step_s`` of the run (read from its run database), the first
``WARMUP_STEPS`` steps left out; ``efficiency`` = step_s(1) / step_s(2) (1.0: perfect).

    .venv/bin/python bench/scaling.py                  # 20 steps a run (a few minutes on 2 cores)
    .venv/bin/python bench/scaling.py --steps 6        # a quick look
    .venv/bin/python bench/scaling.py --keep           # then keep the cluster until Ctrl-C

The run database is PostgreSQL (the Ray launcher refuses SQLite): a new database on the server of
$VGRPO_TEST_PG_URL, else on the one ``scripts/pg_test_server.sh`` starts, dropped at the end.
Dynamic sampling and held-out evaluation are off, so every step samples the same number of groups.
On 2 cores the two workers take both: any other load on the machine lands on the 2-worker run, so
measure on an otherwise idle machine (the per-step times printed above the line show it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.helpers, as bench/step.py


from tests.helpers.pg import throwaway_database  # noqa: E402
from tests.helpers.ray_cluster import LocalRayCluster, local_ray_cluster, ray_env  # noqa: E402
from trainer.core import metrics_keys as mk  # noqa: E402
from trainer.core.config import build_config, load_yaml, merge  # noqa: E402
from trainer.core.paths import REPO_ROOT  # noqa: E402
from trainer.rundb import RunStore  # noqa: E402

PG_URL_ENV = "VGRPO_TEST_PG_URL"
# Steps left out of the median: the first steps pay for lazy initialisation (allocator, autograd
# graphs, gloo buffers) and are seconds slower than the rest.
WARMUP_STEPS = 2
WORKERS = (1, 2)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.steps <= WARMUP_STEPS:
        raise SystemExit(f"--steps must be > {WARMUP_STEPS} (the warm-up steps are left out)")
    # `timeout` and schedulers end a bench with SIGTERM: exit through the context managers, which
    # stop the cluster (Python's default SIGTERM leaves its processes running) and drop the database.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workspace = Path(tempfile.mkdtemp(prefix="vgrpo-scaling-"))
    with postgres_database() as db, local_ray_cluster(nodes=2, cpus_per_node=1) as cluster:
        print(
            f"cluster: {cluster.dashboard} (temp dir {cluster.temp_dir}); workspace {workspace}", flush=True
        )
        wait_for_job_agent(cluster)
        step_s = {}
        for workers in WORKERS:
            run_id = train(cluster, db, workspace, workers, args.steps)
            with RunStore(db) as store:
                timed = timed_steps_s(store, run_id)
                nodes = placed_nodes(store, run_id, workers)
            step_s[workers] = statistics.median(timed)
            print(
                f"workers={workers}: run {run_id} on {nodes} node(s), step_s after warm-up: "
                + " ".join(f"{t:.2f}" for t in timed),
                flush=True,
            )
        print(scaling_line(step_s[1], step_s[2]), flush=True)
        if args.keep:
            _keep(cluster, db)
    shutil.rmtree(workspace, ignore_errors=True)  # kept when a run failed: its log is there
    return 0


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--steps", type=int, default=20, help=f"steps a run (the first {WARMUP_STEPS} are warm-up)"
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="after the line, keep the cluster and the run database until Ctrl-C (Ray's dashboard, "
        "`vgrpo runs show RUN --db URL`)",
    )
    return parser.parse_args(argv)


def train(cluster: LocalRayCluster, db: str, workspace: Path, workers: int, steps: int) -> int:
    """One run of ``steps`` steps on ``workers`` Ray workers, through the real command line; its id."""
    name = f"scaling-w{workers}"
    cfg = build_config(
        merge(
            load_yaml(REPO_ROOT / "configs" / "tiny_cpu.yaml"),
            {
                "workspace": str(workspace),
                "run_name": name,
                "output_dir": str(workspace / "outputs" / name),
                "max_steps": steps,
                "save_steps": 1_000_000,  # only the final checkpoint
                "eval_dataset_use": "",  # no held-out evaluation inside the timed steps
                "dynamic_sampling": False,  # a refill round would make some steps longer
                "num_processes": 1,  # Ray starts the processes: one per worker
                "launcher": "ray",
                "ray_address": cluster.dashboard,
                "ray_python": sys.executable,
                "num_workers": workers,
                "cpus_per_worker": 1.0,
                "gpus_per_worker": 0.0,
            },
        )
    )
    config_path = workspace / f"{name}.yaml"
    config_path.write_text(cfg.to_yaml())
    log_path = workspace / f"{name}.log"
    cmd = [sys.executable, "-m", "trainer.cli", "train", "--config", str(config_path), "--db", db]
    with log_path.open("w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=ray_env(), cwd=REPO_ROOT)
    if proc.returncode != 0:
        tail = log_path.read_text()[-3000:]
        raise SystemExit(f"{name}: vgrpo train exited {proc.returncode} (log {log_path}):\n{tail}")
    with RunStore(db) as store:
        return store.resolve_run(name).id


def wait_for_job_agent(cluster: LocalRayCluster, timeout_s: float = 120.0) -> None:
    """Submit no-op jobs until one is taken: the nodes show up before the head's job agent does
    (until then a submission waits 10 s and fails with "No available agent to submit job")."""
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(cluster.dashboard)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.submit_job(entrypoint="true", metadata={"vgrpo": "bench-scaling-ready"})
            return
        except RuntimeError as exc:
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"the head at {cluster.dashboard} takes no job after {timeout_s:g} s ({exc}); see "
                    f"{cluster.temp_dir}/session_latest/logs/dashboard_agent.log"
                ) from exc
            time.sleep(1.0)


def placed_nodes(store: RunStore, run_id: int, workers: int) -> int:
    """The Ray nodes the run's workers ran on (SPREAD over two 1-CPU nodes: one each); exits unless
    the run recorded ``workers`` ranks."""
    recorded = store.workers(run_id)
    if len(recorded) != workers:
        raise SystemExit(f"run {run_id} recorded {len(recorded)} workers, not {workers}")
    return len({w.node_id for w in recorded})


def timed_steps_s(store: RunStore, run_id: int) -> tuple[float, ...]:
    """``time/step_s`` of the run's steps after the first ``WARMUP_STEPS``, in step order."""
    series = store.metrics_since(run_id, after_step=WARMUP_STEPS, names=[mk.TIME_STEP_S]).get(mk.TIME_STEP_S)
    if series is None or not series.values:
        raise SystemExit(f"run {run_id} logged no {mk.TIME_STEP_S} after step {WARMUP_STEPS}")
    return series.values


def scaling_line(step_s_1: float, step_s_2: float) -> str:
    """The result line; efficiency = step_s(1) / step_s(2), as twice the work takes as long.

    >>> scaling_line(2.0, 2.5)
    'scaling: workers=1 step_s=2.000 workers=2 step_s=2.500 efficiency=0.80'
    """
    return (
        f"scaling: workers=1 step_s={step_s_1:.3f} workers=2 step_s={step_s_2:.3f} "
        f"efficiency={step_s_1 / step_s_2:.2f}"
    )


@contextmanager
def postgres_database() -> Iterator[str]:
    """The URL of a new PostgreSQL database for this bench's runs; dropped afterwards."""
    admin_url = os.environ.get(PG_URL_ENV) or _start_test_server()
    yield from throwaway_database(admin_url, prefix="vgrpo_scaling_")


def _start_test_server() -> str:
    """The URL ``scripts/pg_test_server.sh`` prints (it starts its throwaway server if needed)."""
    out = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "pg_test_server.sh")],
        capture_output=True,
        text=True,
        check=False,
    )
    prefix = f"export {PG_URL_ENV}="
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith(prefix)), None)
    if line is None:
        raise SystemExit(
            f"no PostgreSQL: set ${PG_URL_ENV} or install postgresql (scripts/pg_test_server.sh said: "
            f"{out.stderr.strip()[-500:]})"
        )
    return line[len(prefix) :].strip("'")


def _keep(cluster: LocalRayCluster, db: str) -> None:
    """Hold the cluster and the database until Ctrl-C: its processes stop with this one."""
    print(
        f"keeping the cluster ({cluster.dashboard}) and the run database ({db}); Ctrl-C stops them",
        flush=True,
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopping the cluster", flush=True)


if __name__ == "__main__":
    sys.exit(main())

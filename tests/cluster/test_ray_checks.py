"""Bad input for a Ray launch, each refused at Check (``check_launch``, which Launch and
``vgrpo train --check`` run too) with an error naming the field, before anything is submitted:
a SQLite run database, no cluster at the address, more workers than the cluster holds, an
output_dir a node cannot write, a head whose Python lacks the package. Plus the pure parts: the
launch section's own rules, the resource fit, the accelerate config as environment, the driver's
account of a failure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.ray_cluster import LocalRayCluster, free_port
from trainer.cluster import ray_jobs
from trainer.core.config import build_config
from trainer.core.errors import ConfigError
from trainer.core.paths import REPO_ROOT, TINY_MODEL_DIR
from trainer.run.cluster_check import required_paths
from trainer.run.preflight import check_launch
from trainer.run.ray_job import worker_failure
from trainer.run.ray_probe import probe_here
from trainer.run.ray_worker import accelerate_env


def ray_config(tmp_path: Path, db: str, address: str, **over: Any) -> dict[str, Any]:
    values = {
        "model_name_or_path": str(TINY_MODEL_DIR),
        "dataset_use": "synthetic_motion_no_think_train%5",
        "workspace": str(tmp_path / "ws"),
        "output_dir": str(tmp_path / "shared" / "run"),
        "db": db,
        "launcher": "ray",
        "ray_address": address,
        "num_workers": 2,
    }
    return values | over


def test_sqlite_is_refused_before_the_cluster_is_asked(tmp_path: Path) -> None:
    """No cluster runs at this address: the database's kind is checked first."""
    cfg = build_config(ray_config(tmp_path, f"sqlite:///{tmp_path / 'runs.db'}", "http://127.0.0.1:9"))
    with pytest.raises(
        ConfigError, match=r"^db: launcher ray needs a run database every node reaches.*PostgreSQL"
    ):
        check_launch(cfg)
    config = tmp_path / "run.yaml"
    config.write_text(cfg.to_yaml())
    cli = subprocess.run(
        [str(Path(sys.executable).parent / "vgrpo"), "train", "--config", str(config), "--check"],
        capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
    )  # fmt: skip
    assert cli.returncode == 2, cli.stderr
    assert "db: launcher ray needs a run database every node reaches" in cli.stderr


def test_no_cluster_at_the_address(tmp_path: Path, pg_url: str) -> None:
    address = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ConfigError, match=rf"^ray_address: no Ray cluster answers at {address}"):
        check_launch(build_config(ray_config(tmp_path, pg_url, address)))


def test_more_workers_than_the_cluster_holds(
    ray_cluster: LocalRayCluster, tmp_path: Path, pg_url: str
) -> None:
    cfg = build_config(ray_config(tmp_path, pg_url, ray_cluster.dashboard, num_workers=3))
    with pytest.raises(
        ConfigError, match=r"^num_workers: the cluster fits 2 of 3 workers of 1 CPU and 0 GPU"
    ):
        check_launch(cfg)
    cfg = build_config(ray_config(tmp_path, pg_url, ray_cluster.dashboard, gpus_per_worker=1))
    with pytest.raises(ConfigError, match=r"fits 0 of 2 workers of 1 CPU and 1 GPU"):
        check_launch(cfg)


def test_every_node_must_write_output_dir_and_reach_the_database(
    ray_cluster: LocalRayCluster, tmp_path: Path, pg_url: str
) -> None:
    blocked = tmp_path / "read-only"
    blocked.write_text("a file where the folder should be")
    bad_db = pg_url.replace("vgrpo_t_", "vgrpo_missing_")
    cfg = build_config(ray_config(tmp_path, bad_db, ray_cluster.dashboard, output_dir=str(blocked / "run")))
    with pytest.raises(ConfigError) as err:
        check_launch(cfg)
    problems = str(err.value).split("; ")
    nodes = ray_cluster.node_ips()
    assert len(
        [p for p in problems if p.startswith("db: the run database does not answer from node")]
    ) == len(nodes)
    writes = [
        p for p in problems if p.startswith(f"output_dir: {blocked / 'run'} cannot be written from node")
    ]
    assert len(writes) == len(nodes), problems
    # The same config with a good database and folder passes (the probe ran on both nodes).
    check_launch(build_config(ray_config(tmp_path, pg_url, ray_cluster.dashboard)))


def test_what_every_node_must_see(tmp_path: Path, pg_url: str) -> None:
    """The probe's list (the model folder, the datasets' files) and its answer on a node lacking one."""
    cfg = build_config(
        ray_config(tmp_path, pg_url, "http://127.0.0.1:9", eval_dataset_use="synthetic_motion_eval")
    )
    required = required_paths(cfg)
    assert required[str(TINY_MODEL_DIR.resolve())] == "model_name_or_path"
    assert sorted(set(required.values())) == ["dataset_use", "eval_dataset_use", "model_name_or_path"]
    assert all(Path(p).exists() for p in required)
    answer = probe_here(pg_url, str(tmp_path / "out"), [*required, "/no/such/model"])
    assert answer["missing"] == ["/no/such/model"]
    assert answer["db"] is None and answer["output_dir"] is None


def test_a_head_python_without_the_package(ray_cluster: LocalRayCluster, tmp_path: Path, pg_url: str) -> None:
    cfg = build_config(ray_config(tmp_path, pg_url, ray_cluster.dashboard, ray_python="/usr/bin/python3 -S"))
    with pytest.raises(
        ConfigError, match=r"^ray_python: the check job could not run `/usr/bin/python3 -S -m"
    ):
        check_launch(cfg)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"launcher": "slurm"}, "launcher must be local or ray, got 'slurm'"),
        ({"launcher": "ray"}, "ray_address is empty"),
        ({"launcher": "ray", "ray_address": "http://h:8265", "num_workers": 0}, "num_workers must be >= 1"),
        ({"cpus_per_worker": 0}, "cpus_per_worker must be > 0"),
        ({"gpus_per_worker": -1}, "gpus_per_worker must be >= 0"),
        ({"max_failures": -1}, "max_failures must be >= 0"),
    ],
)
def test_launch_section_rules(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_config(values)


def test_fits_counts_whole_workers_per_node() -> None:
    nodes = [
        ray_jobs.NodeResources("a", "10.0.0.1", {"CPU": 3.0, "GPU": 2.0}),
        ray_jobs.NodeResources("b", "10.0.0.2", {"CPU": 1.0}),
    ]
    assert ray_jobs.fits(nodes, 3, 1.0, 0.0) is None
    assert ray_jobs.fits(nodes, 2, 1.0, 1.0) is None  # both on node a
    assert ray_jobs.fits(nodes, 3, 1.0, 1.0) == (
        "the cluster fits 2 of 3 workers of 1 CPU and 1 GPU each "
        "(nodes: 10.0.0.1 3 CPU 2 GPU, 10.0.0.2 1 CPU 0 GPU)"
    )
    assert ray_jobs.fits(nodes, 2, 2.0, 0.0) == (
        "the cluster fits 1 of 2 workers of 2 CPU and 0 GPU each "
        "(nodes: 10.0.0.1 3 CPU 2 GPU, 10.0.0.2 1 CPU 0 GPU)"
    )


def test_accelerate_config_becomes_the_environment_accelerate_launch_sets() -> None:
    env = accelerate_env("configs/accelerate_zero2_cpu.yaml", 2)
    assert env["ACCELERATE_USE_DEEPSPEED"] == "true"
    assert env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == "2"
    assert env["ACCELERATE_MIXED_PRECISION"] == "no"
    assert accelerate_env("", 2) == {}
    fsdp = accelerate_env(str(REPO_ROOT / "configs" / "accelerate_fsdp.yaml"), 2)
    assert fsdp["ACCELERATE_USE_FSDP"] == "true"


def test_an_accelerate_config_accelerate_cannot_read(tmp_path: Path) -> None:
    cfg = build_config(
        ray_config(
            tmp_path, "postgresql+psycopg://u@h/db", "http://127.0.0.1:9", accelerate_config="nope.yaml"
        )
    )
    with pytest.raises(ConfigError, match=r"^accelerate_config: accelerate cannot use nope.yaml"):
        check_launch(cfg)


def test_the_driver_names_the_worker_that_died_first() -> None:
    class WorkerHealthCheckFailedError(Exception):
        pass

    class WorkerGroupError(Exception):
        def __init__(self, failures: dict[int, Exception]) -> None:
            super().__init__("Training failed due to worker errors")
            self.worker_failures = failures

    died = WorkerHealthCheckFailedError("A worker health check failed.")
    died.__cause__ = RuntimeError("The actor died unexpectedly before finishing this task.")
    error, tb = worker_failure(WorkerGroupError({0: RuntimeError("gloo: Connection reset by peer"), 1: died}))
    assert error == (
        "worker rank 1: WorkerHealthCheckFailedError: A worker health check failed. (RuntimeError: The "
        "actor died unexpectedly before finishing this task.); worker rank 0: RuntimeError: gloo: "
        "Connection reset by peer"
    )
    assert tb.index("--- rank 1 ---") < tb.index("--- rank 0 ---")
    assert worker_failure(ValueError("no group"))[0] == "ValueError: no group"


def test_unreachable_heads_are_not_asked_again_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    address = f"http://127.0.0.1:{free_port()}"
    ray_jobs.forget_unreachable()

    def refused() -> None:
        calls.append(1)
        raise ConnectionError("refused")

    with pytest.raises(ray_jobs.ClusterUnreachable, match=f"Ray cluster at {address} is unreachable"):
        ray_jobs._bounded(address, refused, "a test call")
    with pytest.raises(ray_jobs.ClusterUnreachable, match="no answer recently"):
        ray_jobs._bounded(address, refused, "a test call")
    assert calls == [1]
    ray_jobs.forget_unreachable()


def test_an_unreachable_head_shows_as_such_and_fails_nothing(tmp_path: Path) -> None:
    """A running Ray run whose head stopped answering: the Monitor says the cluster is unreachable,
    the reap leaves the run running (its job may still train), and the log says why it is missing."""
    from studio.ray_supervision import cluster_note, log_tail
    from studio.tabs.monitor_views import status_markdown
    from trainer.rundb import Owner, RunStore

    address = f"http://127.0.0.1:{free_port()}"
    ray_jobs.forget_unreachable()
    with RunStore(f"sqlite:///{tmp_path / 'runs.db'}") as store:
        launcher, rank0 = Owner(11, 1.0, "studio"), Owner(22, 2.0, "node-a")
        run = store.create_run("r", config={}, owner=launcher)
        assert store.assign_ray_job(run.id, launcher, "vgrpo-run1-x", address)
        store.claim_run(run.id, rank0, ray_job="vgrpo-run1-x")
        assert store.reap_dead_runs([run.id], now=10**10) == []
        run = store.get_run(run.id)
    assert run.status == "running"
    note = cluster_note(run)
    assert note is not None and note.startswith(
        f"cluster unreachable: Ray cluster at {address} is unreachable"
    )
    assert "**Cluster:** cluster unreachable" in status_markdown(run, None, note)
    assert log_tail(address, "vgrpo-run1-x", 10).startswith(f"[Ray cluster at {address} is unreachable")
    ray_jobs.forget_unreachable()

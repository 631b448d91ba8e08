"""Runs on a Ray cluster, end to end, on two Ray nodes of this host (tests/helpers/ray_cluster.py)
with a PostgreSQL run database: the real ``vgrpo train --launcher ray``, Ray's Jobs API, Ray Train's
TorchTrainer and our loop in each worker.

* two workers land on two nodes, train the tiny model (its weights change), log each step once, and
  a second command resumes the run from its checkpoint as attempt 2;
* DeepSpeed ZeRO-2 on CPUs across the two nodes;
* a worker process killed: the run ends ``failed`` with that worker's error in bounded time; with
  ``max_failures: 1`` Ray restarts the workers and the run goes on from its last checkpoint as a new
  attempt and finishes;
* the studio's Supervisor launches, aborts (the run saves and ends ``aborted``), resumes and aborts
  again; a second Supervisor (a restarted studio) finds the running run, its job log and aborts it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from safetensors.torch import load_file
from sqlalchemy import text

from studio.context import StudioContext
from studio.supervisor import Supervisor
from tests.helpers.ray_cluster import LocalRayCluster, ray_env
from trainer.core import metrics_keys as mk
from trainer.core.config import build_config, load_yaml
from trainer.core.paths import REPO_ROOT, TINY_MODEL_DIR
from trainer.rundb import Run, RunStore

pytestmark = pytest.mark.slow

RUN_TIMEOUT_S = 420


def write_config(tmp_path: Path, pg_url: str, cluster: LocalRayCluster, name: str, **over: Any) -> Path:
    """A tiny-model run config for the cluster: 2 workers of 1 CPU, 2 questions x 2 completions each."""
    launch = {"launcher": "ray", "ray_address": cluster.dashboard, "num_workers": 2, "cpus_per_worker": 1}
    launch |= over.pop("launch", {})
    cfg = {
        "model": {"model_name_or_path": str(TINY_MODEL_DIR)},
        "data": {
            "dataset_use": "synthetic_motion_no_think_train%5",
            "workspace": str(tmp_path / "ws"),
            "video_cache_mb": 0,
        },
        "video": {"fps": 8.0, "max_frames": 8, "min_pixels": 3136, "max_pixels": 3136},
        "grpo": {"grpo_sample_size": 2, "generation_max_length": 8, "grpo_beta": 0.04},
        "optim": {
            "learning_rate": 0.001,
            "max_steps": over.pop("max_steps", 3),
            "per_device_train_batch_size": 2,
            "lr_scheduler_type": "constant",
        },
        "run": {
            "save_steps": over.pop("save_steps", 2),
            "output_dir": str(tmp_path / "shared" / name),
            "num_threads": 1,
            "run_name": name,
            "db": pg_url,
        },
        "launch": launch,
    }
    assert not over, over
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    build_config(load_yaml(str(path)))  # a test config that does not parse fails here, not in Ray
    return path


def vgrpo(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "vgrpo"), *args]


def train(config: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        vgrpo("train", "--config", str(config), *flags),
        capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=ray_env(), cwd=REPO_ROOT,
    )  # fmt: skip


def wait_for(predicate: Any, what: str, timeout_s: float = RUN_TIMEOUT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")


def metric_attempts(store: RunStore, run_id: int, name: str = mk.TOTAL_REWARD) -> dict[int, int]:
    """{step: attempt that wrote it} of one metric."""
    with store.session() as s:
        rows = s.execute(
            text("SELECT step, attempt FROM metrics WHERE run_id = :r AND name = :n"),
            {"r": run_id, "n": name},
        ).all()
    return {step: attempt for step, attempt in rows}


def max_weight_change(checkpoint: Path) -> float:
    before, after = (
        load_file(TINY_MODEL_DIR / "model.safetensors"),
        load_file(checkpoint / "model.safetensors"),
    )
    common = sorted(set(before) & set(after))
    assert common, "no common weights between the tiny model and the checkpoint"
    return max(float((after[k].float() - before[k].float()).abs().max()) for k in common)


def the_run(pg_url: str, name: str) -> Run:
    with RunStore(pg_url) as store:
        (run,) = [r for r in store.list_runs() if r.name == name]
        return run


def test_two_workers_on_two_nodes_train_log_once_and_resume(
    ray_cluster: LocalRayCluster, pg_url: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path, pg_url, ray_cluster, "two-nodes")
    first = train(config)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-5000:]
    run = the_run(pg_url, "two-nodes")
    assert (run.status, run.attempt) == ("finished", 1), run.error
    assert run.ray_job_id and run.ray_job_id.startswith(f"vgrpo-run{run.id}-")
    assert run.ray_address == ray_cluster.dashboard
    assert f"run {run.id}: Ray job {run.ray_job_id}" in first.stdout

    shown = subprocess.run(
        vgrpo("runs", "show", str(run.id), "--json", "--db", pg_url),
        capture_output=True,
        text=True,
        check=True,
    )
    workers = json.loads(shown.stdout)["workers"]
    assert [w["rank"] for w in workers] == [0, 1]
    assert len({w["node_id"] for w in workers}) == 2, workers  # one worker on each node
    nodes = ray_cluster.node_ips()
    assert {(w["node_id"], w["ip"]) for w in workers} == set(nodes.items())
    assert all(w["host"] and w["pid"] > 0 and w["ray_job_id"] == run.ray_job_id for w in workers), workers

    out = Path(run.output_dir or "")
    assert max_weight_change(out / "checkpoint-3") > 1e-6
    with RunStore(pg_url) as store:
        assert metric_attempts(store, run.id) == {1: 1, 2: 1, 3: 1}

    # A second command resumes it from checkpoint-3: attempt 2 of the same run, steps 4 and 5.
    second = train(config, "--max_steps", "5", "--resume_from_checkpoint", "latest")
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-5000:]
    resumed = the_run(pg_url, "two-nodes")
    assert (resumed.id, resumed.status, resumed.attempt) == (run.id, "finished", 2)
    assert resumed.ray_job_id != run.ray_job_id
    with RunStore(pg_url) as store:
        assert metric_attempts(store, run.id) == {1: 1, 2: 1, 3: 1, 4: 2, 5: 2}
        assert [w.attempt for w in store.workers(run.id)] == [2, 2]
        events = [e.message for e in store.events(run.id) if e.kind == "resumed"]
    assert events and events[-1].endswith("checkpoint-3")
    assert max_weight_change(out / "checkpoint-5") > 1e-6


def test_zero2_across_two_nodes(ray_cluster: LocalRayCluster, pg_url: str, tmp_path: Path) -> None:
    config = write_config(
        tmp_path, pg_url, ray_cluster, "zero2", max_steps=2,
        launch={"accelerate_config": "configs/accelerate_zero2_cpu.yaml"},
    )  # fmt: skip
    done = train(config)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    run = the_run(pg_url, "zero2")
    assert run.status == "finished", run.error
    assert "DeepSpeed" in done.stderr or "deepspeed" in done.stderr.lower(), done.stderr[-3000:]
    with RunStore(pg_url) as store:
        assert len({w.node_id for w in store.workers(run.id)}) == 2
    assert max_weight_change(Path(run.output_dir or "") / "checkpoint-2") > 1e-6


def _rank1_pid(pg_url: str, name: str, attempt: int = 1) -> int | None:
    try:
        run = the_run(pg_url, name)
    except ValueError:
        return None
    with RunStore(pg_url) as store:
        workers = [w for w in store.workers(run.id) if w.attempt == attempt]
        steps = metric_attempts(store, run.id)
    if len(workers) < 2 or not steps:
        return None
    return workers[1].pid


def test_a_killed_worker_fails_the_run_with_its_error(
    ray_cluster: LocalRayCluster, pg_url: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path, pg_url, ray_cluster, "killed", max_steps=500, save_steps=500)
    proc = subprocess.Popen(
        vgrpo("train", "--config", str(config)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=ray_env(), cwd=REPO_ROOT,
    )  # fmt: skip
    try:
        pid = wait_for(lambda: _rank1_pid(pg_url, "killed"), "rank 1 training", 240)
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=180)
    finally:
        proc.kill()
    took = time.monotonic() - killed_at
    run = the_run(pg_url, "killed")
    assert proc.returncode == 1, out[-2000:] + err[-3000:]
    assert run.status == "failed"
    assert "rank 1" in (run.error or ""), (run.error, err[-6000:])
    assert took < 120, f"the failure took {took:.0f} s to be recorded"
    assert f"run {run.id}: failed" in out


def test_max_failures_restarts_from_the_last_checkpoint_as_a_new_attempt(
    ray_cluster: LocalRayCluster, pg_url: str, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path, pg_url, ray_cluster, "restarted", max_steps=8, save_steps=2, launch={"max_failures": 1}
    )
    proc = subprocess.Popen(
        vgrpo("train", "--config", str(config)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=ray_env(), cwd=REPO_ROOT,
    )  # fmt: skip
    try:

        def after_checkpoint() -> int | None:
            pid = _rank1_pid(pg_url, "restarted")
            out = tmp_path / "shared" / "restarted"
            return pid if pid and (out / "checkpoint-2" / "trainer_state.json").exists() else None

        os.kill(wait_for(after_checkpoint, "checkpoint-2", 240), signal.SIGKILL)
        out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        proc.kill()
    assert proc.returncode == 0, out[-2000:] + err[-4000:]
    run = the_run(pg_url, "restarted")
    assert (run.status, run.attempt) == ("finished", 2), run.error
    with RunStore(pg_url) as store:
        first, second = store.attempts(run.id)
        steps = metric_attempts(store, run.id)
        resumed = [e.message for e in store.events(run.id) if e.kind == "resumed"]
    assert (first.status, second.status) == ("failed", "finished")
    # Rank 0 ended its attempt with what it saw (its peer gone in a collective); had rank 0 itself
    # died, the new rank 0's claim would have closed it (rundb's RAY_RESTART_REASON).
    assert first.end_reason, first
    assert resumed, "the restarted workers did not resume from a checkpoint"
    assert sorted(steps) == list(range(1, 9))
    assert steps[8] == 2 and steps[1] == 1


def _steps_logged(store: RunStore, run_id: int) -> int:
    return max(metric_attempts(store, run_id), default=0)


def test_abort_resume_abort_through_the_supervisor_and_a_restarted_studio(
    ray_cluster: LocalRayCluster, pg_url: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path, pg_url, ray_cluster, "supervised", max_steps=400, save_steps=400)
    cfg = build_config(load_yaml(str(config)))
    ctx = StudioContext(tmp_path / "studio-ws", db_url=pg_url)
    sup = Supervisor(ctx, grace_s=120)
    launched = sup.start(cfg)
    run_id = launched.run.id
    try:
        wait_for(lambda: _steps_logged(ctx.store, run_id) >= 2, "step 2", 240)
        assert "RayTrainWorker" in sup.log_tail(ctx.store.get_run(run_id), 400)  # the Monitor's log
        sup.abort(run_id)
        run = wait_for(lambda: (r := ctx.store.get_run(run_id)).status == "aborted" and r, "aborted", 120)
        assert "a stop request in the run database" in (run.end_reason or ""), run.end_reason
        first_stop = _steps_logged(ctx.store, run_id)
        assert ctx.store.checkpoints(run_id)[-1].step == first_stop  # saved where it stopped

        sup.resume(run_id)
        wait_for(lambda: _steps_logged(ctx.store, run_id) >= first_stop + 2, "resumed steps", 240)
        # A restarted studio: a new context and Supervisor over the same database find the run.
        ctx2 = StudioContext(tmp_path / "studio-ws", db_url=pg_url)
        sup2 = Supervisor(ctx2, grace_s=120)
        (found,) = [r for r in sup2.runs() if r.id == run_id]
        assert (found.status, found.attempt) == ("running", 2)
        assert sup2.cluster_note(found) == f"Ray job {found.ray_job_id}: running"
        assert "RayTrainWorker" in sup2.log_tail(found, 400)
        sup2.abort(run_id)
        run = wait_for(
            lambda: (r := ctx2.store.get_run(run_id)).status == "aborted" and r, "aborted again", 120
        )
        ctx2.store.close()
    finally:
        if ctx.store.get_run(run_id).is_active:
            from trainer.cluster import ray_jobs

            ray_jobs.stop(ray_cluster.dashboard, ctx.store.get_run(run_id).ray_job_id or "")
    attempts = ctx.store.attempts(run_id)
    assert [(a.number, a.status) for a in attempts] == [(1, "aborted"), (2, "aborted")]
    steps = metric_attempts(ctx.store, run_id)
    assert min(s for s, a in steps.items() if a == 2) == first_stop + 1  # went on from the checkpoint
    assert ctx.store.checkpoints(run_id)[-1].step == max(steps)
    ctx.store.close()

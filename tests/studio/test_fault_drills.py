"""Fault drills on the REAL trainer subprocess (tiny model, a few steps), driven by the Supervisor.

* abort -> resume, three rounds, on one run: one trainer at any moment, Resume and a second trainer
  on the command line refused while it trains, two Resumes at once start one trainer, the run ends
  finished with contiguous metric steps, one attempt per trainer, checkpoints on disk as recorded;
* SIGKILL during a checkpoint write at a random step: the previous checkpoint is intact, the run is
  failed, Resume from ``latest`` finishes, and every step's metrics equal an uninterrupted run's.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from safetensors.torch import load_file
from studio_helpers import wait_for

from studio.context import StudioContext
from studio.supervisor import Launched, Supervisor
from trainer.core import metrics_keys as mk
from trainer.core.config import TrainConfig, build_config
from trainer.core.errors import StudioError
from trainer.core.paths import REPO_ROOT, TINY_MODEL_DIR
from trainer.run.checkpoint import checkpoint_dirs, read_state
from trainer.rundb import RunStore
from trainer.rundb.liveness import is_process_alive

pytestmark = pytest.mark.slow

COMPARED = [mk.TOTAL_REWARD, mk.FORMAT_REWARD, mk.LOSS, mk.KL_DIV, mk.POLICY_SEQ_LOG_PROB, mk.LEARNING_RATE]
TRAIN_TIMEOUT_S = 240.0


def tiny(run_name: str, max_steps: int, **overrides: object) -> TrainConfig:
    values: dict[str, object] = {
        "model_name_or_path": str(TINY_MODEL_DIR),
        "dataset_use": "synthetic_motion_train%5",
        "run_name": run_name,
        "fps": 8.0,
        "max_frames": 8,
        "min_pixels": 3136,
        "max_pixels": 3136,
        "grpo_sample_size": 2,
        "generation_max_length": 12,
        "grpo_beta": 0.04,
        "learning_rate": 1e-3,
        "per_device_train_batch_size": 2,
        "max_steps": max_steps,
        "save_steps": 1,
        "grpo_logging_steps": 100,
        "seed": 7,
        "num_threads": 1,
    }
    return build_config(values | overrides)


def last_step(store: RunStore, run_id: int) -> int:
    series = store.metrics_since(run_id, names=[mk.TOTAL_REWARD]).get(mk.TOTAL_REWARD)
    return series.last_step or 0 if series else 0


def trainers(launched: Launched) -> list[psutil.Process]:
    """Live trainer processes started for this run (found by their config file)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmd = proc.info["cmdline"] or []
        if str(launched.config_path) in cmd and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


def test_abort_resume_three_rounds_one_trainer_at_a_time(ctx: StudioContext) -> None:
    sup = Supervisor(ctx, grace_s=120.0)
    steps = 30  # more than the three rounds reach (each stops a step or two after it starts)
    launched = sup.start(tiny("drill", steps, save_total_limit=2))
    run_id, store = launched.run.id, ctx.store
    for round_ in range(3):
        reached = last_step(store, run_id) + 1
        wait_for(
            lambda r=reached: last_step(store, run_id) >= r, TRAIN_TIMEOUT_S, f"round {round_}: a new step"
        )
        assert store.get_run(run_id).status == "running"
        [proc] = trainers(launched)
        assert proc.pid == launched.pid
        if round_ == 0:
            # Paused (SIGSTOP) while the refusals are tried: a second CLI trainer takes seconds to
            # start, and on a fast machine the run once finished all its steps in that time, leaving
            # nothing to abort. A stopped process still exists, so it still owns the run.
            proc.suspend()
            try:
                _second_trainers_are_refused(sup, run_id, launched)
            finally:
                proc.resume()
        sup.abort(run_id)
        wait_for(lambda: store.get_run(run_id).status == "aborted", TRAIN_TIMEOUT_S, "aborted")
        wait_for(lambda old=launched: not trainers(old), 30, "the trainer to exit")
        run = store.get_run(run_id)
        assert (run.error, run.end_reason) == (None, "stopped by SIGTERM after saving a checkpoint")
        if round_ == 1:
            launched = _resume_twice_at_once(sup, run_id)
        else:
            launched = sup.resume(run_id)
    wait_for(lambda: not store.get_run(run_id).is_active, TRAIN_TIMEOUT_S, "the last attempt to end")
    run = store.get_run(run_id)
    assert (run.status, run.error, run.end_reason, run.attempt) == ("finished", None, None, 4)
    attempts = store.attempts(run_id)
    assert [a.status for a in attempts] == ["aborted"] * 3 + ["finished"]
    assert len({a.pid for a in attempts}) == 4 and all(a.duration_s > 0 for a in attempts)
    # Every step once, in order; one point per (step, name) however often steps were re-run.
    series = store.metrics_since(run_id)
    assert list(series[mk.TOTAL_REWARD].steps) == list(range(1, steps + 1))
    assert store.count_rows(run_id)["metrics"] == sum(len(s.steps) for s in series.values())
    # The checkpoints offered are on disk; the rotated ones are marked deleted.
    live = store.checkpoints(run_id)
    assert [c.step for c in live] == [steps - 1, steps]
    assert [Path(c.path) for c in live] == checkpoint_dirs(run.output_dir)
    gone = [c for c in store.checkpoints(run_id, include_deleted=True) if c.is_deleted]
    assert gone and not any(Path(c.path).exists() for c in gone)


def _second_trainers_are_refused(sup: Supervisor, run_id: int, launched: Launched) -> None:
    with pytest.raises(StudioError, match=rf"run {run_id} is running, owned by pid {launched.pid} on "):
        sup.resume(run_id)
    second = subprocess.run(
        [sys.executable, "-m", "trainer.cli", "train", "--config", str(launched.config_path)]
        + ["--attach_run", str(run_id)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )
    assert second.returncode == 1, second.stderr[-2000:]
    assert f"owned by pid {launched.pid} on " in second.stderr
    assert len(trainers(launched)) == 1


def _resume_twice_at_once(sup: Supervisor, run_id: int) -> Launched:
    go = threading.Barrier(2)
    outcomes: list[object] = []

    def press() -> None:
        go.wait()
        try:
            outcomes.append(sup.resume(run_id))
        except StudioError as exc:
            outcomes.append(exc)

    presses = [threading.Thread(target=press) for _ in range(2)]
    for t in presses:
        t.start()
    for t in presses:
        t.join()
    started = [o for o in outcomes if isinstance(o, Launched)]
    refused = [o for o in outcomes if isinstance(o, StudioError)]
    assert len(started) == 1 and len(refused) == 1, outcomes
    assert f"run {run_id} is queued" in str(refused[0]) or f"run {run_id} is running" in str(refused[0])
    return started[0]


def test_sigkill_during_a_checkpoint_write_then_resume_matches_an_uninterrupted_run(
    ctx: StudioContext, tmp_path: Path
) -> None:
    steps = 6
    seed = random.randrange(1_000_000)
    kill_step = random.Random(seed).randint(2, steps - 2)
    sup = Supervisor(ctx)
    reference = sup.start(tiny("reference", steps))
    launched = sup.start(tiny("killed", steps))
    run_id, out = launched.run.id, Path(launched.run.output_dir)
    partial = out / f".tmp-checkpoint-{kill_step}"
    cut_short = _kill_when(partial, launched.pid, TRAIN_TIMEOUT_S)
    wait_for(lambda: ctx.store.get_run(run_id).status == "failed", 30, f"failed (random seed {seed})")
    assert ctx.store.get_run(run_id).error.startswith(f"trainer exited with code {-signal.SIGKILL}")
    # The save was cut short (or had just finished): either way the newest complete checkpoint is
    # whole and resumable.
    latest = checkpoint_dirs(out)[-1]
    assert latest.name == f"checkpoint-{kill_step - 1 if cut_short else kill_step}", (seed, cut_short)
    assert read_state(latest).step == int(latest.name.split("-")[1])
    assert load_file(str(latest / "model.safetensors"))
    resumed = sup.resume(run_id)
    assert resumed.pid != launched.pid
    for run in (reference.run.id, run_id):
        wait_for(
            lambda r=run: ctx.store.get_run(r).status == "finished", TRAIN_TIMEOUT_S, f"run {run} finished"
        )
    want = ctx.store.metrics_since(reference.run.id, names=COMPARED)
    got = ctx.store.metrics_since(run_id, names=COMPARED)
    for name in COMPARED:
        assert got[name].steps == want[name].steps == tuple(range(1, steps + 1)), name
        assert got[name].values == pytest.approx(want[name].values, rel=1e-6, abs=1e-6), (name, seed)
    assert [a.status for a in ctx.store.attempts(run_id)] == ["failed", "finished"]
    wait_for(lambda: not trainers(resumed) and not trainers(reference), 60, "the trainers to exit")


def _kill_when(partial: Path, pid: int, timeout_s: float) -> bool:
    """SIGKILL the trainer's group as soon as ``partial`` (a checkpoint being written) appears.
    Returns whether the write was still unfinished at the kill. Polls every millisecond: a tiny
    model's save takes far longer."""
    deadline = time.monotonic() + timeout_s
    pause = threading.Event()
    while not partial.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{partial} never appeared")
        pause.wait(0.001)
    psutil.Process(pid).send_signal(signal.SIGKILL)
    return partial.exists()


def test_a_new_studio_reattaches_to_a_running_trainer_and_evaluation(ctx: StudioContext) -> None:
    from studio.tabs.evaluate import start_evaluation

    first = Supervisor(ctx)
    launched = first.start(tiny("long", 200))
    # The 2000 training records one at a time: still running when the new studio cancels it (the 200
    # held-out ones were once all answered, and the job finished, while a loaded machine got there).
    job = start_evaluation(ctx, str(TINY_MODEL_DIR), "synthetic_motion_train", launched.run.id, 0, 1, first)
    wait_for(lambda: last_step(ctx.store, launched.run.id) >= 1, TRAIN_TIMEOUT_S, "training to step")
    wait_for(lambda: ctx.store.get_job(job.id).status == "running", TRAIN_TIMEOUT_S, "the evaluation to run")
    # A "studio restart": a new context and supervisor on the same workspace, nothing in memory.
    ctx2 = StudioContext(ctx.workspace)
    try:
        second = Supervisor(ctx2)
        [run] = second.runs()
        [found] = second.jobs(kind="evaluate")
        assert (run.id, run.status, run.pid) == (launched.run.id, "running", launched.pid)
        assert (found.id, found.status, found.run_id, found.progress_total) == (
            job.id,
            "running",
            run.id,
            2000,
        )
        assert second.cancel_job(job.id) == found.pid
        assert second.abort(run.id) == launched.pid
        wait_for(lambda: not ctx2.store.get_job(job.id).is_active, 60, "the evaluation to stop")
        wait_for(lambda: not ctx2.store.get_run(run.id).is_active, TRAIN_TIMEOUT_S, "the trainer to stop")
        cancelled, aborted = ctx2.store.get_job(job.id), ctx2.store.get_run(run.id)
        assert (cancelled.status, cancelled.error, cancelled.end_reason) == (
            "aborted",
            None,
            "stopped by SIGTERM",
        )
        assert (aborted.status, aborted.error) == ("aborted", None)
        # No orphans: both processes exit once they have written how they ended.
        for owner in (found.owner, run.owner):
            wait_for(lambda o=owner: not is_process_alive(o), 60, f"{owner} to exit")
    finally:
        ctx2.store.close()

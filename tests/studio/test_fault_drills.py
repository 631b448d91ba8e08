"""Fault drills on the REAL trainer subprocess (tiny model, a few steps), driven by the Supervisor.

* abort -> resume, three rounds, on one run: one trainer at any moment, Resume and a second trainer
  on the command line refused while it trains, two Resumes at once start one trainer, the run ends
  finished with contiguous metric steps, one attempt per trainer, checkpoints on disk as recorded;
* SIGKILL during a checkpoint write at a random step: the previous checkpoint is intact, the run is
  failed, Resume from ``latest`` finishes, and every step's metrics equal an uninterrupted run's.
* In both, each metric point carries the attempt that wrote it: a resumed attempt wrote exactly the
  steps after the checkpoint it resumed from (a resume that retrained from step 1 would own them all).
* A trainer frozen (SIGSTOP) past its liveness timeout, as another host sees it, loses its run to a
  Resume; woken up, it exits without writing a row or a checkpoint into the run its successor holds.
* The studio's OS process killed outright while a trainer and an evaluation run: a new studio
  process finds both running, they finish, and the rows the dead studio had queued are ended.
"""

from __future__ import annotations

import json
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from safetensors.torch import load_file
from studio_helpers import wait_for

from studio.context import StudioContext
from studio.supervisor import Launched, Supervisor
from tests.helpers.pg import postgres_database
from trainer.core import metrics_keys as mk
from trainer.core.config import TrainConfig, build_config
from trainer.core.errors import StudioError
from trainer.core.paths import REPO_ROOT, TINY_MODEL_DIR
from trainer.run.checkpoint import checkpoint_dirs, read_state
from trainer.rundb import RunStore
from trainer.rundb.liveness import HOST_ENV, is_process_alive

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


def assert_each_step_written_by_the_attempt_that_trained_it(
    store: RunStore, run_id: int, resumed_from: dict[int, int]
) -> None:
    """Attempt ``k`` resumed from the checkpoint of step ``resumed_from[k]`` (0: attempt 1 started
    fresh) and trained the steps after it, up to where the next attempt resumed: every metric point
    of those steps carries ``k``. A resume that ignored its checkpoint and retrained from step 1
    would carry the last attempt's number on every step."""
    starts = sorted(resumed_from.items())
    wrong = [
        (p.step, p.name, p.attempt)
        for p in store.metric_points(run_id)
        if p.attempt != max(a for a, after in starts if after < p.step)
    ]
    assert not wrong, (resumed_from, wrong[:10])


def resumed_from_checkpoints(store: RunStore, run_id: int) -> dict[int, int]:
    """Attempt -> the step it resumed from, by the checkpoint rows: attempt k resumed from the newest
    checkpoint saved by an earlier attempt (an aborted attempt records its last one before it ends)."""
    saved = [(c.attempt, c.step) for c in store.checkpoints(run_id, include_deleted=True)]
    attempts = [a.number for a in store.attempts(run_id)]
    return {k: max((step for a, step in saved if a is not None and a < k), default=0) for k in attempts}


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
    resumed_from = resumed_from_checkpoints(store, run_id)
    assert list(resumed_from) == [1, 2, 3, 4] and resumed_from[1] == 0
    assert resumed_from[2] < resumed_from[3] < resumed_from[4] < steps, resumed_from
    assert_each_step_written_by_the_attempt_that_trained_it(store, run_id, resumed_from)


def test_two_training_processes_abort_and_resume_twice(ctx: StudioContext) -> None:
    """The tiny presets train in two processes (``num_processes: 2``: the studio starts `accelerate
    launch`). Abort reaches rank 0 (the run's owner), every rank agrees to stop at the same step,
    saves and leaves; Resume starts a new launcher that continues from that checkpoint."""
    sup = Supervisor(ctx, grace_s=120.0)
    steps = 24
    launched = sup.start(tiny("two", steps, num_processes=2))
    run_id, store = launched.run.id, ctx.store
    for round_ in range(2):
        reached = last_step(store, run_id) + 1
        wait_for(lambda r=reached: last_step(store, run_id) >= r, TRAIN_TIMEOUT_S, f"round {round_}: a step")
        # The launcher and its two ranks: the run's owner is rank 0, a child of the launcher.
        procs = trainers(launched)
        assert len(procs) == 3, [p.cmdline()[:3] for p in procs]
        owner = store.get_run(run_id).owner
        assert owner is not None and owner.pid != launched.pid
        assert psutil.Process(owner.pid).parent().pid == launched.pid
        sup.abort(run_id)
        wait_for(lambda: store.get_run(run_id).status == "aborted", TRAIN_TIMEOUT_S, "aborted")
        wait_for(lambda old=launched: not trainers(old), 60, "every process of the run to exit")
        run = store.get_run(run_id)
        assert (run.error, run.end_reason) == (None, "stopped by SIGTERM after saving a checkpoint")
        launched = sup.resume(run_id)
    wait_for(lambda: not store.get_run(run_id).is_active, TRAIN_TIMEOUT_S, "the last attempt to end")
    run = store.get_run(run_id)
    assert (run.status, run.error, run.attempt) == ("finished", None, 3)
    assert [a.status for a in store.attempts(run_id)] == ["aborted", "aborted", "finished"]
    assert list(store.metrics_since(run_id)[mk.TOTAL_REWARD].steps) == list(range(1, steps + 1))
    resumed_from = resumed_from_checkpoints(store, run_id)
    assert 0 == resumed_from[1] < resumed_from[2] < resumed_from[3] < steps, resumed_from
    assert_each_step_written_by_the_attempt_that_trained_it(store, run_id, resumed_from)


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
    resumed_step = int(latest.name.split("-")[1])
    assert_each_step_written_by_the_attempt_that_trained_it(ctx.store, run_id, {1: 0, 2: resumed_step})
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


@pytest.fixture
def pg_ctx(tmp_path: Path) -> Iterator[StudioContext]:
    """A studio workspace whose run database is a throwaway PostgreSQL database (a shared server,
    as several hosts would use)."""
    for url in postgres_database():
        context = StudioContext(tmp_path / "ws", url)
        yield context
        context.store.close()


def _resume_once_dead(sup: Supervisor, run_id: int) -> Launched | None:
    """Resume, or None while the run's owner still counts as alive (refused, naming it)."""
    try:
        return sup.resume(run_id)
    except StudioError as exc:
        assert f"run {run_id} is running, owned by pid" in str(exc)
        return None


def test_a_trainer_frozen_past_its_liveness_loses_its_run_and_writes_nothing_after(
    pg_ctx: StudioContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first trainer records another host name: this process judges it by its heartbeat alone,
    # as a studio on a second machine would (two missed beats: dead), not by looking up its pid.
    monkeypatch.setenv(HOST_ENV, "drill-node-a")
    sup, store = Supervisor(pg_ctx, grace_s=120.0), pg_ctx.store
    first = sup.start(tiny("frozen", 30))
    run_id = first.run.id
    wait_for(lambda: last_step(store, run_id) >= 2, TRAIN_TIMEOUT_S, "the first trainer to train")
    monkeypatch.delenv(HOST_ENV)
    frozen = store.get_run(run_id).owner
    assert frozen is not None and frozen.host == "drill-node-a"
    psutil.Process(first.pid).suspend()
    try:
        second = wait_for(lambda: _resume_once_dead(sup, run_id), 90, "a Resume to take the run over")
        assert isinstance(second, Launched) and second.pid != first.pid
        wait_for(
            lambda: any(p.attempt == 2 for p in store.metric_points(run_id)), TRAIN_TIMEOUT_S, "a new step"
        )
        # What the frozen attempt had written when it lost the run.
        before = {(p.step, p.name) for p in store.metric_points(run_id) if p.attempt == 1}
        saved_before = {c.step for c in store.checkpoints(run_id, include_deleted=True) if c.attempt == 1}
    finally:
        psutil.Process(first.pid).resume()
    # Woken, it finds its run lost (its next beat or write is refused) and stops within a step.
    wait_for(lambda: not is_process_alive(frozen), 120, "the woken trainer to exit")
    wait_for(lambda: not store.get_run(run_id).is_active, TRAIN_TIMEOUT_S, "the new attempt to end")
    wait_for(lambda: not trainers(second), 60, "the new trainer to exit")
    run = store.get_run(run_id)
    assert (run.status, run.attempt, run.error) == ("finished", 2, None)
    attempts = store.attempts(run_id)
    assert [(a.number, a.status) for a in attempts] == [(1, "failed"), (2, "finished")]
    assert attempts[0].end_reason is not None and "no heartbeat for" in attempts[0].end_reason
    # None of its rows landed after the takeover: what it owns now it owned then.
    assert {(p.step, p.name) for p in store.metric_points(run_id) if p.attempt == 1} <= before
    assert {c.step for c in store.checkpoints(run_id, include_deleted=True) if c.attempt == 1} <= saved_before
    [event] = [e for e in store.events(run_id) if e.kind == "resumed"]
    resumed_step = int(event.message.rsplit("checkpoint-", 1)[1])
    assert_each_step_written_by_the_attempt_that_trained_it(store, run_id, {1: 0, 2: resumed_step})
    series = store.metrics_since(run_id, names=[mk.TOTAL_REWARD])[mk.TOTAL_REWARD]
    assert list(series.steps) == list(range(1, 31))
    # The checkpoints are whole: the frozen attempt's up to the one resumed from, the new attempt's
    # after it. Frozen between writing a checkpoint's files and its row, the first attempt wakes to
    # a refused row: that folder (written before the takeover, at a step the new attempt does not
    # redo) is on disk without one.
    live = store.checkpoints(run_id)
    on_disk = checkpoint_dirs(run.output_dir)
    assert {Path(c.path) for c in live} <= set(on_disk)
    assert all(int(d.name.split("-")[1]) <= resumed_step for d in set(on_disk) - {Path(c.path) for c in live})
    assert [c.attempt for c in live] == [1 if c.step <= resumed_step else 2 for c in live]
    assert live[-1].step == 30 and live[-1].attempt == 2
    for folder in on_disk:
        assert read_state(folder).step == int(folder.name.split("-")[1])
        assert load_file(str(folder / "model.safetensors"))


FIRST_STUDIO = """
import json, sys, threading
from pathlib import Path
from studio.context import StudioContext
from studio.supervisor import Supervisor
from studio.tabs.evaluate import start_evaluation
from trainer.core.config import build_config
from trainer.rundb import Owner
workspace, config, model = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
ctx = StudioContext(Path(workspace))
sup = Supervisor(ctx)
launched = sup.start(build_config(config))
job = start_evaluation(ctx, model, "synthetic_motion_train", launched.run.id, 300, 2, sup)
# What a studio killed in the middle of a Launch leaves: rows queued for processes it never started.
me = Owner.current()
pending = ctx.store.create_run("pending", owner=me)
pending_job = ctx.store.create_job("evaluate", {"checkpoint": model}, run_id=launched.run.id, owner=me)
print(json.dumps([launched.run.id, job.id, pending.id, pending_job.id]), flush=True)
threading.Event().wait()
"""


def test_a_studio_killed_outright_leaves_its_trainer_and_evaluation_to_a_new_studio(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    config = tiny("outlives", 30).to_dict()
    studio = subprocess.Popen(
        [sys.executable, "-c", FIRST_STUDIO, str(workspace), json.dumps(config), str(TINY_MODEL_DIR)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )
    new_studio = None
    ctx = StudioContext(workspace)
    try:
        assert studio.stdout is not None
        run_id, job_id, pending_id, pending_job_id = json.loads(studio.stdout.readline())
        store = ctx.store
        wait_for(lambda: last_step(store, run_id) >= 1, TRAIN_TIMEOUT_S, "training to step")
        wait_for(lambda: store.get_job(job_id).status == "running", TRAIN_TIMEOUT_S, "the evaluation to run")
        studio.send_signal(signal.SIGKILL)
        studio.wait(30)
        trainer, evaluation = store.get_run(run_id).owner, store.get_job(job_id).owner
        assert trainer is not None and evaluation is not None
        assert is_process_alive(trainer) and is_process_alive(evaluation)
        # A new studio process on the same workspace, nothing in memory from the old one.
        port = free_port()
        with (tmp_path / "new-studio.log").open("w") as log:
            new_studio = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "trainer.cli",
                    "studio",
                    "--workspace",
                    str(workspace),
                    "--port",
                    str(port),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
            )
        url = f"http://127.0.0.1:{port}/"
        wait_for(lambda: _answers(url), 120, "the new studio to serve")
        # It found the rows the dead studio had queued and ended them, naming the dead process...
        dead = f"pid {studio.pid} on "
        pending, pending_job = store.get_run(pending_id), store.get_job(pending_job_id)
        assert pending.status == "failed" and dead in (pending.error or ""), pending
        assert pending_job.status == "failed" and dead in (pending_job.error or ""), pending_job
        # ...and left the trainer and the evaluation the dead studio had started running, to the end.
        assert store.get_run(run_id).status in ("running", "finished")
        assert store.get_job(job_id).status in ("running", "finished")
        wait_for(lambda: store.get_run(run_id).status == "finished", TRAIN_TIMEOUT_S, "the run to finish")
        wait_for(
            lambda: store.get_job(job_id).status == "finished", TRAIN_TIMEOUT_S, "the evaluation to finish"
        )
        assert store.get_run(run_id).pid == trainer.pid and store.get_run(run_id).attempt == 1
        assert (store.get_job(job_id).progress_done, store.get_job(job_id).progress_total) == (300, 300)
    finally:
        for proc in (studio, new_studio):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(30)
        if studio.stdout is not None:
            studio.stdout.close()
        ctx.store.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False

"""Supervision: launch, abort, resume, and finding runs again after a studio restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from studio_helpers import fake_supervisor, wait_for

from studio.context import StudioContext
from studio.processes import start_process, tail_text
from studio.supervisor import Supervisor, unique_name
from trainer.core.config import build_config
from trainer.core.errors import StudioError
from trainer.rundb import Owner, run_lifecycle

CFG = build_config({"max_steps": 5, "run_name": "fake"})


def status(ctx: StudioContext, run_id: int) -> str:
    return ctx.store.get_run(run_id).status


def test_launch_writes_log_in_own_session(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "out.log"
    code = "import os, sys; print('pgid', os.getpgid(0) == os.getpid()); print('err', file=sys.stderr)"
    exits: list[int] = []
    pid = start_process([sys.executable, "-c", code], log, env={"VGRPO_TEST": "1"}, on_exit=exits.append).pid
    wait_for(lambda: exits, what="the child to exit")
    assert exits == [0]
    assert pid > 0
    assert log.read_text().split() == ["pgid", "True", "err"]


def test_start_writes_config_creates_run_and_marks_running(ctx: StudioContext) -> None:
    sup = fake_supervisor(ctx)
    launched = sup.start(CFG)
    try:
        assert launched.run.status == "queued"
        assert launched.config_path == ctx.configs_dir / "fake.yaml"
        written = yaml.safe_load(launched.config_path.read_text())
        assert written["run"]["output_dir"] == str(ctx.runs_dir / "fake")
        assert written["run"]["db"] == ctx.db_url
        assert written["data"]["workspace"] == str(ctx.workspace)
        assert launched.log_path == ctx.runs_dir / "fake" / "train.log"
        assert launched.total_steps == 5
        wait_for(lambda: status(ctx, launched.run.id) == "running", what="running")
        info = sup.launch_info(launched.run.id)
        assert (info.pid, info.total_steps, info.log_path) == (launched.pid, 5, launched.log_path)
        wait_for(
            lambda: "fake trainer running" in sup.log_tail(ctx.store.get_run(launched.run.id)), what="log"
        )
        # A second run with the same name gets a unique one (and its own folder).
        assert sup.prepare(CFG).run.run_name == "fake-2"
    finally:
        sup.abort(launched.run.id)
    wait_for(lambda: status(ctx, launched.run.id) == "aborted", what="aborted")


def test_abort_sigterm_marks_aborted_and_refuses_twice(ctx: StudioContext) -> None:
    sup = fake_supervisor(ctx)
    run_id = sup.start(CFG).run.id
    wait_for(lambda: status(ctx, run_id) == "running", what="running")
    sup.abort(run_id)
    wait_for(lambda: status(ctx, run_id) == "aborted", what="aborted")
    run = ctx.store.get_run(run_id)
    # The user's abort is a status with a reason, not an error.
    assert (run.end_reason, run.error) == ("stopped by SIGTERM", None)
    assert [(a.number, a.status) for a in ctx.store.attempts(run_id)] == [(1, "aborted")]
    with pytest.raises(StudioError, match=f"run {run_id} is aborted: nothing to abort"):
        sup.abort(run_id)


def test_abort_escalates_to_sigkill_after_grace(ctx: StudioContext) -> None:
    sup = fake_supervisor(ctx, mode="stubborn", grace_s=0.5)
    launched = sup.start(CFG)
    wait_for(lambda: status(ctx, launched.run.id) == "running", what="running")
    wait_for(
        lambda: "fake trainer running" in tail_text(launched.log_path), what="SIGTERM ignored from now on"
    )
    sup.abort(launched.run.id)
    wait_for(lambda: status(ctx, launched.run.id) == "aborted", what="aborted after SIGKILL")
    run = ctx.store.get_run(launched.run.id)
    # Ended by the reap (the escalation's or the exit thread's, whichever saw it first), as aborted.
    assert run.end_reason.startswith("stopped: ") and run.error is None
    assert any("SIGKILL" in e.message for e in ctx.store.events(run.id) if e.kind == "abort_requested")
    wait_for(lambda: not _alive(launched.pid), what="the process to be gone")


def test_trainer_that_exits_before_starting_is_failed_with_its_last_line(ctx: StudioContext) -> None:
    sup = fake_supervisor(ctx, mode="crash")
    run_id = sup.start(CFG).run.id
    wait_for(lambda: status(ctx, run_id) == "failed", what="failed")
    run = ctx.store.get_run(run_id)
    assert run.error == "trainer exited with code 3: boom: the model folder is missing"


def test_abort_while_the_trainer_starts_says_so_and_lists_that_attempt(ctx: StudioContext) -> None:
    sup = fake_supervisor(ctx, mode="slow-start")
    launched = sup.start(CFG)
    wait_for(lambda: "alembic" in launched.log_path.read_text() if launched.log_path.exists() else False)
    assert status(ctx, launched.run.id) == "queued"  # it has not claimed the run yet
    sup.abort(launched.run.id)
    wait_for(lambda: status(ctx, launched.run.id) == "aborted", what="aborted")
    run = ctx.store.get_run(launched.run.id)
    # The stop is the reason, not the exit code and the last log line of a process still importing.
    assert (run.end_reason, run.error, run.attempt) == ("stopped while the trainer was starting", None, 1)
    [attempt] = ctx.store.attempts(launched.run.id)
    assert (attempt.number, attempt.pid, attempt.status) == (1, launched.pid, "aborted")
    assert attempt.end_reason == run.end_reason


def test_resume_refuses_a_finished_run_saying_how_to_train_it_further(ctx: StudioContext) -> None:
    run = ctx.store.create_run("done", config=CFG.to_dict(), output_dir=str(ctx.runs_dir / "done"))
    with run_lifecycle(ctx.store, run.id, handle_sigterm=False):
        pass
    with pytest.raises(
        StudioError, match=rf"run {run.id} finished: there is nothing to resume.*--max_steps N"
    ):
        Supervisor(ctx).resume(run.id)
    assert ctx.store.get_run(run.id).status == "finished"
    assert [a.status for a in ctx.store.attempts(run.id)] == ["finished"]


def test_restart_finds_running_run_and_reports_killed_trainer_failed(ctx: StudioContext) -> None:
    launched = fake_supervisor(ctx).start(CFG)
    wait_for(lambda: status(ctx, launched.run.id) == "running", what="running")
    # A "studio restart": a new context and supervisor on the same workspace, nothing in memory.
    ctx2 = StudioContext(ctx.workspace)
    try:
        sup2 = Supervisor(ctx2)
        found = {r.id: r.status for r in sup2.runs()}
        assert found == {launched.run.id: "running"}
        assert sup2.launch_info(launched.run.id).pid == launched.pid
        os.killpg(launched.pid, signal.SIGKILL)
        wait_for(
            lambda: ctx2.store.get_run(launched.run.id).status == "failed",
            timeout_s=10,
            what="reaped as failed",
        )
        assert ctx2.store.get_run(launched.run.id).error.startswith("trainer")
    finally:
        ctx2.store.close()


def test_restart_reaps_queued_run_whose_trainer_is_gone(ctx: StudioContext) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    gone = Owner.of(proc.pid)
    proc.wait()
    run = ctx.store.create_run("never-started", owner=gone)
    other = ctx.store.create_run("cli-run")  # queued without an owner: nobody can tell, left alone
    mine = ctx.store.create_run("starting", owner=Owner.current())  # its launcher (us) is alive
    sup = Supervisor(StudioContext(ctx.workspace))
    assert sup.reap() == [run.id]
    assert ctx.store.get_run(run.id).error == f"trainer process died: pid {gone.pid} on {gone.host} is gone"
    assert ctx.store.get_run(other.id).status == ctx.store.get_run(mine.id).status == "queued"


def test_resume_relaunches_same_run_from_latest_checkpoint(ctx: StudioContext) -> None:
    sup = fake_supervisor(ctx)
    first = sup.start(CFG)
    wait_for(lambda: status(ctx, first.run.id) == "running", what="running")
    with pytest.raises(StudioError, match=rf"run {first.run.id} is running, owned by pid {first.pid} on "):
        sup.resume(first.run.id)
    sup.abort(first.run.id)
    wait_for(lambda: status(ctx, first.run.id) == "aborted", what="aborted")
    with pytest.raises(StudioError, match="no checkpoint"):
        sup.resume(first.run.id)
    ckpt = Path(first.run.output_dir) / "checkpoint-3"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text(json.dumps({"step": 3, "run_id": str(first.run.id)}))
    again = sup.resume(first.run.id)
    assert again.run.id == first.run.id
    written = yaml.safe_load(again.config_path.read_text())
    assert written["run"]["resume_from_checkpoint"] == "latest"
    assert written["run"]["output_dir"] == first.run.output_dir
    wait_for(lambda: status(ctx, first.run.id) == "running", what="running again")
    sup.abort(first.run.id)
    wait_for(lambda: status(ctx, first.run.id) == "aborted", what="aborted again")
    attempts = ctx.store.attempts(first.run.id)
    assert [(a.number, a.status, a.pid) for a in attempts] == [
        (1, "aborted", first.pid),
        (2, "aborted", again.pid),
    ]


def test_an_old_abort_escalation_never_touches_the_resumed_trainer(ctx: StudioContext) -> None:
    """The reported bug: 30 s after an abort, its SIGKILL timer killed the resumed run's trainer."""
    sup = fake_supervisor(ctx)
    first = sup.start(CFG)
    wait_for(lambda: status(ctx, first.run.id) == "running", what="running")
    old_owner = ctx.store.get_run(first.run.id).owner
    sup.abort(first.run.id)
    wait_for(lambda: status(ctx, first.run.id) == "aborted", what="aborted")
    ckpt = Path(first.run.output_dir) / "checkpoint-3"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text(json.dumps({"step": 3, "run_id": str(first.run.id)}))
    again = sup.resume(first.run.id)
    wait_for(lambda: status(ctx, first.run.id) == "running", what="running again")
    ended: list[object] = []
    # The grace period of the first abort runs out now: it targets the old process only.
    sup._escalate(old_owner, lambda *a: ended.append(a), lambda: ended.append("killed"))
    # Even a reused pid with another start time is not that process.
    impostor = Owner(again.pid, old_owner.create_time, old_owner.host)
    sup._escalate(impostor, lambda *a: ended.append(a), lambda: ended.append("killed"))
    assert ended == []
    assert _alive(again.pid) and status(ctx, first.run.id) == "running"
    sup.abort(first.run.id)
    wait_for(lambda: status(ctx, first.run.id) == "aborted", what="aborted again")


def test_tail_text_keeps_last_lines_and_last_tqdm_redraw(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text("one\ntwo\r\n" + "grpo 1/3\rgrpo 2/3\rgrpo 3/3\nlast\n\n")
    assert tail_text(log, max_lines=3) == "two\ngrpo 3/3\nlast"
    assert tail_text(tmp_path / "missing.log") == ""


def test_unique_name() -> None:
    assert unique_name("a", {"b"}) == "a"
    assert unique_name("a", {"a", "a-2"}) == "a-3"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True

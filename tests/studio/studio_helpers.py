"""Helpers for studio tests: a fake trainer (so supervision tests take seconds) and a poll helper."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from studio.context import StudioContext
from studio.supervisor import Supervisor

# A stand-in for `python -m trainer.cli train`: marks its run running, beats, and ends the way the
# real one does (SIGTERM -> aborted through run_lifecycle). argv: db url, run id, behaviour.
FAKE_TRAINER = """
import signal, sys, time
from trainer.rundb import RunStore, run_lifecycle
db, run_id, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if mode == "crash":
    print("boom: the model folder is missing", flush=True)
    sys.exit(3)
if mode == "slow-start":  # still importing torch when the user aborts
    print("INFO  [alembic.runtime.migration] Will assume transactional DDL.", flush=True)
    time.sleep(120)
store = RunStore(db)
with run_lifecycle(store, run_id, heartbeat_interval_s=0.2):
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("fake trainer running", flush=True)
    while True:
        time.sleep(0.05)
"""


def fake_supervisor(ctx: StudioContext, mode: str = "loop", grace_s: float = 30.0) -> Supervisor:
    def command(config_path: Path, run_id: int, cfg: object) -> list[str]:
        return [sys.executable, "-c", FAKE_TRAINER, ctx.db_url, str(run_id), mode]

    return Supervisor(ctx, trainer_command=command, grace_s=grace_s)


def wait_for(condition: Callable[[], object], timeout_s: float = 30.0, what: str = "condition") -> object:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        threading.Event().wait(0.05)  # poll interval, not a fixed wait
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def finished_run_with_checkpoints(
    ctx: StudioContext, tmp_path: Path, name: str, steps: tuple[int, ...], base: str = "/models/base"
) -> tuple[Any, list[str]]:
    """A finished training run of ``base`` with a checkpoint folder on disk per step (paths oldest
    first): what the run pickers offer, without training."""
    run = ctx.store.create_run(name, config={"model": {"model_name_or_path": base}}, status="finished")
    paths = []
    for step in steps:
        path = tmp_path / name / f"checkpoint-{step}"
        path.mkdir(parents=True)
        ctx.store.add_checkpoint(run.id, step, str(path), {})
        paths.append(str(path))
    return run, paths

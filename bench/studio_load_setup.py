"""The studio and the live run bench/studio_load.py measures: a real ``vgrpo studio`` subprocess on
a free port of 127.0.0.1, and one training run of the embedded tiny model started through
``studio.supervisor.Supervisor`` as the Train tab does."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio_load_page import wait_until

if TYPE_CHECKING:
    from studio.supervisor import Supervisor
    from trainer.rundb import RunStore

REPO_ROOT = Path(__file__).resolve().parent.parent


# ---- the studio and the run ------------------------------------------------------------------
@dataclass
class Studio:
    """A running ``vgrpo studio`` subprocess."""

    url: str
    process: subprocess.Popen
    log_path: Path

    def log_tail(self, max_chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-max_chars:] if self.log_path.exists() else ""


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _is_serving(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@contextmanager
def running_studio(workspace: Path, timeout_s: float = 120.0) -> Iterator[Studio]:
    """``python -m trainer.cli studio`` on ``workspace`` and a free port (as the browser tests start
    it); yields once it answers HTTP, terminates it after."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log_path = workspace / "studio.log"
    cmd = [sys.executable, "-m", "trainer.cli", "studio", "--workspace", str(workspace), "--port", str(port)]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    env.pop("VGRPO_DB", None)  # the studio's run DB is <workspace>/runs.db
    with log_path.open("wb") as log:
        process = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    studio = Studio(url, process, log_path)
    try:
        wait_until(lambda: process.poll() is not None or _is_serving(url), timeout_s, f"the studio at {url}")
        if process.poll() is not None:
            raise RuntimeError(f"the studio exited with {process.returncode}:\n{studio.log_tail()}")
        yield studio
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


@dataclass
class LiveRun:
    """The training run the Monitor watches."""

    run_id: int
    pid: int
    log_path: Path
    store: RunStore
    supervisor: Supervisor


def bench_config(workspace: Path, batch: int, budget_s: float) -> Any:
    """configs/tiny_cpu.yaml made steady for timing: no held-out evaluation or checkpoint during the
    run; a learning rate too small to change the policy (at the preset's 1e-3 it learns the format in
    minutes, its completions get shorter and a step ~25 % cheaper, which read as a speed-up under
    load); no dynamic sampling (its refills make a step dearer as the policy grows sure); a small
    batch (the trainer shares the cores with everything measured); ``budget_s`` as
    max_train_seconds, so a trainer this script failed to stop ends on its own."""
    from trainer.core.config import build_config, load_yaml, merge

    preset = load_yaml(REPO_ROOT / "configs" / "tiny_cpu.yaml")
    return build_config(
        merge(
            preset,
            {
                "workspace": str(workspace),
                "run_name": "studio-load",
                "max_steps": 1_000_000,
                "max_train_seconds": budget_s,
                "per_device_train_batch_size": batch,
                "learning_rate": 1e-7,
                "dynamic_sampling": False,
                "eval_steps": 0,
                "save_steps": 1_000_000,
                "num_threads": 1,
            },
        )
    )


@contextmanager
def live_run(workspace: Path, batch: int, budget_s: float) -> Iterator[LiveRun]:
    """Launch one tiny training run through the studio's Supervisor; abort it after (SIGTERM, then
    SIGKILL to its process group if it has not ended within a minute)."""
    from studio.context import StudioContext
    from studio.supervisor import Supervisor
    from trainer.core.errors import StudioError

    ctx = StudioContext(workspace)
    supervisor = Supervisor(ctx, grace_s=60.0)
    launched = supervisor.start(bench_config(workspace, batch, budget_s))
    run = LiveRun(launched.run.id, launched.pid, launched.log_path, ctx.store, supervisor)
    try:
        yield run
    finally:
        try:
            supervisor.abort(run.run_id)
        except StudioError:
            pass  # it ended already (finished, or failed: its log says why)
        try:
            wait_until(lambda: not _is_running(run.pid), 60.0, f"trainer pid {run.pid} to exit")
        except TimeoutError:
            os.killpg(run.pid, signal.SIGKILL)  # start_process made it a session (group) leader
        ctx.store.close()


def _is_running(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def require_running(run: LiveRun) -> None:
    """RuntimeError with the trainer's log tail when the run is no longer training."""
    state = run.store.get_run(run.run_id)
    if not state.is_active:
        tail = run.log_path.read_text(errors="replace")[-3000:] if run.log_path.exists() else ""
        raise RuntimeError(f"run {run.run_id} is {state.status}; its log ends:\n{tail}")

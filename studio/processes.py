"""Operating-system processes the studio starts: each in its own session with a waiter thread,
signalled only while it is still that very process (pid + start time), its log read from the end.

The supervisor decides what to start and records it in the run database; this module only deals
with the processes themselves.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from trainer.rundb import Owner
from trainer.rundb.liveness import is_process_alive, this_host

logger = logging.getLogger(__name__)


def start_process(
    cmd: Sequence[str],
    log_path: Path,
    env: dict | None = None,
    cwd: Path | None = None,
    on_exit: Callable[[int], None] | None = None,
) -> Owner:
    """Start ``cmd`` (no shell) in a new session, stdout+stderr appended to ``log_path``; return the
    child's identity (pid + start time + host).

    ``env`` entries are added to this process's environment. The child is waited for by a daemon
    thread, so it never lingers as a zombie (which would look alive to pid probes); ``on_exit``
    is then called there with its exit code.
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **(env or {})}
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            list(cmd),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
            cwd=str(cwd) if cwd is not None else None,
            start_new_session=True,
        )
    # Read before the waiter starts: until it is waited for, the child exists (if only as a zombie).
    owner = Owner.of(proc.pid)

    def wait() -> None:
        code = proc.wait()
        if on_exit is not None:
            try:
                on_exit(code)
            except Exception:  # a process edge: a bookkeeping failure must not kill the thread silently
                logger.exception("pid %d: exit handler failed", proc.pid)

    threading.Thread(target=wait, name=f"supervise-{proc.pid}", daemon=True).start()
    logger.info("started pid %d: %s (log %s)", proc.pid, " ".join(map(str, cmd)), log_path)
    return owner


def tail_text(path: Path, max_lines: int = 200, max_bytes: int = 64_000) -> str:
    """The last ``max_lines`` lines of a text file (reads at most ``max_bytes``; '' when absent).

    tqdm redraws its bar with carriage returns: only the last redraw of each line is kept.
    """
    try:
        with Path(path).open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    lines = [line.rstrip("\r").rsplit("\r", 1)[-1] for line in data.split("\n")]
    if size > max_bytes:
        lines = lines[1:]  # the first line was cut by the seek
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines[-max_lines:])


def signal_group(owner: Owner, sig: signal.Signals) -> bool:
    """Signal the process group the launcher created (the trainer and any worker it spawned), only
    if ``owner`` is still that very process. False when it is gone (or its pid was reused)."""
    if owner.host != this_host() or not is_process_alive(owner):
        return False
    pid = owner.pid
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:  # a trainer started outside the studio, in someone else's group
            os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True

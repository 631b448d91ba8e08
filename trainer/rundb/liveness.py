"""When is a ``running`` run really dead? Pure rules, so the store and the tests agree on them.

A trainer beats every ``heartbeat_interval_s`` (``lifecycle.Heartbeat``). A reader declares the run
dead when either

* its last beat is older than ``STALE_FACTOR`` x the interval (works across hosts; one missed beat
  is tolerated, a second is not), or
* it runs on this host, its pid is gone, and its last beat is older than one interval. The age
  condition keeps a live trainer safe when the pid is from another pid namespace (a container that
  shares the host name): a live trainer's beat is never that old.

Either way the run is marked ``failed`` with ``DIED_MESSAGE``. A SIGKILLed trainer is therefore marked
failed at most ``STALE_FACTOR`` x interval after its last beat, i.e. within 2 intervals of the kill.
"""

from __future__ import annotations

import os
import socket

DEFAULT_HEARTBEAT_INTERVAL_S = 5.0
STALE_FACTOR = 2.0
DIED_MESSAGE = "trainer process died"


def this_host() -> str:
    return socket.gethostname()


def is_pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (a zombie counts as alive)."""
    if os.name != "posix":  # no cheap, safe probe; rely on the heartbeat alone
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def death_reason(
    *,
    status: str,
    heartbeat_at: float | None,
    heartbeat_interval_s: float | None,
    pid: int | None,
    host: str | None,
    now: float,
    current_host: str,
    pid_alive: bool | None = None,
) -> str | None:
    """Why a run should be marked failed, or None while it may still be alive.

    ``pid_alive`` is looked up (``is_pid_alive``) when None and the pid is on this host.
    """
    if status != "running" or heartbeat_at is None:
        return None
    interval = heartbeat_interval_s or DEFAULT_HEARTBEAT_INTERVAL_S
    age = now - heartbeat_at
    if age > STALE_FACTOR * interval:
        return f"{DIED_MESSAGE}: no heartbeat for {age:.1f} s (interval {interval:g} s)"
    if pid is not None and host == current_host and age > interval:
        alive = is_pid_alive(pid) if pid_alive is None else pid_alive
        if not alive:
            return f"{DIED_MESSAGE}: pid {pid} on {host} is gone"
    return None

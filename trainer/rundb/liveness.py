"""Who owns a run or job, and when is that owner dead? Pure rules, so the store and the tests agree.

An owner is a process identity that cannot be confused with another: pid + the process's start time
(``psutil.Process(pid).create_time()``) + host. A pid alone is not enough: the kernel reuses pids,
and a new process with the old pid must never pass for the trainer that died.

An owner is dead when

* it runs on this host and no process with that pid *and* that start time exists (or it is a
  zombie). For a ``running`` row this also needs a last beat older than one interval, so a live
  trainer in another pid namespace that shares the host name (a container) is never reaped; or
* it runs on another host, the row is ``running`` and its last beat is older than ``STALE_FACTOR``
  x the interval (one missed beat is tolerated, a second is not).

A process that verifiably exists on this host is never declared dead, whatever its heartbeat says:
taking over from it would mean two trainers on one run.
"""

from __future__ import annotations

import datetime
import os
import socket
from dataclasses import dataclass

import psutil

DEFAULT_HEARTBEAT_INTERVAL_S = 5.0
STALE_FACTOR = 2.0
DIED_MESSAGE = "trainer process died"
# psutil derives the start time from boot time + clock ticks: stable, but compare with a margin.
CREATE_TIME_TOLERANCE_S = 0.05


# The name this process records as its host. Set it where several machines share one host name
# (containers started from one image, pods), so that their owners are told apart.
HOST_ENV = "VGRPO_HOST"


def this_host() -> str:
    return os.environ.get(HOST_ENV) or socket.gethostname()


@dataclass(frozen=True)
class Owner:
    """One process instance: pid, its start time (seconds since the epoch) and its host."""

    pid: int
    create_time: float
    host: str

    @classmethod
    def of(cls, pid: int) -> Owner:
        """The identity of the live process ``pid`` on this host (psutil.NoSuchProcess when gone)."""
        return cls(pid, psutil.Process(pid).create_time(), this_host())

    @classmethod
    def current(cls) -> Owner:
        return cls.of(psutil.Process().pid)

    @classmethod
    def lineage(cls) -> list[Owner]:
        """This process's ancestors, parent first (a trainer's launcher: the studio, ``accelerate
        launch``); those that cannot be read are left out."""
        found = []
        try:
            parents = psutil.Process().parents()
        except psutil.Error:
            return []
        for proc in parents:
            try:
                found.append(cls(proc.pid, proc.create_time(), this_host()))
            except psutil.Error:
                continue
        return found

    def describe(self, started_at: float | None = None) -> str:
        when = f", started {_clock(started_at)}" if started_at else ""
        return f"pid {self.pid} on {self.host}{when}"


def _clock(t: float) -> str:
    return datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def is_pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (a zombie counts as gone)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # exists, owned by someone else
        return True


def is_process_alive(owner: Owner) -> bool:
    """Whether the very process ``owner`` names still runs on this host (pid and start time match)."""
    try:
        proc = psutil.Process(owner.pid)
        same = abs(proc.create_time() - owner.create_time) <= CREATE_TIME_TOLERANCE_S
        return same and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def death_reason(
    *,
    status: str,
    owner: Owner | None,
    heartbeat_at: float | None,
    heartbeat_interval_s: float | None,
    now: float,
    current_host: str,
    process_alive: bool | None = None,
    exited: bool = False,
) -> str | None:
    """Why the owner of a ``queued``/``running`` row is dead, or None while it may be alive.

    ``process_alive`` is looked up (``is_process_alive``) when None and the owner is on this host.
    A row without a recorded owner is never declared dead (nobody can tell). ``exited``: the caller
    waited for this very process (its parent), so it is gone, beat or no beat.
    """
    if status not in ("queued", "running") or owner is None:
        return None
    interval = heartbeat_interval_s or DEFAULT_HEARTBEAT_INTERVAL_S
    age = None if heartbeat_at is None else now - heartbeat_at
    if exited:
        return f"{DIED_MESSAGE}: pid {owner.pid} on {owner.host} exited"
    if owner.host == current_host:
        if status == "running" and age is not None and age <= interval:
            return None
        alive = is_process_alive(owner) if process_alive is None else process_alive
        return None if alive else f"{DIED_MESSAGE}: pid {owner.pid} on {owner.host} is gone"
    if status == "running" and age is not None and age > STALE_FACTOR * interval:
        return f"{DIED_MESSAGE}: no heartbeat for {age:.1f} s (interval {interval:g} s)"
    return None


def ray_death_reason(
    *, status: str, job_id: str, job_status: str | None, job_message: str = ""
) -> str | None:
    """Why the Ray job owning a ``queued``/``running`` run is dead, or None while it may be alive.

    The owner of a Ray run is its job, wherever Ray put (or re-put, after a worker failure) its
    trainer processes: the run lives while the head says the job is ``PENDING`` or ``RUNNING``,
    heartbeat or not (a restart after a failure has none for a while), and is dead once the head
    says the job ended. ``job_status`` None: the head did not answer, nothing is known, so the run is
    not declared dead (the studio shows the cluster as unreachable instead)."""
    if status not in ("queued", "running") or job_status is None:
        return None
    if job_status in ("PENDING", "RUNNING"):
        return None
    why = f": {job_message.strip()}" if job_message.strip() else ""
    return f"ray job {job_id} {job_status.lower()} without ending the run{why}"

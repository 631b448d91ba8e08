"""The Ray Jobs API as the run database, the CLI and the studio use it: submit, status, stop, logs,
and what the cluster has. A thin layer over ``ray.job_submission.JobSubmissionClient`` and Ray's
state API, for two reasons of ours:

* every call is bounded in time (``CALL_TIMEOUT_S``): the SDK's HTTP requests have no timeout, so a
  head behind a dropped route would freeze a studio page or a reap. A call that does not answer in
  time, or cannot connect, raises ``ClusterUnreachable``: the caller then knows nothing about the job,
  which is not the same as the job being gone;
* Ray is optional (``pip install '.[ray]'``): it is imported here, on first use, and its absence is a
  ``ConfigError`` saying how to install it.

Job states are Ray's (``PENDING``, ``RUNNING``, ``STOPPED``, ``SUCCEEDED``, ``FAILED``).
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from trainer.core.errors import ConfigError, StudioError

CALL_TIMEOUT_S = 10.0
# A submission waits longer: a head that just started brings its job agent up on the first one
# (seen: > 10 s on a busy 2-core machine), and a submission is one call, not a poll.
SUBMIT_TIMEOUT_S = 90.0
# Ray's job states that end a job; PENDING and RUNNING do not.
TERMINAL = ("STOPPED", "SUCCEEDED", "FAILED")
# An unreachable head is asked again only after this long (a Monitor refresh every 2 s would
# otherwise wait CALL_TIMEOUT_S each time).
UNREACHABLE_MEMORY_S = 15.0

T = TypeVar("T")


class ClusterUnreachable(StudioError):
    """The Ray head at an address did not answer (nothing is known about its jobs)."""


class RayJobError(StudioError):
    """The head answered, with an error (a refused submission, a job it does not know)."""


@dataclass(frozen=True)
class JobState:
    """A Ray job as its head reports it."""

    status: str  # PENDING | RUNNING | STOPPED | SUCCEEDED | FAILED
    message: str = ""
    exit_code: int | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True)
class NodeResources:
    """One alive node of the cluster: its id, address and total resources."""

    node_id: str
    ip: str
    resources: dict[str, float]


def require_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(
            "launcher ray needs Ray: pip install 'video-grpo-studio[ray]' (or pip install 'ray[default]')"
        ) from exc
    return ray


_unreachable: dict[str, float] = {}
_lock = threading.Lock()


def _bounded(address: str, call: Callable[[], T], what: str, timeout_s: float = CALL_TIMEOUT_S) -> T:
    """``call()`` within ``timeout_s``, or ClusterUnreachable naming the address and ``what``."""
    with _lock:
        since = _unreachable.get(address)
    if since is not None and time.monotonic() - since < UNREACHABLE_MEMORY_S:
        raise ClusterUnreachable(f"Ray cluster at {address} is unreachable ({what}: no answer recently)")
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="ray-jobs")
    future = pool.submit(call)
    try:
        result = future.result(timeout=timeout_s)
    except concurrent.futures.TimeoutError as exc:
        _remember_unreachable(address)
        raise ClusterUnreachable(
            f"Ray cluster at {address} is unreachable ({what}: no answer in {timeout_s:g} s)"
        ) from exc
    except ConnectionError as exc:
        _remember_unreachable(address)
        raise ClusterUnreachable(f"Ray cluster at {address} is unreachable ({what}: {exc})") from exc
    except StudioError:
        raise
    except Exception as exc:
        if _is_connection_error(exc):
            _remember_unreachable(address)
            raise ClusterUnreachable(f"Ray cluster at {address} is unreachable ({what}: {exc})") from exc
        if isinstance(exc, RuntimeError | ValueError):  # the SDK's "Request failed with status code ..."
            raise RayJobError(f"Ray cluster at {address}: {what} failed: {exc}") from exc
        raise
    finally:
        pool.shutdown(wait=False)
    with _lock:
        _unreachable.pop(address, None)
    return result


def _is_connection_error(exc: BaseException) -> bool:
    """No answer from the head: a refused or timed-out request, or the state API's ServerUnavailable."""
    if type(exc).__name__ == "ServerUnavailable":  # ray.util.state.exception: no API server answered
        return True
    try:
        import requests
    except ImportError:  # pragma: no cover - ray[default] brings requests
        return False
    return isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout)


def _remember_unreachable(address: str) -> None:
    with _lock:
        _unreachable[address] = time.monotonic()


def forget_unreachable() -> None:
    """Ask every head again at the next call (tests; a user's explicit Check)."""
    with _lock:
        _unreachable.clear()


def _client(address: str) -> Any:
    require_ray()
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(address)


def submit(
    address: str,
    entrypoint: str,
    submission_id: str,
    env_vars: Mapping[str, str],
    metadata: Mapping[str, str] | None = None,
) -> str:
    """Submit ``entrypoint`` as a job named ``submission_id``; returns that id. The driver reserves no
    CPU (Ray's default for job entrypoints): the workers' resources are what the run asks for."""

    def call() -> str:
        client = _client(address)
        deadline = time.monotonic() + SUBMIT_TIMEOUT_S - 5.0
        while True:
            try:
                return client.submit_job(
                    entrypoint=entrypoint,
                    submission_id=submission_id,
                    runtime_env={"env_vars": dict(env_vars)},
                    metadata=dict(metadata or {}),
                )
            except RuntimeError as exc:
                # A head whose job agent is still starting says so and asks to try again later.
                if "No available agent" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(1.0)

    return _bounded(address, call, "submitting the job", SUBMIT_TIMEOUT_S)


def job_state(address: str, submission_id: str, timeout_s: float = CALL_TIMEOUT_S) -> JobState:
    """The job's state; ClusterUnreachable when the head does not answer; a ``FAILED`` state saying
    so when the head answers but has no such job (a head restarted without its jobs: that job ended)."""

    def call() -> JobState:
        try:
            info = _client(address).get_job_info(submission_id)
        except RuntimeError as exc:
            if "404" in str(exc) or "does not exist" in str(exc):
                return JobState("FAILED", f"the cluster at {address} has no job {submission_id}")
            raise
        status = getattr(info.status, "value", str(info.status))
        return JobState(str(status), info.message or "", getattr(info, "driver_exit_code", None))

    return _bounded(address, call, f"status of job {submission_id}", timeout_s)


def stop(address: str, submission_id: str) -> bool:
    """Ask Ray to stop the job (SIGTERM to its driver, then SIGKILL); False when it had ended."""
    return _bounded(address, lambda: bool(_client(address).stop_job(submission_id)), "stopping the job")


def logs(address: str, submission_id: str) -> str:
    """The job's driver log (the workers' output is forwarded into it)."""
    return _bounded(address, lambda: _client(address).get_job_logs(submission_id), "reading the job log")


def nodes(address: str) -> list[NodeResources]:
    """The cluster's alive nodes and their total resources (Ray's state API on the dashboard)."""

    def call() -> list[NodeResources]:
        require_ray()
        from ray.util.state import list_nodes

        out = []
        for node in list_nodes(address=address, filters=[("state", "=", "ALIVE")], detail=True):
            total = {k: float(v) for k, v in (node.resources_total or {}).items()}
            out.append(NodeResources(node.node_id, node.node_ip, total))
        return out

    return _bounded(address, call, "listing the nodes")


def fits(nodes_: list[NodeResources], workers: int, cpus: float, gpus: float) -> str | None:
    """None when ``workers`` bundles of ``cpus`` CPUs and ``gpus`` GPUs fit on these nodes (each
    bundle on one node, as Ray places a worker); else why not, with what the cluster has."""
    free = [(n.resources.get("CPU", 0.0), n.resources.get("GPU", 0.0)) for n in nodes_]
    placed = 0
    for cpu, gpu in free:
        while placed < workers and cpu >= cpus and gpu >= gpus:
            cpu, gpu, placed = cpu - cpus, gpu - gpus, placed + 1
    if placed >= workers:
        return None
    have = ", ".join(
        f"{n.ip} {n.resources.get('CPU', 0):g} CPU {n.resources.get('GPU', 0):g} GPU" for n in nodes_
    )
    return (
        f"the cluster fits {placed} of {workers} workers of {cpus:g} CPU and {gpus:g} GPU each "
        f"(nodes: {have or 'none alive'})"
    )

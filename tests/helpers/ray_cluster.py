"""A throwaway Ray cluster of two nodes on this host, for the Ray launcher's tests and
bench/scaling.py: ``ray start --head`` plus a second ``ray start --address``, each node with its own
CPUs, so a 2-worker run with SPREAD puts one worker on each node.

Bound with ``--node-ip-address 127.0.0.1`` (and the dashboard on 127.0.0.1). ``ray start`` itself
turns a loopback node address into the host's own interface address (``resolve_ip_for_localhost``:
other nodes must reach it), so Ray lists the nodes under that address; traffic to it from this host
still never leaves the host.

Only this cluster is stopped afterwards (its processes are found by its own temp dir), never a
bare ``ray stop``, which would stop every Ray cluster of the host.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from trainer.core.paths import REPO_ROOT


@dataclass(frozen=True)
class LocalRayCluster:
    gcs_address: str  # 127.0.0.1:PORT, for `ray start --address`
    dashboard: str  # http://127.0.0.1:PORT, the launcher's ray_address
    temp_dir: Path

    def node_ips(self) -> dict[str, str]:
        """{node id: the address Ray knows the node by}."""
        from trainer.cluster import ray_jobs

        return {n.node_id: n.ip for n in ray_jobs.nodes(self.dashboard)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_env() -> dict[str, str]:
    """The nodes' environment: this venv first on PATH (the job's `python` is this interpreter), the
    repository importable, no GPU, and Ray's usage stats off."""
    bin_dir = str(Path(sys.executable).parent)
    path = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])
    pythonpath = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    return {
        **os.environ,
        "PATH": path,
        "PYTHONPATH": pythonpath,
        "CUDA_VISIBLE_DEVICES": "",
        "RAY_USAGE_STATS_ENABLED": "0",
    }


def _ray(*args: str, env: dict[str, str]) -> None:
    ray = str(Path(sys.executable).parent / "ray")
    proc = subprocess.run([ray, *args], env=env, capture_output=True, text=True, timeout=180)
    if proc.returncode != 0:
        raise RuntimeError(
            f"ray {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
        )


def _wait_for_nodes(dashboard: str, count: int, timeout_s: float = 90.0) -> None:
    from trainer.cluster import ray_jobs

    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        ray_jobs.forget_unreachable()
        try:
            if len(ray_jobs.nodes(dashboard)) >= count:
                return
        except Exception as exc:  # noqa: BLE001 - the dashboard comes up after the raylet
            last = exc
        time.sleep(1.0)
    raise RuntimeError(
        f"the local Ray cluster at {dashboard} did not show {count} nodes in {timeout_s:g} s: {last}"
    )


def stop_cluster(temp_dir: Path) -> None:
    """SIGTERM, then SIGKILL, every process of the cluster whose files live in ``temp_dir``."""
    marker = str(temp_dir)
    procs = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(marker in part for part in proc.info["cmdline"] or []):
                procs.append(proc)
        except psutil.Error:
            continue
    # Everything those processes started (workers, job drivers) goes too.
    family = {p.pid: p for p in procs}
    for proc in procs:
        try:
            for child in proc.children(recursive=True):
                family[child.pid] = child
        except psutil.Error:
            continue
    for proc in family.values():
        try:
            proc.send_signal(signal.SIGTERM)
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(list(family.values()), timeout=10)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)


def _node_ports() -> list[str]:
    """Each node's agents on ports of their own: two nodes on one host (or a second cluster, e.g.
    a developer's) would otherwise both take Ray's fixed defaults (52365 for the dashboard agent),
    and the loser's job agent never starts ("No available agent to submit job")."""
    ports = []
    for flag in (
        "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--metrics-export-port",
        "--runtime-env-agent-port", "--node-manager-port", "--object-manager-port",
    ):  # fmt: skip
        ports += [flag, str(free_port())]
    return ports


@contextmanager
def local_ray_cluster(nodes: int = 2, cpus_per_node: int = 1) -> Iterator[LocalRayCluster]:
    """``nodes`` Ray nodes of ``cpus_per_node`` CPUs on 127.0.0.1; stopped on exit."""
    # A short path: Ray's Unix socket paths must stay under the OS limit of 107 bytes.
    temp_dir = Path(tempfile.mkdtemp(prefix="vray", dir="/tmp"))
    env = ray_env()
    port, dash = free_port(), free_port()
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", str(cpus_per_node), "--num-gpus", "0"]
    try:
        _ray(
            "start", "--head", "--port", str(port), "--dashboard-host", "127.0.0.1",
            "--dashboard-port", str(dash), "--include-dashboard", "true", "--temp-dir", str(temp_dir),
            "--disable-usage-stats", "--ray-client-server-port", str(free_port()),
            *common, *_node_ports(), env=env,
        )  # fmt: skip
        for _ in range(nodes - 1):
            _ray(
                "start", "--address", f"127.0.0.1:{port}", "--disable-usage-stats", *common, *_node_ports(),
                env=env,
            )  # fmt: skip
        cluster = LocalRayCluster(f"127.0.0.1:{port}", f"http://127.0.0.1:{dash}", temp_dir)
        _wait_for_nodes(cluster.dashboard, nodes)
        yield cluster
    finally:
        stop_cluster(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)

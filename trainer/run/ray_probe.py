"""A Ray job that looks at the cluster from where the workers will run, for Check and Launch.

    python -m trainer.run.ray_probe --output_dir DIR        (the database URL in $VGRPO_DB)

On every alive node (a task pinned to it that reserves no CPU, so it runs beside a busy cluster) it
connects to the run database and writes, then removes, a file in ``output_dir``; it prints one line
``VGRPO_PROBE {json}`` with each node's answers, which ``trainer.run.cluster_check`` reads from the
job's log. That the job starts at all shows the head's Python has this package. The URL travels
in the job's environment, not on its command line, which Ray's dashboard lists.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import uuid
from pathlib import Path
from typing import Any

MARKER = "VGRPO_PROBE "
DB_ENV = "VGRPO_DB"


def probe_here(db_url: str, output_dir: str, required: list[str]) -> dict[str, Any]:
    """This node's answers: ``db`` and ``output_dir`` are None when fine, else the error;
    ``missing``: the ``required`` paths (the model folder, the datasets' files) this node lacks."""
    from sqlalchemy import create_engine, text

    out: dict[str, Any] = {"host": socket.gethostname(), "db": None, "output_dir": None}
    out["missing"] = [path for path in required if not os.path.exists(path)]
    try:
        engine = create_engine(db_url, pool_pre_ping=True)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - reported, named by node
        out["db"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
    try:
        folder = Path(output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".vgrpo-probe-{uuid.uuid4().hex[:8]}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        out["output_dir"] = f"{type(exc).__name__}: {exc}"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.run.ray_probe")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--require", action="append", default=[], help="a path every node must see")
    args = parser.parse_args(argv)
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    ray.init(log_to_driver=False)
    remote = ray.remote(num_cpus=0)(probe_here)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    futures = {
        n["NodeID"]: remote.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
        ).remote(os.environ[DB_ENV], args.output_dir, args.require)
        for n in nodes
    }
    answers = {node: ray.get(f, timeout=60) for node, f in futures.items()}
    sys.stdout.write(MARKER + json.dumps(answers) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

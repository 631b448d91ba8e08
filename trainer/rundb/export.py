"""A run's metrics or rollouts as CSV, JSON lines or Parquet, with one flat row per point/rollout.

Metrics rows: ``step, name, value, wall_time, attempt`` (the attempt that wrote the point). Rollout
rows: every ``Rollout`` field, ``options`` as a JSON object (a JSON string in CSV and Parquet, which
have no nested objects here).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from trainer.core.errors import ConfigError
from trainer.rundb.entities import MetricPoint, Rollout
from trainer.rundb.store import RunStore

FORMATS = ("csv", "jsonl", "parquet")
WHATS = ("metrics", "rollouts")
METRIC_COLUMNS = tuple(MetricPoint.__dataclass_fields__)
ROLLOUT_COLUMNS = tuple(Rollout.__dataclass_fields__)


def export_rows(store: RunStore, run_id: int, what: str) -> tuple[tuple[str, ...], list[dict[str, Any]]]:
    """The columns and rows to export (``what``: metrics or rollouts)."""
    if what == "metrics":
        return METRIC_COLUMNS, [asdict(p) for p in store.metric_points(run_id)]
    if what == "rollouts":
        return ROLLOUT_COLUMNS, [
            asdict(r) | {"options": dict(r.options), "rewards": dict(r.rewards)}
            for r in store.rollouts(run_id)
        ]
    raise ConfigError(f"--what must be one of {WHATS}, got {what!r}")


def write_export(
    columns: Sequence[str], rows: list[dict[str, Any]], fmt: str, out: Path | IO[str] | IO[bytes]
) -> None:
    """Write rows to a path or an open stream (text for csv/jsonl, a path or binary for parquet)."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {FORMATS}, got {fmt!r}")
    if fmt == "parquet":
        _write_parquet(columns, rows, out)
        return
    if isinstance(out, Path):
        with out.open("w", encoding="utf-8", newline="") as stream:
            _write_text(columns, rows, fmt, stream)
    else:
        _write_text(columns, rows, fmt, out)  # type: ignore[arg-type]


def _write_text(columns: Sequence[str], rows: list[dict[str, Any]], fmt: str, stream: IO[str]) -> None:
    if fmt == "jsonl":
        for row in rows:
            # NaN is not JSON; null is what every reader understands.
            clean = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
            stream.write(json.dumps(clean, ensure_ascii=False) + "\n")
        return
    writer = csv.DictWriter(stream, fieldnames=list(columns))
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {k: json.dumps(v, ensure_ascii=False) if isinstance(v, dict) else v for k, v in row.items()}
        )


def _write_parquet(columns: Sequence[str], rows: list[dict[str, Any]], out: Path | IO[bytes]) -> None:
    import pyarrow as pa  # only exports need it
    import pyarrow.parquet as pq

    data = {
        col: [json.dumps(r[col], ensure_ascii=False) if isinstance(r[col], dict) else r[col] for r in rows]
        for col in columns
    }
    pq.write_table(pa.table(data), out)

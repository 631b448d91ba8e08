"""The run row a trainer writes: which one (the studio's, the one a checkpoint came from, or a new
one), its fenced metrics writer, and whether this process still holds it.

Only the main process touches the run database; the others learn that the run was lost through the
collective in ``stop_if_lost``.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.core.config import TrainConfig
from trainer.core.errors import StudioError
from trainer.run.checkpoint import read_state
from trainer.rundb import MetricsWriter, OwnerAlive, RunHandle, RunLost, RunStore, Worker
from trainer.step.context import all_agree

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RaySeat:
    """Where this process trains when it is a worker of a Ray job (``trainer.run.ray_worker``): the
    job that owns the run (rank 0 claims the run for it) and every rank's place, which rank 0 records."""

    job_id: str
    workers: tuple[Worker, ...]


def dataset_fingerprints(spec: str, workspace: Path) -> dict[str, str]:
    """sha256 of each annotation file the run reads, so a run records exactly what it saw."""
    from trainer.data import resolve_dataset_use

    out = {}
    for entry, percent in resolve_dataset_use(spec, workspace):
        digest = hashlib.sha256(Path(entry.annotation_path).read_bytes()).hexdigest()
        out[f"{entry.name}%{percent:g}"] = digest
    return out


def open_run(
    store: RunStore,
    cfg: TrainConfig,
    run_name: str,
    output_dir: Path,
    workspace: Path,
    attach_run_id: int | None,
    resume_path: Path | None,
) -> int:
    """The run this trainer will claim: the studio's (``attach_run_id``), the one a resumed
    checkpoint came from, or a new one. Its config and a resume event are written once claimed,
    with the claim's lease."""
    if attach_run_id is not None:
        return attach_run_id
    if resume_path is not None:
        # A resumed run keeps writing into the run it came from (metric writes are idempotent).
        state = read_state(resume_path)
        if state.run_id:
            try:
                store.refuse_live_owner(int(state.run_id))  # OwnerAlive while a trainer holds it
                return int(state.run_id)
            except OwnerAlive:
                raise
            except StudioError:
                logger.warning(
                    "run %s of %s is not in this database: starting a new run", state.run_id, resume_path
                )
    fingerprints = dataset_fingerprints(cfg.data.dataset_use, workspace)
    run = store.create_run(
        run_name, config=cfg.to_dict(), dataset_fingerprints=fingerprints, output_dir=str(output_dir)
    )
    return run.id


def metrics_writer(store: RunStore | None, held: RunHandle | None) -> MetricsWriter | None:
    """The main process's metrics writer: its writes carry the run's lease; a refused one marks the
    run lost."""
    if store is None or held is None:
        return None
    return MetricsWriter(store, held.run.id, lease=held.lease, on_lost=held.lose)


def stop_if_lost(
    accelerator: Any, store: RunStore | None, held: RunHandle | None, *, ask_database: bool = False
) -> None:
    """Raise RunLost on every process when the main process lost the run (a refused beat or write
    marked its handle). ``ask_database``: also ask the store now, before writing files the run's
    new owner would own (a checkpoint): a trainer that lost its run writes no checkpoint after."""
    lost = held is not None and held.is_lost
    if store is not None and held is not None and ask_database and not lost:
        try:
            store.check_lease(held.lease)
        except RunLost as exc:
            held.lose(str(exc))
            lost = True
    if all_agree(accelerator, lost):
        if held is not None:
            held.raise_if_lost()
        raise RunLost("the main process lost the run; stopping")

"""What the studio's pickers and tables offer: datasets, runs, checkpoints and models.

Pure builders (registry entries, runs and checkpoints in; dropdown choices and table rows out) and
thin readers that fetch those from the registry and the run database. Tabs call the readers when
they are shown and after each action, so no list is the one the page was built with.

A checkpoint is offered only when :func:`offered_checkpoints` keeps it: its folder may have been
removed by ``save_total_limit`` (or by hand) while its row stays in the run database. Chat and
Evaluate both go through it, so this is the one place that decides.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.chat_engine import TINY_LABEL, base_model_of
from trainer.core.paths import TINY_MODEL_DIR
from trainer.data import DatasetEntry, list_datasets
from trainer.rundb import Checkpoint, Run, RunStore

PathExists = Callable[[str], bool]


def is_model_folder(path: str) -> bool:
    """A checkpoint can be loaded only while its folder is on disk."""
    return Path(path).is_dir()


def offered_checkpoints(
    checkpoints: Sequence[Checkpoint], exists: PathExists = is_model_folder
) -> list[Checkpoint]:
    """The checkpoints a picker may offer (order kept): those whose folder still exists."""
    return [c for c in checkpoints if exists(c.path)]


@dataclass(frozen=True)
class Choices:
    """Dropdown choices ``(label, value)`` plus the values deliberately left out (gone checkpoints),
    so a stale pick is replaced while a value the user typed is kept."""

    items: list[tuple[str, Any]]
    hidden: frozenset[Any] = field(default_factory=frozenset)

    @property
    def values(self) -> list[Any]:
        return [v for _, v in self.items]

    def keep(self, current: Any, default: Any = None, shown: Collection[Any] = ()) -> Any:
        """``current`` when it is offered, or typed by hand and not hidden; else ``default``
        (the first choice when no default is given or the default is not offered).

        ``shown``: what the picker offered before. A value it offered and this list does not is
        gone too: its run was deleted, so no checkpoint row names it and it is not in ``hidden``;
        without ``shown`` it would read as a folder typed by hand and stay picked."""
        values = self.values
        is_gone = current in self.hidden or (current in shown and current not in values)
        if current in values or (current not in (None, "") and not is_gone):
            return current
        if default in values:
            return default
        return values[0] if values else None


# ---- datasets -------------------------------------------------------------------------------------


def dataset_names(entries: Sequence[DatasetEntry]) -> list[str]:
    return [e.name for e in entries]


def registry_rows(entries: Sequence[DatasetEntry]) -> list[list[str]]:
    """The Datasets tab's table: name, mode, origin, annotation file."""
    return [
        [e.name, e.mode or "", "built in" if e.builtin else "uploaded", str(e.annotation_path)]
        for e in entries
    ]


def read_datasets(workspace: Path) -> list[DatasetEntry]:
    """Built-in plus registered datasets, read from ``datasets.json`` now."""
    return list_datasets(workspace)


# ---- runs -----------------------------------------------------------------------------------------


def run_label(run: Run) -> str:
    """``#3 motion-grpo (running)``; a model registered for evaluation says so instead of "finished"."""
    return f"#{run.id} {run.name} ({'model' if run.is_model else run.status})"


def run_choices(runs: Sequence[Run]) -> list[tuple[str, int]]:
    """``("#3 motion-grpo (running)", 3)`` per run, in the order given (the store lists newest first)."""
    return [(run_label(r), r.id) for r in runs]


# ---- checkpoints and models ----------------------------------------------------------------------


@dataclass(frozen=True)
class RunModels:
    """What one run can answer with: its checkpoints still on disk (oldest first), its base model,
    and the paths of its checkpoints that are gone."""

    run: Run
    checkpoints: Sequence[Checkpoint]
    base_model: str | None = None
    gone: frozenset[str] = frozenset()


def run_model_items(models: RunModels) -> list[tuple[str, str]]:
    """``("name · step N", path)`` newest first, then ``("name · base model", base)``."""
    items = [(f"{models.run.name} · step {c.step}", c.path) for c in reversed(models.checkpoints)]
    if models.base_model:
        items.append((f"{models.run.name} · base model", models.base_model))
    return items


def _unique(items: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """First occurrence of each path wins."""
    seen: set[str] = set()
    out = []
    for label, path in items:
        if path not in seen:
            seen.add(path)
            out.append((label, path))
    return out


def model_choices(runs: Sequence[RunModels], tiny_dir: str | Path = TINY_MODEL_DIR) -> Choices:
    """Chat: the embedded tiny model, then per run (in the order given) its checkpoints and base model."""
    items = [(TINY_LABEL, str(tiny_dir))]
    for models in runs:
        items += run_model_items(models)
    offered = _unique(items)
    gone = frozenset().union(*(m.gone for m in runs)) - {p for _, p in offered}
    return Choices(offered, gone)


def checkpoint_choices(models: RunModels | None, tiny_dir: str | Path = TINY_MODEL_DIR) -> Choices:
    """Evaluate: one run's checkpoints (newest first) and base model, then the embedded tiny model."""
    items = run_model_items(models) if models is not None else []
    offered = _unique([*items, (TINY_LABEL, str(tiny_dir))])
    gone = models.gone if models is not None else frozenset()
    return Choices(offered, gone - {p for _, p in offered})


def read_run_models(store: RunStore, run: Run, exists: PathExists = is_model_folder) -> RunModels:
    """A run's checkpoints (through :func:`offered_checkpoints`) and base model, read now."""
    stored = store.checkpoints(run.id)
    kept = offered_checkpoints(stored, exists)
    config = store.get_config(run.id)
    return RunModels(
        run=run,
        checkpoints=kept,
        base_model=base_model_of(config.config if config else None),
        gone=frozenset(c.path for c in stored) - {c.path for c in kept},
    )


def read_chat_runs(store: RunStore, exists: PathExists = is_model_folder) -> list[RunModels]:
    """What every run in the database can answer with, newest run first (Chat's list)."""
    runs = store.list_runs(kind=None)  # a model registered for evaluation can be chatted with too
    return [read_run_models(store, r, exists) for r in runs]


def read_model_choices(
    store: RunStore, tiny_dir: str | Path = TINY_MODEL_DIR, exists: PathExists = is_model_folder
) -> Choices:
    """Chat's model list from every run in the database (newest run first)."""
    return model_choices(read_chat_runs(store, exists), tiny_dir)


def read_checkpoint_choices(
    store: RunStore,
    run_id: int | None,
    tiny_dir: str | Path = TINY_MODEL_DIR,
    exists: PathExists = is_model_folder,
) -> Choices:
    """Evaluate's checkpoint list for one run (just the tiny model without a run)."""
    if run_id is None:
        return checkpoint_choices(None, tiny_dir)
    run = store.get_run(int(run_id))
    return checkpoint_choices(read_run_models(store, run, exists), tiny_dir)

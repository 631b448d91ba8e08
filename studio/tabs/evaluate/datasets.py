"""Which eval set suits what is evaluated (no Gradio): a run's default, and the refusal of a set in
the other think/no_think answer format.

A no_think run's checkpoint asked think questions scored accuracy 0.000 and format 0.000 with no
word of why, while the Train tab refuses the same pairing. ``vgrpo eval`` refuses it too
(``trainer.cli.eval_models.check_answer_format``); the tab says it before a job starts, in the same
words, and offers the run's own eval set when a run is picked.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from studio.context import StudioContext
from studio.forms import matching_eval_sets
from trainer.core.errors import StudioError
from trainer.data import list_datasets
from trainer.data.modes import spec_modes
from trainer.eval.checkpoints import check_trained_mode, trained_on, trained_on_config

logger = logging.getLogger(__name__)


def run_config(ctx: StudioContext, run_id: int | None) -> dict[str, Any]:
    """Run ``run_id``'s stored config ({} for no run or none stored)."""
    config = ctx.store.get_config(int(run_id)) if run_id is not None else None
    return dict(config.config) if config is not None and config.config else {}


def check_eval_mode(
    ctx: StudioContext, checkpoint: str, dataset: str, run_id: int | None, compare: bool
) -> None:
    """ConfigError naming the dataset, the model and both modes when ``dataset`` is not in the
    mode the model was trained in: a checkpoint by its train_config.yaml, the run's base and
    checkpoints (``compare``) by the run's config. A plain model folder is not refused."""
    trained, whose = trained_on(checkpoint), Path(checkpoint).name
    if compare and run_id is not None:
        trained = trained_on_config(run_config(ctx, run_id))
        whose = f"run {ctx.store.get_run(int(run_id)).name}"
    if trained is None:
        return
    check_trained_mode(dataset, spec_modes(dataset, ctx.workspace), whose, trained, ctx.workspace)


def dataset_for_run(ctx: StudioContext, run_id: int | None, current: str | None) -> str | None:
    """The eval set to show once run ``run_id`` is picked: ``current`` when it has the run's
    think/no_think mode (or the run has no mode: a registered model); else the run's own
    eval_dataset_use, else the registered ``x_eval`` of its ``x_train``; else ``current`` (Run
    evaluation then says why it is refused)."""
    try:
        config = run_config(ctx, run_id)
        trained = trained_on_config(config)
        if trained is None:
            return current
        modes = spec_modes(trained.dataset_use, ctx.workspace)
        entries = {e.name: e for e in list_datasets(ctx.workspace)}
    except StudioError as exc:  # an unknown training set, an unreadable DB or registry: keep it
        logger.info("evaluate: no default eval set for run %s (%s)", run_id, exc)
        return current
    own = str((config.get("data") or {}).get("eval_dataset_use") or "").strip()
    names = [item.strip().split("%")[0] for item in trained.dataset_use.split(",") if item.strip()]
    for candidate in (current, own, ",".join(matching_eval_sets(names, entries))):
        if candidate and _modes_or_none(ctx, candidate) == modes:
            return candidate
    return current


def _modes_or_none(ctx: StudioContext, spec: str) -> tuple[str, ...] | None:
    try:
        return spec_modes(spec, ctx.workspace)
    except StudioError:
        return None

"""Which checkpoint an evaluation is of: checking a model path, its step, its trained settings (video,
answer length, the think/no_think set it learnt its answer format from), and the run-database row
the evaluation hangs on (found by path, or registered)."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.core.errors import ConfigError, DataError
from trainer.core.paths import is_hub_id

logger = logging.getLogger(__name__)

TRAIN_CONFIG_FILE = "train_config.yaml"
_STEP = re.compile(r"checkpoint-(\d+)$")


def check_checkpoint(path: str) -> str:
    """A local model folder (resolved) or a hub id; ConfigError naming the path otherwise."""
    local = Path(path).expanduser()
    if local.exists():
        if not ((local / "config.json").is_file() or (local / "adapter_config.json").is_file()):
            raise ConfigError(
                f"checkpoint {local.resolve()} is not a model folder (no config.json or adapter_config.json)"
            )
        return str(local.resolve())
    if is_hub_id(path):
        return path
    raise ConfigError(f"checkpoint not found: {local.resolve()}")


def checkpoint_step(path: str) -> int:
    """``.../checkpoint-40`` -> 40; a base model (any other folder) is step 0."""
    match = _STEP.search(Path(path).name)
    return int(match.group(1)) if match else 0


def _train_config(path: str) -> dict[str, Any]:
    """A checkpoint's train_config.yaml as a mapping ({} when it has none: a model trained elsewhere)."""
    config_file = Path(path) / TRAIN_CONFIG_FILE
    if not config_file.is_file():
        return {}
    import yaml

    try:
        doc = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{config_file}: unreadable ({exc})") from exc
    return doc if isinstance(doc, dict) else {}


def trained_settings(path: str) -> tuple[dict[str, Any], int | None]:
    """The video section and generation_max_length of a checkpoint's train_config.yaml, if any."""
    doc = _train_config(path)
    video = doc.get("video") if isinstance(doc.get("video"), dict) else {}
    grpo = doc.get("grpo") if isinstance(doc.get("grpo"), dict) else {}
    return dict(video), grpo.get("generation_max_length")


@dataclass(frozen=True)
class TrainedOn:
    """The training set a model learnt its answer format from, and the workspace that named it."""

    dataset_use: str
    workspace: str | None = None


def trained_on_config(config: Mapping[str, Any] | None) -> TrainedOn | None:
    """From a run's config (sectioned, as stored in the run DB and in train_config.yaml)."""
    data = (config or {}).get("data")
    if not isinstance(data, dict) or not str(data.get("dataset_use") or "").strip():
        return None
    return TrainedOn(str(data["dataset_use"]).strip(), data.get("workspace") or None)


def trained_on(path: str) -> TrainedOn | None:
    """From a checkpoint folder's train_config.yaml; None for a model trained elsewhere (a base
    model, the embedded tiny model, a hub id)."""
    return trained_on_config(_train_config(path)) if Path(path).is_dir() else None


def check_trained_mode(
    dataset_use: str,
    eval_modes: Sequence[str],
    whose: str,
    trained: TrainedOn,
    workspace: str | os.PathLike,
) -> None:
    """ConfigError naming both sets when the eval set's think/no_think mode is not the one ``whose``
    model was trained in (it would score 0 on every record; ``trainer.data.modes``). A training set
    that no longer resolves (named in another workspace, its file moved) cannot be judged: logged."""
    from trainer.data.modes import check_same_mode, spec_modes

    for where in dict.fromkeys(w for w in (workspace, trained.workspace) if w):
        try:
            trained_modes = spec_modes(trained.dataset_use, where)
        except DataError:
            continue
        check_same_mode(
            "dataset_use",
            dataset_use,
            eval_modes,
            f"{whose}'s dataset_use",
            trained.dataset_use,
            trained_modes,
        )
        return
    logger.warning(
        "%s was trained on dataset_use %r, which is not known here: its answer format is not checked",
        whose,
        trained.dataset_use,
    )


def find_checkpoint_row(store: Any, path: str, run_id: int | None) -> Any:
    """The checkpoint row whose path is ``path`` (in ``run_id``, or in any run when None)."""
    runs = [run_id] if run_id is not None else [r.id for r in store.list_runs(kind=None)]
    for rid in runs:
        for ckpt in store.checkpoints(rid):
            if _same_path(ckpt.path, path):
                return ckpt
    return None


def _same_path(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def checkpoint_row_for(store: Any, path: str, run_ref: str | None) -> Any:
    """Find or register the checkpoint row the evaluation hangs on (see the module docstring)."""
    from trainer.rundb import MODEL_RUN

    run_id = store.resolve_run(run_ref).id if run_ref else None
    found = find_checkpoint_row(store, path, run_id)
    if found is not None:
        return found
    if run_id is None:
        name = f"eval-{Path(path).name or path}"
        existing = [r for r in store.list_runs(kind=MODEL_RUN) if r.name == name]
        if existing:
            run_id = existing[0].id
        else:
            # A model trained elsewhere: registered as a model (finished, never trained), which the
            # Monitor and Runs lists leave out and Evaluate lists with its evaluations.
            config = {"model": {"model_name_or_path": path}}
            run_id = store.create_run(name, config=config, kind=MODEL_RUN).id
        found = find_checkpoint_row(store, path, run_id)
        if found is not None:
            return found
    logger.info("registering %s as a checkpoint of run %d", path, run_id)
    return store.add_checkpoint(run_id, checkpoint_step(path), path, {})

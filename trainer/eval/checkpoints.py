"""Which checkpoint an evaluation is of: checking a model path, its step, its trained settings,
and the run-database row the evaluation hangs on (found by path, or registered)."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from trainer.core.errors import ConfigError
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


def trained_settings(path: str) -> tuple[dict[str, Any], int | None]:
    """The video section and generation_max_length of a checkpoint's train_config.yaml, if any."""
    config_file = Path(path) / TRAIN_CONFIG_FILE
    if not config_file.is_file():
        return {}, None
    import yaml

    try:
        doc = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{config_file}: unreadable ({exc})") from exc
    video = doc.get("video") if isinstance(doc.get("video"), dict) else {}
    grpo = doc.get("grpo") if isinstance(doc.get("grpo"), dict) else {}
    return dict(video), grpo.get("generation_max_length")


def find_checkpoint_row(store: Any, path: str, run_id: int | None) -> Any:
    """The checkpoint row whose path is ``path`` (in ``run_id``, or in any run when None)."""
    runs = [run_id] if run_id is not None else [r.id for r in store.list_runs()]
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
    run_id = store.resolve_run(run_ref).id if run_ref else None
    found = find_checkpoint_row(store, path, run_id)
    if found is not None:
        return found
    if run_id is None:
        name = f"eval-{Path(path).name or path}"
        existing = [r for r in store.list_runs() if r.name == name]
        if existing:
            run_id = existing[0].id
        else:
            # A model trained elsewhere: registered as a run that is already over.
            run = store.create_run(name, config={"model": {"model_name_or_path": path}}, status="finished")
            run_id = run.id
        found = find_checkpoint_row(store, path, run_id)
        if found is not None:
            return found
    logger.info("registering %s as a checkpoint of run %d", path, run_id)
    return store.add_checkpoint(run_id, checkpoint_step(path), path, {})

"""Checkpoints: a Hugging Face model folder (loadable by ``from_pretrained``) plus what resuming needs.

Layout of ``<output_dir>/checkpoint-<step>/``::

    config.json, generation_config.json, model.safetensors   the policy, HF format
    tokenizer*, preprocessor_config.json, chat_template*      the processor
    trainer_state.json                                       step, epoch, data position, run id
    train_config.yaml                                        the resolved TrainConfig
    accelerate_state/                                        optimizer, scheduler, RNG of every process

Optimizer, scheduler and RNG go through ``accelerator.save_state`` so DeepSpeed and FSDP shards are
saved the way those engines expect.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from trainer.errors import ConfigError

logger = logging.getLogger(__name__)

PREFIX = "checkpoint-"
STATE_FILE = "trainer_state.json"
ACCELERATE_DIR = "accelerate_state"


@dataclass
class TrainerState:
    """Where training stands: enough to continue exactly."""

    step: int = 0  # completed global steps (rollout batches)
    epoch: int = 0  # current pass over the data
    position: int = 0  # index into this epoch's shuffled order of the next record
    run_id: str = ""
    total_steps: int = 0


def checkpoint_dirs(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints in ``output_dir``, oldest first (a folder without trainer_state.json
    is a save that was cut short and is ignored)."""
    out = Path(output_dir)
    if not out.is_dir():
        return []
    found = []
    for path in out.iterdir():
        match = re.fullmatch(rf"{PREFIX}(\d+)", path.name)
        if match and (path / STATE_FILE).is_file():
            found.append((int(match.group(1)), path))
    return [p for _, p in sorted(found)]


def resolve_resume(resume_from: str, output_dir: str | Path) -> Path | None:
    """``latest`` -> newest checkpoint in output_dir (None when there is none); a path -> that path."""
    if not resume_from:
        return None
    if resume_from == "latest":
        dirs = checkpoint_dirs(output_dir)
        return dirs[-1] if dirs else None
    path = Path(resume_from)
    if not (path / STATE_FILE).is_file():
        raise ConfigError(f"resume_from_checkpoint: {path} is not a checkpoint (no {STATE_FILE})")
    return path


def save_checkpoint(
    accelerator: Any,
    model: Any,
    processor: Any,
    state: TrainerState,
    config_yaml: str,
    output_dir: str | Path,
    save_total_limit: int = 0,
    on_removed: Callable[[list[Path]], object] | None = None,
) -> Path:
    """Save a checkpoint for ``state.step``; returns its folder. Written under a temporary name
    and renamed at the end, so a crash mid-save never leaves a checkpoint that looks complete.
    ``on_removed`` gets the folders ``save_total_limit`` deleted (the run database marks them)."""
    out = Path(output_dir)
    final = out / f"{PREFIX}{state.step}"
    tmp = out / f".tmp-{PREFIX}{state.step}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp / ACCELERATE_DIR))
    unwrapped = accelerator.unwrap_model(model)
    unwrapped.save_pretrained(
        str(tmp),
        is_main_process=accelerator.is_main_process,
        save_function=accelerator.save,
        state_dict=accelerator.get_state_dict(model),
    )
    if accelerator.is_main_process:
        processor.save_pretrained(str(tmp))
        (tmp / "train_config.yaml").write_text(config_yaml)
        (tmp / STATE_FILE).write_text(json.dumps(asdict(state), indent=2))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        if save_total_limit:
            removed = checkpoint_dirs(out)[:-save_total_limit]
            for old in removed:
                shutil.rmtree(old, ignore_errors=True)
                logger.info("removed old checkpoint %s (save_total_limit=%d)", old, save_total_limit)
            if removed and on_removed is not None:
                on_removed(removed)
    accelerator.wait_for_everyone()
    return final


def read_state(path: str | Path) -> TrainerState:
    """The TrainerState saved in checkpoint folder ``path`` (nothing is loaded)."""
    return TrainerState(**json.loads((Path(path) / STATE_FILE).read_text()))


def load_checkpoint(accelerator: Any, path: str | Path) -> TrainerState:
    """Restore optimizer, scheduler, model and RNG from ``path``; returns its TrainerState."""
    accelerator.load_state(str(Path(path) / ACCELERATE_DIR))
    return read_state(path)

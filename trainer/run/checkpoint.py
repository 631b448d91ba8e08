"""Checkpoints: a Hugging Face model folder (loadable by ``from_pretrained``) plus what resuming needs.

Layout of ``<output_dir>/checkpoint-<step>/``::

    config.json, generation_config.json, model.safetensors   the policy, HF format (full training)
    adapter_config.json, adapter_model.safetensors           or: LoRA adapters + modules_to_save (peft)
    tokenizer*, preprocessor_config.json, chat_template*      the processor
    trainer_state.json                                       step, epoch, data position, run id,
                                                             learning-rate schedule progress
    train_config.yaml                                        the resolved TrainConfig
    accelerate_state/                                        optimizer, RNG of every process

The weights are stored once, in the HF (or peft) files: ``accelerator.save_state`` keeps only the
optimizer and RNG (a save hook drops its own copy of the model), and resuming loads the
weights back from the HF files. Under DeepSpeed and FSDP the engine writes and reads its own
(sharded) model and optimizer states, which it needs to resume; there the HF files are the
gathered export next to them.
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

from trainer.core.errors import ConfigError
from trainer.core.file_modes import give_default_modes

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
    # How far along the learning-rate schedule the next update is (trainer.update.schedule): a resumed
    # run with a time budget continues the schedule from here over its own budget.
    schedule_progress: float = 0.0


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
    # The weights go into the HF files below, not a second time into the accelerate state.
    handle = accelerator.register_save_state_pre_hook(lambda _models, weights, _dir: weights.clear())
    try:
        accelerator.save_state(str(tmp / ACCELERATE_DIR))
    finally:
        handle.remove()
    unwrapped = accelerator.unwrap_model(model)
    state_dict = accelerator.get_state_dict(model)
    kwargs: dict[str, Any] = {"is_main_process": accelerator.is_main_process, "state_dict": state_dict}
    if not _is_peft(unwrapped):
        kwargs["save_function"] = accelerator.save
    # A PeftModel writes only its adapters and modules_to_save out of the full state dict.
    unwrapped.save_pretrained(str(tmp), **kwargs)
    # Every process is done with the folder (save_pretrained lists it on each) before it is renamed.
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        processor.save_pretrained(str(tmp))
        (tmp / "train_config.yaml").write_text(config_yaml)
        (tmp / STATE_FILE).write_text(json.dumps(asdict(state), indent=2))
        give_default_modes(tmp)
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


def load_checkpoint(accelerator: Any, path: str | Path, model: Any) -> TrainerState:
    """Restore the weights of ``model`` (prepared by ``accelerator``), optimizer and RNG from
    checkpoint ``path``; returns its TrainerState (the learning-rate schedule resumes from it)."""
    path = Path(path)
    engine_owns_weights = accelerator.distributed_type.name in ("DEEPSPEED", "FSDP")
    if not engine_owns_weights:
        load_weights(accelerator.unwrap_model(model), path)

    def skip_models(models: list, _dir: str) -> None:
        if not engine_owns_weights:
            models.clear()  # loaded from the HF files above

    handle = accelerator.register_load_state_pre_hook(skip_models)
    try:
        accelerator.load_state(str(path / ACCELERATE_DIR))
    finally:
        handle.remove()
    return read_state(path)


def load_weights(model: Any, path: str | Path) -> None:
    """Copy the weights saved in checkpoint ``path`` into ``model`` (a PeftModel: its adapters and
    modules_to_save from adapter_model.safetensors; else the full model, read by transformers'
    own loader because the HF files use the checkpoint key names, not the module's)."""
    path = Path(path)
    if _is_peft(model):
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        weights = path / "adapter_model.safetensors"
        if not weights.is_file():
            raise ConfigError(f"resume: {path} holds no LoRA adapters ({weights.name}) but the run uses LoRA")
        result = set_peft_model_state_dict(model, load_file(str(weights)))
        if result.unexpected_keys:
            raise ConfigError(f"resume: {weights} does not fit the model: {result.unexpected_keys[:5]}")
        return
    if not (path / "config.json").is_file():
        raise ConfigError(f"resume: {path} holds no full model (config.json) but the run trains one")
    saved = type(model).from_pretrained(str(path), dtype=next(model.parameters()).dtype)
    model.load_state_dict(saved.state_dict())
    del saved


def _is_peft(model: Any) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def start_state(
    accelerator: Any, model: Any, run_id: str, total_steps: int, resume_path: Path | None
) -> TrainerState:
    """A fresh training state, or the one saved in the checkpoint at ``resume_path`` (loaded into
    ``model`` and the optimiser state accelerate tracks)."""
    state = TrainerState(run_id=run_id, total_steps=total_steps)
    if resume_path is not None:
        resumed = load_checkpoint(accelerator, resume_path, model)
        state.step, state.epoch, state.position = resumed.step, resumed.epoch, resumed.position
        state.schedule_progress = resumed.schedule_progress
        logger.info("resumed from %s at step %d", resume_path, state.step)
    return state

"""Model families: one :class:`ModelFamily` adapter each, chosen from a checkpoint's ``model_type``.

To add a family: write ``trainer/model/families/<family>.py`` with its :class:`ModelFamily` (override
the methods whose behaviour differs), list it in ``FAMILIES`` below, and build a tiny model of it
under ``scripts/tiny_model/`` for the tests.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from trainer.core.errors import ConfigError
from trainer.model.families.base import ModelFamily, unwrap
from trainer.model.families.qwen2_5_vl import QWEN2_5_VL
from trainer.model.families.qwen2_vl import QWEN2_VL
from trainer.model.families.qwen3_5 import QWEN3_5, QWEN3_5_MOE
from trainer.model.families.qwen3_vl import QWEN3_VL, QWEN3_VL_MOE

FAMILIES: dict[str, ModelFamily] = {
    f.model_type: f for f in (QWEN2_5_VL, QWEN2_VL, QWEN3_VL, QWEN3_VL_MOE, QWEN3_5, QWEN3_5_MOE)
}

__all__ = ["FAMILIES", "ModelFamily", "family_for", "family_of_model", "family_of_path", "unwrap"]


def supported() -> str:
    return ", ".join(f"{f.name} ({f.model_type})" for f in FAMILIES.values())


def family_for(model_type: str | None, where: str = "the model") -> ModelFamily:
    """The adapter of ``model_type``; a ConfigError naming ``where`` and the supported families."""
    if model_type in FAMILIES:
        return FAMILIES[model_type]
    raise ConfigError(
        f"{where}: model_type {model_type!r} is not supported; supported families: {supported()}"
    )


def family_of_model(model: Any) -> ModelFamily:
    """The adapter of a loaded model (DDP / DeepSpeed / peft wrappers allowed)."""
    return family_for(getattr(unwrap(model).config, "model_type", None), type(unwrap(model)).__name__)


def family_of_path(model_name_or_path: str | os.PathLike) -> ModelFamily:
    """The adapter of a checkpoint, from its ``config.json`` ``model_type``: a local folder's own
    file, a LoRA folder's base model's, or transformers' config of a hub id (its cache or the hub)."""
    path = Path(model_name_or_path)
    if (path / "adapter_config.json").is_file() and not (path / "config.json").is_file():
        from trainer.model.loading import adapter_base_model

        return family_of_path(adapter_base_model(path))
    config_file = path / "config.json"
    if config_file.is_file():
        try:
            model_type = json.loads(config_file.read_text(encoding="utf-8")).get("model_type")
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{config_file}: unreadable ({exc})") from exc
        return family_for(model_type, str(config_file))
    if path.is_dir():
        raise ConfigError(f"{path} is not a model folder (no config.json)")
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(str(model_name_or_path))
    except (OSError, ValueError) as exc:
        from trainer.model.hub import unavailable_model

        raise unavailable_model(str(model_name_or_path), exc) from exc
    return family_for(getattr(config, "model_type", None), str(model_name_or_path))

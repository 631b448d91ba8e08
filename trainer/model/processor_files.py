"""Does a model folder's processor belong to its weights? Read from the files alone, no weights loaded.

A folder assembled by hand (Qwen3-VL weights and ``config.json`` next to a Qwen2.5-VL
``preprocessor_config.json``) loads without a word: ``AutoProcessor`` takes the processor files'
``processor_class``, the model takes ``config.json``'s. The run then cuts frames into 14 px patches
for a tower of 16 px ones and fails steps later ("Video features and video tokens do not match", or
a shape error in the patch embedding). :func:`check_processor_files` refuses it at Check instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trainer.core.errors import ConfigError
from trainer.model.families import FAMILIES, ModelFamily

# Where AutoProcessor looks for processor_class, in its order (the first file that names one wins).
PROCESSOR_CLASS_FILES = (
    "processor_config.json",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
    "tokenizer_config.json",
)
# Files (and their sections) whose patch sizes size the frames.
PATCH_FILES = PROCESSOR_CLASS_FILES[:3]
PATCH_SECTIONS = ("", "image_processor", "video_processor")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable ({exc})") from exc
    return doc if isinstance(doc, dict) else {}


def expected_processor_class(family: ModelFamily) -> str | None:
    """The processor class transformers pairs with the family's ``model_type`` (None: unknown)."""
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    return PROCESSOR_MAPPING_NAMES.get(family.model_type)


def _families_with(key: str, value: Any) -> str:
    """The supported families whose ``key`` (patch_size, merge_size, processor_class) is ``value``."""

    def of(f: ModelFamily) -> Any:
        if key == "processor_class":
            return expected_processor_class(f)
        return f.patch_size if key == "patch_size" else f.spatial_merge_size

    return (
        ", ".join(dict.fromkeys(f.name for f in FAMILIES.values() if of(f) == value)) or "no supported family"
    )


def _model_config(folder: Path) -> dict[str, Any]:
    """The weights' config.json: the folder's own, a LoRA folder's base model's ({} for a hub base)."""
    if (folder / "config.json").is_file():
        return _read_json(folder / "config.json")
    from trainer.model.loading import adapter_base_model, is_adapter_checkpoint

    if is_adapter_checkpoint(folder):
        base = Path(adapter_base_model(folder)) / "config.json"
        return _read_json(base) if base.is_file() else {}
    return {}


def _vision_sizes(model_config: dict[str, Any], family: ModelFamily) -> tuple[int, int]:
    """(patch size, spatial merge size) of the vision tower: config.json's, else the family's."""
    vision = model_config.get("vision_config") or {}
    return (
        int(vision.get("patch_size", family.patch_size)),
        int(vision.get("spatial_merge_size", family.spatial_merge_size)),
    )


def check_processor_files(folder: str | Path, family: ModelFamily) -> None:
    """ConfigError when a local model folder's processor files disagree with its weights
    (``family``: theirs, from config.json): a patch or merge size other than the vision tower's
    (config.json ``vision_config``), or a ``processor_class`` of another family. Each names the
    file, the key, both values and what to do. A folder without processor files passes
    (AutoProcessor says what is missing when it loads); so does anything that is not a folder."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    docs = {name: _read_json(folder / name) for name in PROCESSOR_CLASS_FILES if (folder / name).is_file()}
    patch, merge = _vision_sizes(_model_config(folder), family)
    fix = (
        f"copy the processor files (processor_config.json / preprocessor_config.json / "
        f"video_preprocessor_config.json) of the {family.name} checkpoint these weights come from"
    )
    for name in PATCH_FILES:
        for section in PATCH_SECTIONS:
            values = docs.get(name, {}).get(section, {}) if section else docs.get(name, {})
            if not isinstance(values, dict):
                continue
            for key, want in (("patch_size", patch), ("merge_size", merge)):
                got = values.get(key)
                if got is not None and got != want:
                    where = f"{section}.{key}" if section else key
                    raise ConfigError(
                        f"{folder / name}: {where} is {got} but the model's vision tower ({family.name}, "
                        f"config.json) uses {want}: the processor belongs to another model "
                        f"({key} {got}: {_families_with(key, got)}); {fix}"
                    )
    expected = expected_processor_class(family)
    found = next(((n, d["processor_class"]) for n, d in docs.items() if d.get("processor_class")), None)
    if expected and found and found[1] != expected:
        name, got = found
        owners = _families_with("processor_class", got)
        raise ConfigError(
            f"{folder / name}: processor_class {got} is the processor of {owners}, but config.json is "
            f"{family.name} ({family.model_type}, processor {expected}); {fix}"
        )

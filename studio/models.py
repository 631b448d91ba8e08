"""The models the Train tab offers, and what a model's family means for the form.

- The embedded tiny models are discovered: every folder under ``assets/`` whose ``config.json`` names a
  supported family (a newly built one shows up without a code change), labelled with that family.
- A model's family is found without loading it (:func:`family_of`): a local folder's ``config.json``,
  a hub id's config in the local cache, else the checkpoints the family adapters list.
- One visual token covers a family's ``pixels_per_token`` (28 x 28 px on Qwen2/2.5-VL, 32 x 32 on
  Qwen3-VL), so switching family rescales the form's pixel budgets (:func:`rescale_pixels`) and a
  frame keeps its number of visual tokens; the shipped presets' 3136 px would be one Qwen3-VL token.
  The chat asks two models one question, so it floors each one's budgets instead (:func:`for_token_size`).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio import text
from trainer.core.config import parse_value
from trainer.core.errors import ConfigError
from trainer.core.paths import ASSETS_DIR, REPO_ROOT, TINY_MODEL_DIR, is_hub_id, resolve_repo_path
from trainer.core.video_config import VideoConfig
from trainer.model.families import FAMILIES, ModelFamily, family_for, family_of_path

logger = logging.getLogger(__name__)

# Well-known checkpoints of every family the engine supports (trainer.model.families).
HUB_MODELS = tuple(hub_id for family in FAMILIES.values() for hub_id in family.hub_models)
# The form's pixel budgets, in VideoConfig's order (total_pixels may be empty: no budget).
PIXEL_FIELDS = ("min_pixels", "max_pixels", "total_pixels")


def embedded_models(assets_dir: Path = ASSETS_DIR) -> list[tuple[str, ModelFamily]]:
    """``(absolute path, family)`` of every model folder under ``assets_dir``, the default tiny model
    first, then by name. A folder whose family is not supported (or whose config is unreadable) is
    left out: the picker offers only what can train."""
    found = []
    for folder in sorted(p for p in assets_dir.iterdir() if (p / "config.json").is_file()):
        try:
            found.append((str(folder), family_of_path(folder)))
        except ConfigError as exc:
            logger.info("model picker: %s left out (%s)", folder, exc)
    return sorted(found, key=lambda item: item[0] != str(TINY_MODEL_DIR))


def model_label(value: str, family: ModelFamily | None = None) -> str:
    """``<repo>/assets/tiny-qwen3-vl`` -> ``assets/tiny-qwen3-vl — Qwen3-VL`` (the path as the
    presets spell it, then the family when given); anything else unchanged."""
    path = Path(value)
    inside = path.is_absolute() and path.is_relative_to(REPO_ROOT)
    label = str(path.relative_to(REPO_ROOT)) if inside else value
    return f"{label} — {family.name}" if family is not None else label


def embedded_origin(value: str | None, assets_dir: Path = ASSETS_DIR) -> tuple[str, bool] | None:
    """The embedded tiny model a pick is, or a checkpoint was trained from (the ``train_config.yaml``
    it carries, through a run started from another run's checkpoint too): ``(that model's folder,
    is the pick a checkpoint)``. None for any other model, a hub id or a folder that is not there.

    The tiny models learned their tokenizer and answer format on the synthetic motion clips alone,
    so the Chat tab says so wherever one is picked."""
    from trainer.model.loading import run_base_model

    embedded = {os.path.realpath(path) for path, _ in embedded_models(assets_dir)}
    path = resolve_repo_path((value or "").strip())
    is_checkpoint = False
    for _ in range(8):  # a chain of runs, each from the one before's checkpoint
        if not path or not os.path.isdir(path):
            return None
        if os.path.realpath(path) in embedded:
            return path, is_checkpoint
        base = run_base_model(Path(path))
        if base is None:
            return None
        path, is_checkpoint = resolve_repo_path(base), True
    return None


def model_choices(value: str, assets_dir: Path = ASSETS_DIR) -> list[tuple[str, str]]:
    """The Model box: the embedded models with their family, the form's value, then the hub ids."""
    embedded = embedded_models(assets_dir)
    families = dict(embedded)
    values = dict.fromkeys([*families, str(value), *HUB_MODELS])
    return [(model_label(v, families.get(v)), v) for v in values]


def family_of(model: str) -> ModelFamily | None:
    """The family of a form's model value, or None when it cannot be told without loading it: a
    folder (relative to the repository too) by its ``config.json``; a hub id by its config in the
    local cache, else by the adapters' list of well-known checkpoints. Never reaches the network."""
    model = (model or "").strip()
    if not model:
        return None
    path = resolve_repo_path(model)
    if os.path.isdir(path):
        try:
            return family_of_path(path)
        except ConfigError:
            return None
    if not is_hub_id(model):
        return None
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model, local_files_only=True)
        return family_for(getattr(config, "model_type", None), model)
    except (OSError, ValueError, ConfigError):
        pass
    listed = {hub_id: family for family in FAMILIES.values() for hub_id in family.hub_models}
    return listed.get(model)


def token_side(family: ModelFamily) -> int:
    """Pixels per side of one visual token: 28 for Qwen2.5-VL, 32 for Qwen3-VL."""
    return math.isqrt(family.pixels_per_token)


@dataclass(frozen=True)
class PixelRescale:
    """What a change of family does to the form: the new pixel budgets (only those that change)
    and the sentence that says so."""

    values: dict[str, str]
    message: str


def rescale_pixels(values: Mapping[str, Any], old: ModelFamily, new: ModelFamily) -> PixelRescale | None:
    """The form's pixel budgets (``PIXEL_FIELDS`` as typed) sized for ``old``'s visual token, sized
    for ``new``'s instead (``VideoConfig.for_token_size``). None when nothing changes: the tokens
    are the same size, or a budget does not parse (the fields are left for Check to name).

    >>> from trainer.model.families import FAMILIES
    >>> by_token = {f.pixels_per_token: f for f in FAMILIES.values()}
    >>> change = rescale_pixels(
    ...     {"min_pixels": "3136", "max_pixels": "3136", "total_pixels": ""}, by_token[784], by_token[1024])
    >>> change.values
    {'min_pixels': '4096', 'max_pixels': '4096'}
    """
    if old.pixels_per_token == new.pixels_per_token:
        return None
    try:
        parsed = {
            name: parse_value(name, values.get(name), int, optional=name == "total_pixels")
            for name in PIXEL_FIELDS
        }
        before = VideoConfig(**parsed)
    except ConfigError:
        return None
    after = before.for_token_size(old.pixels_per_token, new.pixels_per_token).to_dict()
    changed = {n: str(after[n]) for n in PIXEL_FIELDS if after[n] != parsed[n]}
    if not changed:
        return None
    changes = ", ".join(f"{n} {parsed[n]} -> {v}" for n, v in changed.items())
    message = text.PIXELS_RESCALED.format(family=new.name, side=token_side(new), changes=changes)
    return PixelRescale(changed, message)


def for_token_size(messages: list[dict], pixels_per_token: int) -> list[dict]:
    """A copy of ``messages`` whose images and videos ask for at least one visual token of
    ``pixels_per_token`` px: both panes share one question whose max pixels may be below a family's
    token (the chat allows 28 x 28; a Qwen3-VL token is 32 x 32), which qwen-vl-utils resizes to 0 x 0.

    >>> video = {"type": "video", "video": "v.mp4", "min_pixels": 784, "max_pixels": 784}
    >>> for_token_size([{"role": "user", "content": [video]}], 1024)[0]["content"][0]["max_pixels"]
    1024
    """

    def widen(part: Any) -> Any:
        if not isinstance(part, dict) or part.get("type") not in ("video", "image"):
            return part
        return {
            **part,
            **{k: max(int(part[k]), pixels_per_token) for k in ("min_pixels", "max_pixels") if k in part},
        }

    return [
        {**m, "content": [widen(p) for p in m["content"]]} if isinstance(m.get("content"), list) else m
        for m in messages
    ]

"""Which parameters learn: qwen-vl-finetune's tune_mm_llm / tune_mm_mlp / tune_mm_vision, or LoRA.

Under LoRA the parts trained fully (the merger with ``tune_mm_mlp``, the vision tower with
``tune_mm_vision``) go through peft's ``modules_to_save``: peft then trains a copy and keeps the
original, so the adapter checkpoint holds them and ``disable_adapter()`` is exactly the model as
loaded (the GRPO reference). Unfreezing them by hand after ``get_peft_model`` would lose both.
"""

from __future__ import annotations

import logging
from typing import Any

from trainer.core.config import ModelConfig
from trainer.core.errors import ConfigError
from trainer.model.families import ModelFamily, family_of_model
from trainer.model.families.base import QWEN_LORA_TARGETS

logger = logging.getLogger(__name__)


def lora_modules_to_save(cfg: ModelConfig, family: ModelFamily, vision_depth: int) -> list[str]:
    """The non-LoRA modules a LoRA run trains fully: the whole tower (mergers included) with
    ``tune_mm_vision`` and ``tune_mm_mlp``, the family's mergers alone with ``tune_mm_mlp``, the
    tower's patch embedding and ``vision_depth`` blocks without the mergers with ``tune_mm_vision``
    alone (module paths as peft matches them, from the family adapter).

    Freezing the merger inside a trained copy of the tower would not last: peft sets a whole
    ``modules_to_save`` copy trainable again whenever adapters are re-enabled (after every
    reference forward), so the tower is then listed part by part instead."""
    tower = family.vision_tower
    if cfg.tune_mm_vision and cfg.tune_mm_mlp:
        return [tower]
    if cfg.tune_mm_vision:
        return [f"{tower}.patch_embed"] + [f"{tower}.blocks.{i}" for i in range(vision_depth)]
    if cfg.tune_mm_mlp:
        return list(family.mergers)
    return []


def lora_targets(cfg: ModelConfig, family: ModelFamily) -> list[str]:
    """The module names that get LoRA adapters: ``lora_target_modules``, where the default list means
    the family's own (Qwen3.5 adds its linear-attention projections to it). Raises ConfigError when
    a list leaves out targets the family cannot train without (named, with the list to use)."""
    targets = [t.strip() for t in cfg.lora_target_modules.split(",") if t.strip()]
    if tuple(targets) == QWEN_LORA_TARGETS:
        return list(family.lora_targets)
    missing = family.missing_lora_targets(targets)
    if missing:
        raise ConfigError(
            f"lora_target_modules leaves out {', '.join(missing)}: {family.name}'s linear-attention layers "
            "would not train (most of its decoder layers); add them, e.g. "
            f"lora_target_modules: {','.join(family.lora_targets)}"
        )
    return targets


def lora_config(cfg: ModelConfig, family: ModelFamily, vision_depth: int) -> Any:
    """The peft LoraConfig of ``cfg``: adapters on the language model's projections only (the
    vision tower has same-named modules), trained copies of :func:`lora_modules_to_save`."""
    from peft import LoraConfig

    targets = lora_targets(cfg, family)
    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=family.lora_target_regex(targets),
        modules_to_save=lora_modules_to_save(cfg, family, vision_depth) or None,
        task_type="CAUSAL_LM",
    )


def set_trainable(model: Any, cfg: ModelConfig) -> Any:
    """Freeze or unfreeze the language model, the merger MLP(s) and the vision tower; with
    ``lora_enable`` wrap the language model's linear layers in peft LoRA adapters instead of
    training them fully. Returns the (possibly peft-wrapped) model."""
    family = family_of_model(model)
    family.vision_tower_of(model).requires_grad_(cfg.tune_mm_vision)
    # The mergers belong to the vision tower's module tree; set them after the tower.
    for merger in family.merger_modules(model):
        merger.requires_grad_(cfg.tune_mm_mlp)
    family.language_model_of(model).requires_grad_(cfg.tune_mm_llm and not cfg.lora_enable)
    model.lm_head.requires_grad_(cfg.tune_mm_llm and not cfg.lora_enable)
    if cfg.lora_enable:
        from peft import get_peft_model

        config = lora_config(cfg, family, family.vision_depth(model))
        config.modules_to_save = wrappable_modules(family.core(model), config.modules_to_save)
        model = get_peft_model(model, config)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    logger.info("trainable parameters: %d of %d (%.2f%%)", trainable, total, 100 * trainable / max(total, 1))
    return model


def wrappable_modules(core: Any, paths: list[str] | None) -> list[str] | None:
    """``paths`` (modules under ``core``) as peft can wrap them for ``modules_to_save``: a module
    list or dict is listed by its children (Qwen3-VL's ``visual.deepstack_merger_list`` ->
    ``visual.deepstack_merger_list.0``, ...); peft refuses a container ("modules_to_save cannot be
    applied to modules of type ModuleList") and matches names by suffix, so the children's paths
    reach the same modules."""
    import torch

    if not paths:
        return paths
    containers = (torch.nn.ModuleList, torch.nn.ModuleDict)
    out: list[str] = []
    for path in paths:
        module = core.get_submodule(path)
        if isinstance(module, containers):
            out += [f"{path}.{name}" for name, _ in module.named_children()]
        else:
            out.append(path)
    return out


def trainable_parameters(model: Any) -> list:
    return [p for p in model.parameters() if p.requires_grad]

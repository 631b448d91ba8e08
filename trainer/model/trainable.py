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

logger = logging.getLogger(__name__)

# Module paths (suffixes, as peft matches them) inside Qwen2_5_VLForConditionalGeneration.
VISION_TOWER = "visual"
MERGER = "visual.merger"


def lora_modules_to_save(cfg: ModelConfig, vision_depth: int) -> list[str]:
    """The non-LoRA modules a LoRA run trains fully: the whole tower (merger included) with
    ``tune_mm_vision`` and ``tune_mm_mlp``, the merger alone with ``tune_mm_mlp``, the tower's
    patch embedding and ``vision_depth`` blocks without the merger with ``tune_mm_vision`` alone.

    Freezing the merger inside a trained copy of the tower would not last: peft sets a whole
    ``modules_to_save`` copy trainable again whenever adapters are re-enabled (after every
    reference forward), so the tower is then listed part by part instead."""
    if cfg.tune_mm_vision and cfg.tune_mm_mlp:
        return [VISION_TOWER]
    if cfg.tune_mm_vision:
        return [f"{VISION_TOWER}.patch_embed"] + [f"{VISION_TOWER}.blocks.{i}" for i in range(vision_depth)]
    if cfg.tune_mm_mlp:
        return [MERGER]
    return []


def lora_config(cfg: ModelConfig, vision_depth: int) -> Any:
    """The peft LoraConfig of ``cfg``: adapters on the language model's projections only (the
    vision tower has same-named modules), trained copies of :func:`lora_modules_to_save`."""
    from peft import LoraConfig

    targets = [t.strip() for t in cfg.lora_target_modules.split(",") if t.strip()]
    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=rf".*language_model.*\.({'|'.join(targets)})",
        modules_to_save=lora_modules_to_save(cfg, vision_depth) or None,
        task_type="CAUSAL_LM",
    )


def set_trainable(model: Any, cfg: ModelConfig) -> Any:
    """Freeze or unfreeze the language model, the merger MLP and the vision tower; with
    ``lora_enable`` wrap the language model's linear layers in peft LoRA adapters instead of
    training them fully. Returns the (possibly peft-wrapped) model."""
    core = model.model
    core.visual.requires_grad_(cfg.tune_mm_vision)
    # The merger belongs to the vision tower's module tree; set it after the tower.
    core.visual.merger.requires_grad_(cfg.tune_mm_mlp)
    core.language_model.requires_grad_(cfg.tune_mm_llm and not cfg.lora_enable)
    model.lm_head.requires_grad_(cfg.tune_mm_llm and not cfg.lora_enable)
    if cfg.lora_enable:
        from peft import get_peft_model

        model = get_peft_model(model, lora_config(cfg, len(core.visual.blocks)))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    logger.info("trainable parameters: %d of %d (%.2f%%)", trainable, total, 100 * trainable / max(total, 1))
    return model


def trainable_parameters(model: Any) -> list:
    return [p for p in model.parameters() if p.requires_grad]

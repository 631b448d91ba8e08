"""Which parameters learn: qwen-vl-finetune's tune_mm_llm / tune_mm_mlp / tune_mm_vision, or LoRA."""

from __future__ import annotations

import logging
from typing import Any

from trainer.config import ModelConfig

logger = logging.getLogger(__name__)


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
        from peft import LoraConfig, get_peft_model

        targets = [t.strip() for t in cfg.lora_target_modules.split(",") if t.strip()]
        lora = LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            # Only the language model's projections: the vision tower has same-named modules.
            target_modules=rf".*language_model.*\.({'|'.join(targets)})",
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, lora)
        # peft freezes everything else; restore the parts the user asked to train fully.
        base = model.get_base_model().model
        base.visual.requires_grad_(cfg.tune_mm_vision)
        base.visual.merger.requires_grad_(cfg.tune_mm_mlp)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    logger.info("trainable parameters: %d of %d (%.2f%%)", trainable, total, 100 * trainable / max(total, 1))
    return model


def trainable_parameters(model: Any) -> list:
    return [p for p in model.parameters() if p.requires_grad]

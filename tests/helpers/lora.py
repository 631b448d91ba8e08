"""A peft copy of a policy as if trained: LoRA on the language model's q/v projections, the merger
trained in full (``modules_to_save``, which keeps its untrained copy as ``original_module``)."""

from __future__ import annotations

import copy
from typing import Any

import torch


def trained_lora(model: Any) -> Any:
    """A LoRA-wrapped deep copy of ``model`` with B moved away from its zero init and the merger
    changed (random, from torch's current seed), so a merge is not the base model."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=4, target_modules=r".*language_model.*\.(q_proj|v_proj)", modules_to_save=["merger"]
    )
    lora = get_peft_model(copy.deepcopy(model), config)
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name or "modules_to_save" in name:
                p.add_(0.05 * torch.randn_like(p))
    return lora

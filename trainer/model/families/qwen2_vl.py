"""Qwen2-VL (``model_type`` ``qwen2_vl``): the same 28 x 28 px visual token as Qwen2.5-VL (14 px
patches merged 2 x 2), full attention in the vision tower, and a rope index that ignores the
frames' timing (its processor gives no ``second_per_grid_ts``)."""

from __future__ import annotations

from functools import partial

from trainer.model.families.base import ModelFamily
from trainer.model.families.qwen_mrope import follow_transformers_positions

QWEN2_VL = ModelFamily(
    model_type="qwen2_vl",
    name="Qwen2-VL",
    model_class="Qwen2VLForConditionalGeneration",
    vllm_architecture="Qwen2VLForConditionalGeneration",
    hub_models=("Qwen/Qwen2-VL-2B-Instruct", "Qwen/Qwen2-VL-7B-Instruct"),
    vllm_patches=(
        partial(
            follow_transformers_positions,
            "vllm.model_executor.models.qwen2_vl",
            "Qwen2VLForConditionalGeneration",
        ),
    ),
)

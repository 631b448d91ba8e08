"""Qwen2.5-VL (``model_type`` ``qwen2_5_vl``): 14 px patches merged 2 x 2, window attention in the
vision tower, absolute-time M-RoPE (the processor's ``second_per_grid_ts`` feeds the rope index)."""

from __future__ import annotations

from functools import partial

from trainer.model.families.base import ModelFamily
from trainer.model.families.qwen_mrope import follow_transformers_positions

QWEN2_5_VL = ModelFamily(
    model_type="qwen2_5_vl",
    name="Qwen2.5-VL",
    model_class="Qwen2_5_VLForConditionalGeneration",
    vllm_architecture="Qwen2_5_VLForConditionalGeneration",
    hub_models=("Qwen/Qwen2.5-VL-3B-Instruct", "Qwen/Qwen2.5-VL-7B-Instruct"),
    rope_grid_keys=("image_grid_thw", "video_grid_thw", "second_per_grid_ts"),
    vllm_patches=(
        partial(
            follow_transformers_positions,
            "vllm.model_executor.models.qwen2_5_vl",
            "Qwen2_5_VLForConditionalGeneration",
        ),
    ),
)

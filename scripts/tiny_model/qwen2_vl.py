"""The tiny Qwen2-VL's config and processor: real architecture, tiny sizes (the second model family).

The language model is the tiny Qwen2.5-VL's (config.TEXT: hidden 64, 2 layers, 4 heads, 2 KV heads,
rope theta 100 with mrope_section [2, 3, 3] for head_dim 16, as explained there), with the same
tokenizer, token ids, generation config and image/video processors. The vision tower is Qwen2-VL's
own: full attention in every block, a LayerNorm + GELU MLP (not gated), patch 14, temporal patch 2,
2x2 merge, so code written against it runs unchanged on Qwen2-VL-2B/7B.
"""

from __future__ import annotations

from typing import Any

from scripts.tiny_model.config import generation_config, vision_processors, vl_config

MODEL_TYPE = "qwen2_vl"
__all__ = ["MODEL_TYPE", "VISION", "generation_config", "model_config", "processor"]

VISION = {
    "depth": 2,
    "embed_dim": 64,  # the tower's width (Qwen2.5-VL calls it hidden_size)
    "hidden_size": 64,  # what the merger projects to: the language model's hidden size
    "mlp_ratio": 4,  # 64 -> 256 -> 64, like the tiny Qwen2.5-VL's intermediate_size 256
    "num_heads": 4,
    "in_channels": 3,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "hidden_act": "quick_gelu",  # the real Qwen2-VL's (Qwen2.5-VL moved to silu)
    # No tokens_per_second: Qwen2-VL's rope index advances time by 1 per temporal patch whatever the
    # fps, which is where the tiny Qwen2.5-VL's 4 tokens/s x 0.25 s puts it too (positions 0..3).
}


def model_config(tokenizer: Any) -> Any:
    """Qwen2VLConfig: config.TEXT and VISION with the token ids of our tokenizer."""
    return vl_config("Qwen2VLConfig", "Qwen2VLForConditionalGeneration", tokenizer, VISION)


def processor(tokenizer: Any, chat_template: str) -> Any:
    """Qwen2VLProcessor with the real image/video processors (the same as Qwen2.5-VL's). It returns
    no second_per_grid_ts: Qwen2-VL's rope index ignores the frames' timing."""
    from transformers import Qwen2VLProcessor

    image, video = vision_processors()
    return Qwen2VLProcessor(
        image_processor=image, video_processor=video, tokenizer=tokenizer, chat_template=chat_template
    )

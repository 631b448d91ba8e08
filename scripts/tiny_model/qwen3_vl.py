"""The tiny Qwen3-VL's config and processor: the real architecture, tiny sizes.

Structure as the real Qwen3-VL-2B/4B/8B: a vision tower of 16 px patches (temporal patch 2, 2x2
merge: 32 x 32 px per visual token) with learned position embeddings interpolated to the grid, a
merger and a DeepStack merger (block 0's features added to decoder layer 0's output), and a
Qwen3 language model (q/k norms, explicit head_dim) with interleaved mrope. The processor is the
real ``Qwen3VLProcessor`` with ``Qwen3VLVideoProcessor`` (frame timestamps written into the prompt)
and ``Qwen2VLImageProcessorFast`` settings of the real checkpoints (patch 16, mean/std 0.5).

Text sizes are the tiny Qwen2.5-VL's (config.TEXT): hidden 64, 2 layers, 4 heads of 16, 2 KV heads,
rope theta 100 with 8 rotary frequencies split [2, 3, 3] (the real [24, 20, 20] of 64, interleaved).
The synthetic clips are decoded at 64 x 64 px here (``VIDEO_SCALE``): 2 x 2 tokens of 32 px per frame
pair, the same token layout the 28 px families get at 56 x 56.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scripts.tiny_model.config import TEXT, generation_config, text_config, vl_config

MODEL_TYPE = "qwen3_vl"
__all__ = [
    "CORPUS_EXTRA", "EXTRA_PLAIN_TOKENS", "MODEL_TYPE", "PIXELS_PER_TOKEN", "VISION", "chat_template",
    "generation_config", "model_config", "processor",
]  # fmt: skip

# Qwen3's added tokens beyond Qwen2.5-VL's (plain, not special: they survive skip_special_tokens).
EXTRA_PLAIN_TOKENS = ["<tool_response>", "</tool_response>", "<think>", "</think>"]
TEMPLATE = Path(__file__).with_name("templates") / "qwen3_vl.jinja"
# Pixels per visual token: 16 px patches merged 2 x 2 (the 28 px families: 784).
PIXELS_PER_TOKEN = 32 * 32
# The processor writes "<t seconds>" before each frame pair: let the BPE see such texts.
CORPUS_EXTRA = [f"<{t / 10:.1f} seconds>" for t in range(0, 101)]

VISION = {
    "depth": 2,
    "hidden_size": 64,
    "intermediate_size": 256,
    "num_heads": 4,
    "in_channels": 3,
    "out_hidden_size": 64,  # the language model's hidden size
    "patch_size": 16,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    # A 4 x 4 table of learned position embeddings, interpolated to each grid (real: 48 x 48).
    "num_position_embeddings": 16,
    # Real (8, 16, 24) of 27 blocks feed decoder layers 0, 1, 2. Here block 0 feeds decoder layer 0;
    # a second one would be added after the last decoder layer, where it reaches no scored logit.
    "deepstack_visual_indexes": [0],
    "hidden_act": "gelu_pytorch_tanh",
}


def chat_template() -> str:
    return TEMPLATE.read_text(encoding="utf-8")


def model_config(tokenizer: Any) -> Any:
    """Qwen3VLConfig: TEXT (head_dim 16, interleaved mrope) and VISION with our token ids."""
    text = text_config(tokenizer)
    text.pop("use_sliding_window"), text.pop("sliding_window"), text.pop("max_window_layers")
    text["head_dim"] = TEXT["hidden_size"] // TEXT["num_attention_heads"]
    text["rope_parameters"] = dict(TEXT["rope_parameters"], mrope_interleaved=True)
    return vl_config("Qwen3VLConfig", "Qwen3VLForConditionalGeneration", tokenizer, VISION, text)


def processor(tokenizer: Any, chat_template: str) -> Any:
    """Qwen3VLProcessor with the real checkpoints' image and video processor settings."""
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

    common = dict(
        patch_size=16, temporal_patch_size=2, merge_size=2, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    image = Qwen2VLImageProcessor(size={"shortest_edge": 65536, "longest_edge": 16777216}, **common)
    video = Qwen3VLVideoProcessor(size={"shortest_edge": 4096, "longest_edge": 25165824}, **common)
    return Qwen3VLProcessor(
        image_processor=image, video_processor=video, tokenizer=tokenizer, chat_template=chat_template
    )

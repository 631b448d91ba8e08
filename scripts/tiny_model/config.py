"""The tiny Qwen2.5-VL's config and processor: real architecture, tiny sizes.

Sizes follow shared/QWEN_VL_NOTES.md (a ~340k-parameter model runs a GRPO step in ~0.14 s on 2 CPU
cores); the structure (patch 14, temporal patch 2, 2x2 merge, windowed + full attention blocks,
mrope) is the real one, so code written against it runs unchanged on Qwen2.5-VL-3B/7B.
The text sizes, token ids, generation config and image/video processors here are shared with the
tiny Qwen2-VL (scripts/tiny_model/qwen2_vl.py).
"""

from __future__ import annotations

from typing import Any

TEXT = {
    "hidden_size": 64,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-6,
    "hidden_act": "silu",
    # head_dim 16 -> 8 rotary frequencies split temporal/height/width like the real [16, 24, 24].
    # theta 100 (real: 1e6): with only 8 frequencies, 1e6 leaves the height/width sections rotating
    # <= 0.032 rad per cell, nearly blind to a 2x2 token layout; sequences here are < 200 tokens.
    "rope_parameters": {"rope_type": "default", "rope_theta": 100.0, "mrope_section": [2, 3, 3]},
    "use_sliding_window": False,
    "sliding_window": None,
    "max_window_layers": 2,
    "attention_dropout": 0.0,
}
VISION = {
    "depth": 2,
    "hidden_size": 64,
    "intermediate_size": 256,
    "num_heads": 4,
    "in_channels": 3,
    "out_hidden_size": 64,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "window_size": 112,
    # The real 32-block tower uses full attention in every 8th block; with 2 blocks: the last.
    "fullatt_block_indexes": [1],
    # qwen-vl-utils' second_per_grid_ts is 2 / fps = 0.25 s at 8 fps: 4 tokens/s puts the four
    # temporal steps at positions 0, 1, 2, 3 (25 would space them 6 apart; 2 would merge them).
    "tokens_per_second": 4,
    "hidden_act": "silu",
}


MODEL_TYPE = "qwen2_5_vl"


def token_ids(tokenizer: Any) -> dict[str, int]:
    """Our tokenizer's ids of the special tokens the model config names."""
    return {name: tokenizer.convert_tokens_to_ids(tok) for name, tok in (
        ("bos", "<|endoftext|>"), ("eos", "<|im_end|>"), ("pad", "<|endoftext|>"),
        ("vision_start", "<|vision_start|>"), ("vision_end", "<|vision_end|>"),
        ("image", "<|image_pad|>"), ("video", "<|video_pad|>"),
    )}  # fmt: skip


def text_config(tokenizer: Any) -> dict[str, Any]:
    """TEXT with our vocabulary and token ids: they belong in text_config, where the model reads
    them (top-level ids do not reach it)."""
    ids = token_ids(tokenizer)
    vocab_size = -(-len(tokenizer) // 64) * 64  # padded like the real 151936 (unused rows never sampled)
    # initializer_range 0.1 (real: 0.02): at 0.02 a 64-wide model's attention starts uniform and the
    # warm start sat for 450 steps at ln 4 on the option text after a random letter ("(D) up"); at
    # 0.1 it binds letter -> text within ~75 steps.
    return dict(TEXT, vocab_size=vocab_size, bos_token_id=ids["bos"], eos_token_id=ids["eos"],
                pad_token_id=ids["pad"], tie_word_embeddings=True, initializer_range=0.1)  # fmt: skip


def vl_config(
    config_class: str,
    architecture: str,
    tokenizer: Any,
    vision: dict[str, Any],
    text: dict[str, Any] | None = None,
) -> Any:
    """A transformers VL config (``config_class``, e.g. ``Qwen2VLConfig``): ``text`` (default
    :func:`text_config`), ``vision`` and the vision token ids of our tokenizer."""
    import transformers

    ids = token_ids(tokenizer)
    return getattr(transformers, config_class)(
        text_config=text if text is not None else text_config(tokenizer),
        vision_config=vision,
        image_token_id=ids["image"],
        video_token_id=ids["video"],
        vision_start_token_id=ids["vision_start"],
        vision_end_token_id=ids["vision_end"],
        tie_word_embeddings=True,
        architectures=[architecture],
    )


def model_config(tokenizer: Any) -> Any:
    """Qwen2_5_VLConfig: TEXT and VISION with the token ids of our tokenizer."""
    return vl_config("Qwen2_5_VLConfig", "Qwen2_5_VLForConditionalGeneration", tokenizer, VISION)


def generation_config(tokenizer: Any) -> Any:
    """Stop at <|im_end|> (or <|endoftext|>), pad with <|endoftext|>, never sample vision tokens."""
    from transformers import GenerationConfig

    ids = tokenizer.convert_tokens_to_ids
    suppress = ["<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
                "<|im_start|>"]  # fmt: skip
    return GenerationConfig(
        bos_token_id=ids("<|endoftext|>"),
        eos_token_id=[ids("<|im_end|>"), ids("<|endoftext|>")],
        pad_token_id=ids("<|endoftext|>"),
        suppress_tokens=sorted(ids(t) for t in suppress),
    )


def vision_processors() -> tuple[Any, Any]:
    """The image and video processors with the real settings of Qwen2-VL and Qwen2.5-VL (patch 14,
    temporal patch 2, merge 2, CLIP mean/std, their min/max pixels)."""
    from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    common = dict(
        patch_size=14,
        temporal_patch_size=2,
        merge_size=2,
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
    )
    image = Qwen2VLImageProcessor(size={"shortest_edge": 3136, "longest_edge": 12845056}, **common)
    return image, Qwen2VLVideoProcessor(**common)


def processor(tokenizer: Any, chat_template: str) -> Any:
    """Qwen2_5_VLProcessor with the real image/video processors (:func:`vision_processors`)."""
    from transformers import Qwen2_5_VLProcessor

    image, video = vision_processors()
    return Qwen2_5_VLProcessor(
        image_processor=image, video_processor=video, tokenizer=tokenizer, chat_template=chat_template
    )

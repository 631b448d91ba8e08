"""The tiny Qwen3.5's config and processor: the real architecture, tiny sizes.

Structure as the real Qwen3.5 (0.8B to 27B; Qwen3.6 / 3.8 checkpoints share the schema): a vision
tower of 16 px patches (temporal patch 2, 2x2 merge: 32 x 32 px per visual token) with one merger
and no DeepStack, and a hybrid language model: a Gated DeltaNet linear-attention layer, then a
full-attention layer, whose cache keeps a convolution state and a recurrent state per linear layer.
(The real models have three linear layers to one full; here 1:1, because on CPU the linear layers
run transformers' PyTorch fallback of the chunked delta rule, whose 64-step intra-chunk loop made a
training step of the 3:1 tiny model ~5x the tiny Qwen3-VL's, against ~1.7x for 1:1.) Full attention
is gated (q_proj doubled) with q/k norms and a partial rotary embedding (interleaved mrope on a
fraction of each head). The processor is the real ``Qwen3VLProcessor`` (frame timestamps in the
prompt), the tokenizer Qwen3.5's own class with its split regex, and the chat template thinks by
default (templates/qwen3_5.jinja).

Sizes: hidden 64, 2 layers; the linear layer with 2 key and 2 value heads of 16 and a kernel-4
convolution; full attention 2 heads of 32 (1 KV head), rotary on half of each head (16 dims, 8
frequencies split [3, 3, 2] like the real [11, 11, 10]), rope theta 100 as the other tiny models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scripts.tiny_model.config import generation_config, token_ids, vl_config
from scripts.tiny_model.qwen3_vl import CORPUS_EXTRA, EXTRA_PLAIN_TOKENS, PIXELS_PER_TOKEN

MODEL_TYPE = "qwen3_5"
__all__ = [
    "CORPUS_EXTRA", "EXTRA_PLAIN_TOKENS", "MODEL_TYPE", "PIXELS_PER_TOKEN", "TEXT", "TOKENIZER", "VISION",
    "WARM_START_STEPS",
    "chat_template", "generation_config", "model_config", "processor",
]  # fmt: skip

TEMPLATE = Path(__file__).with_name("templates") / "qwen3_5.jinja"
# The format warm start's loss is flat (~0.10) from step ~50; its steps cost ~2.5x the other tiny
# models' (the linear layer's PyTorch fallback), so it stops at 150 rather than 400.
WARM_START_STEPS = 150


def _tokenizer_spec() -> tuple[str, str]:
    from transformers.models.qwen3_5.tokenization_qwen3_5 import PRETOKENIZE_REGEX

    return PRETOKENIZE_REGEX, "Qwen3_5Tokenizer"


# (split regex, tokenizer class): Qwen3.5 splits letters with their marks and digits one by one.
TOKENIZER = _tokenizer_spec()

TEXT = {
    "hidden_size": 64,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "layer_types": ["linear_attention", "full_attention"],
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 32,
    "linear_conv_kernel_dim": 4,
    "linear_key_head_dim": 16,
    "linear_value_head_dim": 16,
    "linear_num_key_heads": 2,
    "linear_num_value_heads": 2,
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-6,
    "hidden_act": "silu",
    "rope_parameters": {
        "rope_type": "default",
        "rope_theta": 100.0,
        "partial_rotary_factor": 0.5,
        "mrope_section": [3, 3, 2],
        "mrope_interleaved": True,
    },
    "attention_dropout": 0.0,
}
VISION = {
    "depth": 2,
    "hidden_size": 64,
    "intermediate_size": 256,
    "num_heads": 4,
    "in_channels": 3,
    "out_hidden_size": 64,
    "patch_size": 16,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "num_position_embeddings": 16,
    "hidden_act": "gelu_pytorch_tanh",
}


def chat_template() -> str:
    return TEMPLATE.read_text(encoding="utf-8")


def model_config(tokenizer: Any) -> Any:
    """Qwen3_5Config: TEXT and VISION with our vocabulary and token ids (in text_config, where the
    model reads them)."""
    ids = token_ids(tokenizer)
    vocab_size = -(-len(tokenizer) // 64) * 64
    text = dict(TEXT, vocab_size=vocab_size, bos_token_id=ids["bos"], eos_token_id=ids["eos"],
                pad_token_id=ids["pad"], tie_word_embeddings=True, initializer_range=0.1)  # fmt: skip
    return vl_config("Qwen3_5Config", "Qwen3_5ForConditionalGeneration", tokenizer, VISION, text)


def processor(tokenizer: Any, chat_template: str) -> Any:
    """The tiny Qwen3-VL's processor settings (Qwen3.5 checkpoints ship the same processor)."""
    from scripts.tiny_model.qwen3_vl import processor as qwen3_vl_processor

    return qwen3_vl_processor(tokenizer, chat_template)

"""How much memory a colocated vLLM engine holds: its KV cache, sized from the model's counts.

On a GPU vLLM sizes itself (``gpu_memory_utilization``: its share of the device). On vLLM's CPU
build the KV cache is ours to size (``kv_cache_memory_bytes``), and a fraction of host memory is a
poor rule: the default 0.3 reserved 7 GiB of a 24 GiB host for a 1.6 M-parameter model whose
sequences need a few MiB. So the cache is what the run's sequences can use at the model's full
context, with a margin, and the fraction of host memory is only its ceiling.

Pure arithmetic, checked by hand in the tests; ``trainer.step.cost`` counts the same numbers in
the pre-flight's memory estimate.
"""

from __future__ import annotations

from typing import Any

MIB = 2**20
# vLLM allocates the cache in blocks and keeps a little for itself; a quarter more than the tokens.
KV_MARGIN = 1.25
# Below this the engine's fixed costs dominate; a tiny model still gets a usable cache.
KV_FLOOR_BYTES = 64 * MIB


def kv_bytes_per_token(num_layers: int, num_kv_heads: int, head_dim: int, bytes_per_value: int) -> int:
    """K and V of one token in every layer: 2 x layers x KV heads x head dim x bytes per value.

    >>> kv_bytes_per_token(2, 2, 16, 4)  # the tiny Qwen2.5-VL in float32
    512
    """
    return 2 * num_layers * num_kv_heads * head_dim * bytes_per_value


def kv_counts(text_config: Any) -> tuple[int, int, int, int]:
    """(layers, KV heads, head dim, max positions) of a transformers text config. Every layer is
    counted, also a hybrid model's linear-attention ones (an upper bound, as a ceiling should be)."""
    heads = int(text_config.num_attention_heads)
    kv_heads = int(getattr(text_config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(text_config, "head_dim", None) or text_config.hidden_size // heads)
    return int(text_config.num_hidden_layers), kv_heads, head_dim, int(text_config.max_position_embeddings)


def cpu_kv_cache_bytes(
    per_token: int, context_tokens: int, sequences: int, memory_fraction: float, host_bytes: int
) -> int:
    """The KV cache vLLM's CPU build gets: ``sequences`` sequences of ``context_tokens`` tokens
    (x KV_MARGIN, at least KV_FLOOR_BYTES), at most ``memory_fraction`` of ``host_bytes``.

    >>> cpu_kv_cache_bytes(512, 4096, 64, 0.3, 24 * 2**30) // MIB  # tiny model, 16 prompts x G=4
    160
    >>> cpu_kv_cache_bytes(36_864, 128_000, 64, 0.3, 24 * 2**30) == int(0.3 * 24 * 2**30)  # a 3B model
    True
    """
    need = max(int(per_token * context_tokens * max(sequences, 1) * KV_MARGIN), KV_FLOOR_BYTES)
    return min(need, int(memory_fraction * host_bytes))

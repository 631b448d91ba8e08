"""The architecture of well-known checkpoints, without their weights and without the hub.

The pre-flight estimates training memory from a model's counts (``trainer.step.cost``). For a hub id
that is not in the local cache there is no model to count, and downloading gigabytes to estimate is
what the pre-flight exists to avoid; so :data:`PUBLISHED` holds the architecture fields of the
published ``config.json`` of each checkpoint the families offer, :func:`published_config` turns one
into a transformers config, and :func:`empty_model` builds that model on PyTorch's ``meta`` device:
every module and parameter shape as in the real model, no memory behind them, no initialisation.
Counting its parameters is then exact (tied embeddings counted once, as in the checkpoint).

Where the numbers come from: the ``config.json`` files the Qwen team published on the Hugging Face
hub and their model cards, transcribed by hand; only the fields that decide a parameter's shape are
kept (the rest take transformers' defaults, which do not change the counts). Entries marked
``verified=False`` hold fields we could not check against the published file and say which in
``note``. ``published_parameters`` is the hub page's "Model size" (safetensors total), where known.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trainer.core.errors import ConfigError

# Shared rope settings (rope_parameters in transformers 5).
_QWEN2_5_ROPE = {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [16, 24, 24]}
_QWEN3_VL_ROPE = {
    "rope_type": "default",
    "rope_theta": 5_000_000.0,
    "mrope_section": [24, 20, 20],
    "mrope_interleaved": True,
}
_QWEN3_5_ROPE = {
    "rope_type": "default",
    "rope_theta": 10_000_000.0,
    "mrope_section": [11, 11, 10],
    "mrope_interleaved": True,
    "partial_rotary_factor": 0.25,
}
# The vision towers, shared across sizes of a generation.
_QWEN2_VL_VISION = {"depth": 32, "embed_dim": 1280, "mlp_ratio": 4, "num_heads": 16, "patch_size": 14}
_QWEN2_5_VL_VISION = {
    "depth": 32,
    "hidden_size": 1280,
    "intermediate_size": 3420,
    "num_heads": 16,
    "patch_size": 14,
    "window_size": 112,
    "fullatt_block_indexes": [7, 15, 23, 31],
}
_QWEN3_VL_VISION_SMALL = {  # Qwen3-VL-2B / 4B
    "depth": 24,
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_heads": 16,
    "patch_size": 16,
    "num_position_embeddings": 2304,
    "deepstack_visual_indexes": [5, 11, 17],
}
_QWEN3_VL_VISION_LARGE = {  # Qwen3-VL-8B (and the 30B-A3B MoE)
    "depth": 27,
    "hidden_size": 1152,
    "intermediate_size": 4304,
    "num_heads": 16,
    "patch_size": 16,
    "num_position_embeddings": 2304,
    "deepstack_visual_indexes": [8, 16, 24],
}
# Qwen3.5's linear-attention (Gated DeltaNet) fields; the 0.8B and 2B have 16 value heads.
_QWEN3_5_LINEAR = {
    "head_dim": 256,
    "linear_conv_kernel_dim": 4,
    "linear_key_head_dim": 128,
    "linear_value_head_dim": 128,
    "linear_num_key_heads": 16,
    "linear_num_value_heads": 32,
    "vocab_size": 248320,
    "rope_parameters": _QWEN3_5_ROPE,
}


@dataclass(frozen=True)
class Published:
    """The shape-deciding fields of one published checkpoint's ``config.json``."""

    model_type: str
    text: dict[str, Any]
    vision: dict[str, Any]
    tie_word_embeddings: bool
    published_parameters: float | None = None  # the hub page's model size, in parameters
    verified: bool = True  # every field checked against the published config.json
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # other top-level config fields


def _text(hidden: int, inter: int, layers: int, heads: int, kv: int, **more: Any) -> dict[str, Any]:
    return {
        "hidden_size": hidden,
        "intermediate_size": inter,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        **more,
    }


def _qwen3_5_vision(depth: int, hidden: int, inter: int, out: int) -> dict[str, Any]:
    return {"depth": depth, "hidden_size": hidden, "intermediate_size": inter, "num_heads": 16,
            "patch_size": 16, "num_position_embeddings": 2304, "out_hidden_size": out}  # fmt: skip


_QWEN3_5_NOTE = (
    "Qwen3.5 checkpoints also hold a multi-token-prediction layer (mtp_num_hidden_layers 1) that "
    "transformers does not build, so the hub size is a little above this count"
)

PUBLISHED: dict[str, Published] = {
    "Qwen/Qwen2-VL-2B-Instruct": Published(
        "qwen2_vl",
        _text(1536, 8960, 28, 12, 2, vocab_size=151936, rope_parameters=_QWEN2_5_ROPE),
        {**_QWEN2_VL_VISION, "hidden_size": 1536},
        tie_word_embeddings=True,
        published_parameters=2.21e9,
    ),
    "Qwen/Qwen2-VL-7B-Instruct": Published(
        "qwen2_vl",
        _text(3584, 18944, 28, 28, 4, vocab_size=152064, rope_parameters=_QWEN2_5_ROPE),
        {**_QWEN2_VL_VISION, "hidden_size": 3584},
        tie_word_embeddings=False,
        published_parameters=8.29e9,
    ),
    "Qwen/Qwen2.5-VL-3B-Instruct": Published(
        "qwen2_5_vl",
        _text(2048, 11008, 36, 16, 2, vocab_size=151936, rope_parameters=_QWEN2_5_ROPE),
        {**_QWEN2_5_VL_VISION, "out_hidden_size": 2048},
        tie_word_embeddings=True,
        published_parameters=3.75e9,
    ),
    "Qwen/Qwen2.5-VL-7B-Instruct": Published(
        "qwen2_5_vl",
        _text(3584, 18944, 28, 28, 4, vocab_size=152064, rope_parameters=_QWEN2_5_ROPE),
        {**_QWEN2_5_VL_VISION, "out_hidden_size": 3584},
        tie_word_embeddings=False,
        published_parameters=8.29e9,
    ),
    "Qwen/Qwen3-VL-2B-Instruct": Published(
        "qwen3_vl",
        _text(2048, 6144, 28, 16, 8, head_dim=128, vocab_size=151936, rope_parameters=_QWEN3_VL_ROPE),
        {**_QWEN3_VL_VISION_SMALL, "out_hidden_size": 2048},
        tie_word_embeddings=True,
        published_parameters=2.13e9,
    ),
    "Qwen/Qwen3-VL-4B-Instruct": Published(
        "qwen3_vl",
        _text(2560, 9728, 36, 32, 8, head_dim=128, vocab_size=151936, rope_parameters=_QWEN3_VL_ROPE),
        {**_QWEN3_VL_VISION_SMALL, "out_hidden_size": 2560},
        tie_word_embeddings=True,
        published_parameters=4.44e9,
    ),
    "Qwen/Qwen3-VL-8B-Instruct": Published(
        "qwen3_vl",
        _text(4096, 12288, 36, 32, 8, head_dim=128, vocab_size=151936, rope_parameters=_QWEN3_VL_ROPE),
        {**_QWEN3_VL_VISION_LARGE, "out_hidden_size": 4096},
        tie_word_embeddings=False,
        published_parameters=8.77e9,
    ),
    "Qwen/Qwen3.5-0.8B": Published(
        "qwen3_5",
        _text(1024, 3584, 24, 8, 2, **{**_QWEN3_5_LINEAR, "linear_num_value_heads": 16}),
        _qwen3_5_vision(12, 768, 3072, 1024),
        tie_word_embeddings=True,
        verified=False,
        note=f"text fields as published; vision tower (depth 12, width 768) not checked. {_QWEN3_5_NOTE}",
    ),
    "Qwen/Qwen3.5-2B": Published(
        "qwen3_5",
        _text(2048, 6144, 24, 8, 2, **{**_QWEN3_5_LINEAR, "linear_num_value_heads": 16}),
        _qwen3_5_vision(24, 1024, 4096, 2048),
        tie_word_embeddings=True,
        verified=False,
        note=(
            "hidden 2048 / intermediate 6144 as published; layers, heads, linear value heads and the "
            f"vision tower not checked. {_QWEN3_5_NOTE}"
        ),
    ),
    "Qwen/Qwen3.5-4B": Published(
        "qwen3_5",
        _text(2560, 9216, 32, 16, 4, **_QWEN3_5_LINEAR),
        _qwen3_5_vision(24, 1024, 4096, 2560),
        tie_word_embeddings=True,
        verified=False,
        note=f"text fields as published; vision tower (as Qwen3-VL-4B's) not checked. {_QWEN3_5_NOTE}",
    ),
    "Qwen/Qwen3.5-9B": Published(
        "qwen3_5",
        _text(4096, 12288, 32, 16, 4, **_QWEN3_5_LINEAR),
        _qwen3_5_vision(27, 1152, 4304, 4096),
        tie_word_embeddings=False,
        note=_QWEN3_5_NOTE,
    ),
}


def published(hub_id: str) -> Published:
    """The table entry of ``hub_id``; ConfigError listing the known ones."""
    if hub_id not in PUBLISHED:
        raise ConfigError(f"no published architecture for {hub_id!r}; known: {', '.join(PUBLISHED)}")
    return PUBLISHED[hub_id]


def published_config(hub_id: str) -> Any:
    """The transformers config of ``hub_id`` as published (no file, no network)."""
    from transformers import AutoConfig

    entry = published(hub_id)
    text = {**entry.text, "tie_word_embeddings": entry.tie_word_embeddings}
    return AutoConfig.for_model(
        entry.model_type,
        text_config=text,
        vision_config=dict(entry.vision),
        tie_word_embeddings=entry.tie_word_embeddings,
        **entry.extra,
    )


def model_class(config: Any) -> type:
    """The ``...ForConditionalGeneration`` class of a config, by transformers' own auto mapping
    (so a family not yet in ``FAMILIES`` builds too)."""
    from transformers import AutoModelForImageTextToText

    try:
        return AutoModelForImageTextToText._model_mapping[type(config)]
    except KeyError as exc:
        raise ConfigError(f"transformers has no vision-language class for {config.model_type!r}") from exc


def empty_model(config_or_hub_id: Any) -> Any:
    """The model of a config (or a hub id of :data:`PUBLISHED`) on the ``meta`` device: its modules
    and parameter shapes, with no memory allocated and nothing initialised (about a second)."""
    import torch

    config = published_config(config_or_hub_id) if isinstance(config_or_hub_id, str) else config_or_hub_id
    with torch.device("meta"):
        return model_class(config)(config)


def parameter_count(model: Any) -> int:
    """Parameters of ``model`` (each shared tensor once, as a checkpoint stores it)."""
    return sum(p.numel() for p in model.parameters())

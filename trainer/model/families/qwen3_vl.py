"""Qwen3-VL (``model_type`` ``qwen3_vl``, and ``qwen3_vl_moe`` for its MoE checkpoints).

What differs from Qwen2.5-VL, and where the engine meets it:

- 16 px patches merged 2 x 2: one visual token covers 32 x 32 px (``pixels_per_token`` 1024), so
  the same pixel budget gives fewer tokens than on Qwen2.5-VL's 28 x 28 px cells;
- the processor writes a text timestamp ``<t seconds>`` before every temporal patch of a video,
  from the video metadata our decoding hands it (``trainer.data.video``), and each frame gets its
  own ``<|vision_start|>...<|vision_end|>``; the rope index splits the video grid per frame to match
  (so it reads no ``second_per_grid_ts``);
- DeepStack: the vision tower also returns features of some of its intermediate blocks, each
  through its own merger (``visual.deepstack_merger_list``), and the language model adds them to
  the hidden states of its first decoder layers at the visual positions. A path that computes the
  vision features once and hands them to several forwards must carry those too
  (:meth:`Qwen3VLFamily.encode_vision` / :meth:`Qwen3VLFamily.vision_outputs`); the DeepStack
  mergers are mergers: they train with ``tune_mm_mlp`` and LoRA saves them whole.

The MoE checkpoints (30B-A3B) hold their experts as fused parameters, not ``nn.Linear`` modules:
LoRA's default targets then adapt attention (and any dense MLP), and the experts train only when
the language model is fully tuned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from trainer.model.families.base import ModelFamily, unwrap


@dataclass(frozen=True)
class Qwen3VLFamily(ModelFamily):
    """Qwen3-VL: a :class:`ModelFamily` whose vision features carry DeepStack features."""

    def encode_vision(self, model: Any, kind: str, pixels: torch.Tensor, grid: torch.Tensor) -> tuple:
        """Per item: ``(merged features, (deepstack feature of each DeepStack layer, ...))``."""
        lm = unwrap(model)
        encode = lm.get_video_features if kind == "video" else lm.get_image_features
        out = encode(pixels, grid, return_dict=True)
        per_layer = out.deepstack_features  # [layer][item]
        return tuple(
            (pooled, tuple(layer[i] for layer in per_layer)) for i, pooled in enumerate(out.pooler_output)
        )

    def vision_outputs(self, features: tuple) -> Any:
        """The forward's ``mm_encoder_outputs`` entry: merged features per item and, per DeepStack
        layer, that layer's features per item (the layout ``get_video_features`` returns)."""
        from transformers.models.qwen3_vl.modeling_qwen3_vl import BaseModelOutputWithDeepstackFeatures

        pooled = tuple(item[0] for item in features)
        layers = len(features[0][1]) if features else 0
        deepstack = [tuple(item[1][k] for item in features) for k in range(layers)]
        return BaseModelOutputWithDeepstackFeatures(pooler_output=pooled, deepstack_features=deepstack)

    def vllm_prompts(self, processor: Any, inputs: dict[str, Any]) -> list[dict[str, Any]]:
        """vLLM's TokensPrompts: each video collapsed together with its frame timestamps, and
        metadata from which vLLM's Qwen3-VL processor writes the same timestamps again
        (:func:`trainer.model.families.qwen_vllm_inputs.qwen3_vllm_prompts`). vLLM places M-RoPE
        positions per frame as transformers does (text after a frame at its start + max(h, w)), so
        no patch is needed there, unlike Qwen2-VL and Qwen2.5-VL."""
        from trainer.model.families.qwen_vllm_inputs import qwen3_vllm_prompts

        return qwen3_vllm_prompts(self, processor, inputs)


_COMMON: dict[str, Any] = dict(
    patch_size=16,
    spatial_merge_size=2,
    mergers=("visual.merger", "visual.deepstack_merger_list"),
    # The rope index takes the grids only: time comes from the timestamps in the text.
    rope_grid_keys=("image_grid_thw", "video_grid_thw"),
)

QWEN3_VL = Qwen3VLFamily(
    model_type="qwen3_vl",
    name="Qwen3-VL",
    model_class="Qwen3VLForConditionalGeneration",
    vllm_architecture="Qwen3VLForConditionalGeneration",
    hub_models=("Qwen/Qwen3-VL-2B-Instruct", "Qwen/Qwen3-VL-4B-Instruct", "Qwen/Qwen3-VL-8B-Instruct"),
    **_COMMON,
)

QWEN3_VL_MOE = Qwen3VLFamily(
    model_type="qwen3_vl_moe",
    name="Qwen3-VL MoE",
    model_class="Qwen3VLMoeForConditionalGeneration",
    vllm_architecture="Qwen3VLMoeForConditionalGeneration",
    hub_models=("Qwen/Qwen3-VL-30B-A3B-Instruct",),
    **_COMMON,
)

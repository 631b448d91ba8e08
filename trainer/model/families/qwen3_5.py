"""Qwen3.5 (``model_type`` ``qwen3_5``, and ``qwen3_5_moe``; Qwen3.6 and Qwen3.8 checkpoints use
the same schema).

Natively multimodal: the vision side is Qwen3-VL's (16 px patches, 32 x 32 px per visual token,
frame timestamps in the prompt, a rope index that splits the video grid per frame) without
DeepStack. The language model is a hybrid: most decoder layers are Gated DeltaNet linear attention
(``linear_attn``: a causal depthwise convolution, then a gated delta-rule recurrence), every fourth
is full attention (``self_attn``, with a gated output). What that changes for the engine:

- the KV cache of a linear layer is a convolution state and a recurrent state that sum up the
  whole prompt (:mod:`trainer.model.hybrid_cache` reads and expands them for the shared prefix);
- LoRA must also wrap the linear layers' projections (``in_proj_qkv``, ``in_proj_z``,
  ``in_proj_a``, ``in_proj_b``, ``out_proj``): without them three decoder layers in four do not
  train (:data:`LINEAR_ATTENTION_TARGETS`);
- its chat template thinks by default: the generation prompt opens ``<think>``, and the no_think
  prompts switch it off (``enable_thinking``; trainer.data.inputs.render_prompts);
- the linear layers' fast kernels (``flash-linear-attention``, ``causal-conv1d``) are optional GPU
  packages; without them transformers runs a PyTorch implementation (correct, slower), which the
  pre-flight names (:func:`linear_attention_kernels`).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.util import find_spec
from typing import Any

from trainer.model.families.base import QWEN_LORA_TARGETS, ModelFamily

# The Gated DeltaNet projections; "out_proj" is also the vision tower's attention output name,
# but the LoRA target regex only matches inside the language model.
LINEAR_ATTENTION_TARGETS = ("in_proj_qkv", "in_proj_z", "in_proj_a", "in_proj_b", "out_proj")


def linear_attention_kernels() -> str:
    """Which implementation the linear-attention layers will run, in words (for the pre-flight).
    The kernels are CUDA code: on a CPU transformers runs its PyTorch fallback either way."""
    import torch

    fla, conv = find_spec("fla") is not None, find_spec("causal_conv1d") is not None
    if not torch.cuda.is_available():
        return "linear attention: transformers' PyTorch fallback (no GPU; correct, slower)"
    if fla and conv:
        return "linear attention: flash-linear-attention + causal-conv1d kernels"
    missing = ", ".join(n for n, ok in (("flash-linear-attention", fla), ("causal-conv1d", conv)) if not ok)
    return (
        f"linear attention: transformers' PyTorch fallback (correct, slower; {missing} not installed: "
        "pip install '.[qwen3_5-kernels]')"
    )


@dataclass(frozen=True)
class Qwen3_5Family(ModelFamily):
    """Qwen3.5: a :class:`ModelFamily` whose prompts reach vLLM as Qwen3-VL's do."""

    def vllm_prompts(self, processor: Any, inputs: dict[str, Any]) -> list[dict[str, Any]]:
        """vLLM's TokensPrompts: the processor is Qwen3-VL's (frame timestamps in the text), and so
        is vLLM's for Qwen3.5 (its model class is Qwen3-VL's, positions included), so each video is
        collapsed with its timestamps (:func:`trainer.model.families.qwen_vllm_inputs.qwen3_vllm_prompts`)."""
        from trainer.model.families.qwen_vllm_inputs import qwen3_vllm_prompts

        return qwen3_vllm_prompts(self, processor, inputs)


_COMMON = dict(
    patch_size=16,
    spatial_merge_size=2,
    mergers=("visual.merger",),
    rope_grid_keys=("image_grid_thw", "video_grid_thw"),
    lora_targets=QWEN_LORA_TARGETS + LINEAR_ATTENTION_TARGETS,
    required_lora_targets=LINEAR_ATTENTION_TARGETS,
    runtime_note=linear_attention_kernels,
)

QWEN3_5 = Qwen3_5Family(
    model_type="qwen3_5",
    name="Qwen3.5",
    model_class="Qwen3_5ForConditionalGeneration",
    vllm_architecture="Qwen3_5ForConditionalGeneration",
    hub_models=("Qwen/Qwen3.5-2B", "Qwen/Qwen3.5-4B", "Qwen/Qwen3.5-9B"),
    **_COMMON,
)

QWEN3_5_MOE = Qwen3_5Family(
    model_type="qwen3_5_moe",
    name="Qwen3.5 MoE",
    model_class="Qwen3_5MoeForConditionalGeneration",
    vllm_architecture="Qwen3_5MoeForConditionalGeneration",
    hub_models=("Qwen/Qwen3.5-35B-A3B",),
    **_COMMON,
)

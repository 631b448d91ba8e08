"""What one model family is to the engine: a :class:`ModelFamily` holds everything that differs
between families, so nothing outside ``trainer.model.families`` names one.

The engine meets a model in a handful of places, each a field or method here:

- loading: the transformers class (``model_class``), the chat's special tokens;
- what trains: the vision tower, its merger(s), the language model (``tune_mm_*``, LoRA's
  ``modules_to_save`` and target modules);
- the data: pixels per visual token (patch size x spatial merge, squared);
- the shared prefix: the rope-index call, the positions ``generate`` gives, the decoder layers,
  and how vision features computed once reach the language model;
- vLLM: its architecture name and the patches that make it place tokens as transformers does.

A family is chosen from the checkpoint's ``config.json`` ``model_type`` (never from a folder's
name): :func:`trainer.model.families.family_of_path`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

# Sampling one of these makes the next training forward fail ("Video features and video tokens do
# not match"), and <|im_start|> would open a new chat turn; a policy must never emit them.
QWEN_NEVER_SAMPLED = (
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<|im_start|>",
)
QWEN_END_OF_TURN = ("<|im_end|>", "<|endoftext|>")
# The projections of every decoder layer: what LoRA wraps by default (the config's
# lora_target_modules overrides the list; the family says where the language model is).
QWEN_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def unwrap(model: Any) -> Any:
    """The ``...ForConditionalGeneration`` inside DDP / DeepSpeed / peft wrappers."""
    inner = getattr(model, "module", model)
    if hasattr(inner, "get_base_model"):  # peft
        inner = inner.get_base_model()
    return inner


@dataclass(frozen=True)
class ModelFamily:
    """One family of vision-language models, as the engine needs to know it."""

    model_type: str  # config.json "model_type"
    name: str  # as people write it, for messages: "Qwen2.5-VL"
    model_class: str  # the transformers class that loads a checkpoint of this family
    vllm_architecture: str  # the name vLLM serves it under (config.json "architectures")
    hub_models: tuple[str, ...]  # well-known checkpoints, offered by the studio's model picker
    patch_size: int = 14  # pixels per side of one vision patch
    spatial_merge_size: int = 2  # patches per side merged into one visual token
    # Module paths inside the VLM core (``model.model``), as peft matches suffixes.
    vision_tower: str = "visual"
    mergers: tuple[str, ...] = ("visual.merger",)  # the tower's projections into the language model
    language_model: str = "language_model"
    lora_targets: tuple[str, ...] = QWEN_LORA_TARGETS
    # LoRA targets a config may not leave out (Qwen3.5's linear-attention projections: without them
    # most of its decoder layers would not train); checked at Check / Launch.
    required_lora_targets: tuple[str, ...] = ()
    end_of_turn_tokens: tuple[str, ...] = QWEN_END_OF_TURN
    pad_token: str = "<|endoftext|>"
    never_sampled_tokens: tuple[str, ...] = QWEN_NEVER_SAMPLED
    video_token: str = "<|video_pad|>"
    image_token: str = "<|image_pad|>"
    # Processor outputs the rope index reads besides input ids and masks.
    rope_grid_keys: tuple[str, ...] = ("image_grid_thw", "video_grid_thw")
    # Called once before a vLLM engine of this family starts (see trainer.model.families.qwen_mrope).
    vllm_patches: tuple[Callable[[], None], ...] = field(default=(), compare=False)
    # What the family runs with on this machine, in words, for the pre-flight (Qwen3.5: which
    # linear-attention implementation); None: nothing to say.
    runtime_note: Callable[[], str] | None = field(default=None, compare=False)

    # ---- sizes ---------------------------------------------------------------------------------

    @property
    def pixels_per_token(self) -> int:
        """Pixels one merged visual token covers (28 x 28 for 14 px patches merged 2 x 2)."""
        return (self.patch_size * self.spatial_merge_size) ** 2

    # ---- loading -------------------------------------------------------------------------------

    def load_class(self) -> type:
        import transformers

        return getattr(transformers, self.model_class)

    # ---- modules -------------------------------------------------------------------------------

    def core(self, model: Any) -> Any:
        """The VLM core (vision tower + language model, no LM head) inside any wrapper."""
        return unwrap(model).model

    def vision_tower_of(self, model: Any) -> Any:
        return self.core(model).get_submodule(self.vision_tower)

    def language_model_of(self, model: Any) -> Any:
        return self.core(model).get_submodule(self.language_model)

    def merger_modules(self, model: Any) -> list[Any]:
        return [self.core(model).get_submodule(path) for path in self.mergers]

    def decoder_layers(self, model: Any) -> list[Any]:
        return list(self.language_model_of(model).layers)

    def vision_depth(self, model: Any) -> int:
        return len(self.vision_tower_of(model).blocks)

    def runtime_notes(self) -> list[str]:
        return [] if self.runtime_note is None else [self.runtime_note()]

    def missing_lora_targets(self, targets: list[str] | tuple[str, ...]) -> list[str]:
        """The family's required LoRA targets that ``targets`` leaves out (empty: none)."""
        return [name for name in self.required_lora_targets if name not in targets]

    def lora_target_regex(self, targets: list[str]) -> str:
        """peft's ``target_modules``: the named projections inside the language model only (the
        vision tower has same-named modules)."""
        return rf".*{self.language_model}.*\.({'|'.join(targets)})"

    # ---- positions -----------------------------------------------------------------------------

    def rope_index(
        self, model: Any, inputs: dict[str, torch.Tensor], device: torch.device | str
    ) -> torch.Tensor:
        """Rope positions (3, B, P) of a prompt batch with vision, as the model's forward computes them."""
        grids = {key: torch.as_tensor(inputs[key]).to(device) for key in self.rope_grid_keys if key in inputs}
        positions, _ = unwrap(model).model.get_rope_index(
            inputs["input_ids"].to(device),
            mm_token_type_ids=inputs["mm_token_type_ids"].to(device),
            attention_mask=inputs["attention_mask"].to(device),
            **grids,
        )
        return positions

    def generation_positions(
        self, model: Any, input_ids: torch.Tensor, rope_inputs: dict[str, Any]
    ) -> torch.Tensor:
        """The positions (4, B, P: text row, then the three rope sections) ``generate`` gives the
        prompts. transformers keeps this in a private method of the model; it is read here only."""
        return unwrap(model)._prepare_position_ids_for_generation(input_ids, rope_inputs)

    # ---- vision features -----------------------------------------------------------------------

    def encode_vision(self, model: Any, kind: str, pixels: torch.Tensor, grid: torch.Tensor) -> tuple:
        """Per-item vision features of ``kind`` ("video" or "image"): one tensor per video/image,
        in the form the model's forward takes back (see :meth:`vision_outputs`)."""
        lm = unwrap(model)
        encode = lm.get_video_features if kind == "video" else lm.get_image_features
        return tuple(encode(pixels, grid, return_dict=True).pooler_output)

    def vision_outputs(self, features: tuple) -> Any:
        """What the forward takes instead of pixels: Qwen2-style models read the merged features as
        ``pooler_output`` (one tensor per item); a family with more (DeepStack) overrides this."""
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        return BaseModelOutputWithPooling(pooler_output=features)

    # ---- vLLM ----------------------------------------------------------------------------------

    def vllm_prompts(self, processor: Any, inputs: dict[str, Any]) -> list[dict[str, Any]]:
        """vLLM's TokensPrompts for a prompt batch: Qwen2-style patchified frames by default."""
        from trainer.model.families.qwen_vllm_inputs import qwen_vllm_prompts

        return qwen_vllm_prompts(self, processor, inputs)

    def prepare_vllm(self) -> None:
        for patch in self.vllm_patches:
            patch()

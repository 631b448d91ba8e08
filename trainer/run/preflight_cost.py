"""The pre-flight's cost of a step: tokens, sequences and the memory training needs, in words.

Two sources for the model's counts:

- :func:`step_cost`: the loaded model and the processor's real prompt tensors (what Check config
  reports after sampling);
- :func:`published_step_cost`: a hub id that is not in the local cache, from its published
  architecture (``trainer.model.families.published``: the model built on the meta device, so the
  parameter counts are exact) and the video knobs (prompt tokens at most ``max_frames`` frames of
  ``max_pixels``).

The arithmetic is :mod:`trainer.step.cost`'s; :func:`memory_text` writes it for people.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from trainer.core.config import TrainConfig
from trainer.rollout.engine_memory import kv_bytes_per_token, kv_counts
from trainer.step.cost import (
    GIB,
    MemoryEstimate,
    ModelShape,
    engine_gib,
    memory_estimate,
    prompt_tokens_at_most,
    sequences_per_step,
    video_tokens_at_most,
)


@dataclass(frozen=True)
class StepCost:
    prompt_tokens: float  # mean per question, video tokens included
    video_tokens: float  # mean per question
    completion_tokens: float  # mean per completion in the sample
    completion_tokens_max: int
    sequences_per_step: int
    device: str
    device_memory_gib: float | None
    memory: MemoryEstimate
    parameters: int
    trainable_parameters: int


def model_shape(model: Any) -> ModelShape:
    """The counts the memory estimate needs, from a model (loaded, or built on the meta device)."""
    text_cfg = getattr(model.config, "text_config", model.config)
    layers, kv_heads, head_dim, positions = kv_counts(text_cfg)
    return ModelShape(
        parameters=sum(p.numel() for p in model.parameters()),
        trainable_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
        hidden_size=int(text_cfg.hidden_size),
        num_layers=int(text_cfg.num_hidden_layers),
        vocab_size=int(text_cfg.vocab_size),
        kv_bytes_per_token_fp32=kv_bytes_per_token(layers, kv_heads, head_dim, 4),
        max_positions=positions,
    )


def step_cost(
    cfg: TrainConfig, model: Any, processor: Any, inputs: dict[str, Any], lengths: list[float]
) -> StepCost:
    """Tokens, sequences and memory of one step, from the processor's real prompt tensors."""
    import torch

    from trainer.model.families import family_of_model

    mask = inputs["attention_mask"]
    family = family_of_model(model)
    video_id = processor.tokenizer.convert_tokens_to_ids(family.video_token)
    image_id = processor.tokenizer.convert_tokens_to_ids(family.image_token)
    visual = torch.isin(inputs["input_ids"], torch.tensor([video_id, image_id])) & mask.bool()
    prompt_tokens = float(mask.sum(dim=1).float().mean())
    video_tokens = float(visual.sum(dim=1).float().mean())
    return cost_of(cfg, model_shape(model), prompt_tokens, video_tokens, lengths)


def published_step_cost(cfg: TrainConfig, hub_id: str) -> StepCost:
    """The cost of a step of ``hub_id`` (a checkpoint of
    ``trainer.model.families.published.PUBLISHED``) without its weights: exact parameter counts of
    what ``cfg`` trains, prompts as long as the video knobs allow (ConfigError for an unknown hub id
    or an unsupported family)."""
    from trainer.model.families import family_of_model
    from trainer.model.families.published import empty_model
    from trainer.model.trainable import set_trainable

    model = set_trainable(empty_model(hub_id), cfg.model)
    family = family_of_model(model)
    video = video_tokens_at_most(cfg.video.max_frames, cfg.video.max_pixels, family.pixels_per_token)
    return cost_of(cfg, model_shape(model), float(prompt_tokens_at_most(video)), float(video), [])


def cost_of(
    cfg: TrainConfig, shape: ModelShape, prompt_tokens: float, video_tokens: float, lengths: list[float]
) -> StepCost:
    """The step cost of a model of ``shape`` on prompts of ``prompt_tokens`` tokens; ``lengths`` are
    sampled completion lengths (none: the estimate assumes generation_max_length, as it always does)."""
    g, o = cfg.grpo, cfg.optim
    bytes_per_param = 2 if cfg.model.bf16 else 4
    memory = memory_estimate(
        shape,
        bytes_per_param=bytes_per_param,
        has_reference=g.grpo_beta > 0 and not cfg.model.lora_enable,
        sequences_per_micro_batch=o.per_device_train_batch_size * g.grpo_sample_size,
        tokens_per_sequence=int(round(prompt_tokens)) + g.generation_max_length,
        completion_tokens=g.generation_max_length,
        gradient_checkpointing=cfg.model.gradient_checkpointing,
    )
    device, available = _device()
    if g.rollout_backend == "vllm":
        device_bytes = int(available * GIB) if available else None
        sequences = o.per_device_train_batch_size * g.grpo_sample_size
        engine = engine_gib(
            shape, bytes_per_param, g.vllm_gpu_memory_utilization, device_bytes, device != "CPU", sequences
        )
        memory = dataclasses.replace(memory, engine_gib=engine)
    return StepCost(
        prompt_tokens=prompt_tokens,
        video_tokens=video_tokens,
        completion_tokens=sum(lengths) / max(len(lengths), 1),
        completion_tokens_max=int(max(lengths, default=0)),
        sequences_per_step=sequences_per_step(
            o.per_device_train_batch_size, o.gradient_accumulation_steps, g.grpo_sample_size
        ),
        device=device,
        device_memory_gib=available,
        memory=memory,
        parameters=shape.parameters,
        trainable_parameters=shape.trainable_parameters,
    )


def _device() -> tuple[str, float | None]:
    """Where training would run and how much memory it has (GiB; None when unknown)."""
    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return f"GPU ({props.name})", props.total_memory / 2**30
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        ram = None
    return "CPU", ram


MEMORY_NOTE = (
    "exact: weights, gradients and AdamW states of the trainable parameters, the reference copy "
    "when grpo_beta > 0; estimated: activations of one micro-batch (34 x hidden bytes per token "
    "per layer, 2 with gradient_checkpointing) and float32 logits; with rollout_backend vllm the "
    "engine's weights and KV cache; not counted: transformers' generation KV cache, vision-tower "
    "activations, allocator overhead"
)


def format_size(gib: float) -> str:
    """GiB as ``1.50 GiB`` or, below one, ``12.3 MiB``."""
    return f"{gib:.2f} GiB" if gib >= 1 else f"{gib * 1024:.1f} MiB"


def memory_text(cost: StepCost) -> str:
    """``on CPU: 60.0 MiB of 23.50 GiB = weights ... + activations ~...``."""
    m = cost.memory
    of = f" of {format_size(cost.device_memory_gib)}" if cost.device_memory_gib else ""
    return (
        f"on {cost.device}: {format_size(m.total_gib)}{of} = weights {format_size(m.weights_gib)} + "
        f"gradients {format_size(m.gradients_gib)} + AdamW states {format_size(m.optimizer_gib)} + "
        f"reference copy {format_size(m.reference_gib)} + activations ~{format_size(m.activations_gib)}"
        + (f" + vLLM engine {format_size(m.engine_gib)}" if m.engine_gib else "")
    )


def published_memory_text(cfg: TrainConfig, hub_id: str) -> str:
    """One line for a hub id whose weights are not here: its counts and memory estimate."""
    cost = published_step_cost(cfg, hub_id)
    return (
        f"from its published architecture: {cost.parameters / 1e9:.2f}B parameters "
        f"({cost.trainable_parameters / 1e9:.2f}B trainable), prompts of at most "
        f"{cost.prompt_tokens:.0f} tokens ({cost.video_tokens:.0f} video), "
        f"memory estimate {memory_text(cost)}"
    )

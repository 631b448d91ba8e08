"""What one GRPO step costs: sequences, tokens and an estimate of the memory training needs.

Pure arithmetic on counts (no model, no torch), so the numbers are checked by hand in the tests.
The memory estimate is a rough guide, and says so: weights, gradients and AdamW states are exact
byte counts; activations follow Korthikanti et al. (2022, "Reducing Activation Recomputation in
Large Transformer Models"): about 34 x hidden bytes per token per layer in 16-bit with a fused
attention kernel, of which only the layer input (2 x hidden bytes) stays with gradient
checkpointing; the float32 logits of the completion tokens come on top. The generation KV cache,
the vision tower's activations and allocator overhead are not counted. A colocated vLLM engine
(``rollout_backend: vllm``) is: its copy of the weights and its KV cache (:func:`engine_gib`).
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 2**30
# Bytes per token per layer per hidden unit kept for backward, in 16-bit (Korthikanti et al. 2022).
ACTIVATION_BYTES_16BIT = 34
CHECKPOINTED_BYTES_16BIT = 2
LOGIT_BYTES = 4 * 2  # float32 logits and their log-softmax, per vocabulary entry per token
# Frames merged into one temporal patch by every Qwen vision tower (temporal_patch_size).
FRAMES_PER_TEMPORAL_PATCH = 2
# Prompt tokens besides the visual ones, at most: the chat template, a question with four options
# (~70 tokens on the synthetic task), and Qwen3-VL's "<t seconds>" timestamp and frame markers
# (~8 tokens per temporal patch of a 16-frame video).
TEXT_TOKENS_PER_PROMPT = 160


@dataclass(frozen=True)
class ModelShape:
    """The counts the estimate needs from a model."""

    parameters: int
    trainable_parameters: int
    hidden_size: int
    num_layers: int
    vocab_size: int
    # For a vLLM engine's KV cache (trainer.rollout.engine_memory): per token, K and V per layer.
    kv_bytes_per_token_fp32: int = 0
    max_positions: int = 0


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes needed to train, per part (GiB)."""

    weights_gib: float
    gradients_gib: float
    optimizer_gib: float
    reference_gib: float
    activations_gib: float
    engine_gib: float = 0.0  # rollout_backend vllm: the engine's own weights and KV cache

    @property
    def total_gib(self) -> float:
        parts = (self.weights_gib, self.gradients_gib, self.optimizer_gib, self.reference_gib)
        return sum(parts) + self.activations_gib + self.engine_gib


def sequences_per_step(questions_per_micro_batch: int, accumulation_steps: int, group_size: int) -> int:
    """Completions sampled and trained on per optimiser step (one process).

    >>> sequences_per_step(16, 1, 4)
    64
    """
    return questions_per_micro_batch * accumulation_steps * group_size


def video_tokens_at_most(max_frames: int, max_pixels: int, pixels_per_token: int) -> int:
    """Visual tokens of one video of ``max_frames`` frames resized to at most ``max_pixels`` each:
    one token per ``pixels_per_token`` pixels per temporal patch (an upper bound: the resize rounds
    each side down to whole tokens).

    >>> video_tokens_at_most(16, 100352, 28 * 28)  # Qwen2.5-VL: 8 temporal patches x 128 tokens
    1024
    """
    return (max_frames // FRAMES_PER_TEMPORAL_PATCH) * (max_pixels // pixels_per_token)


def prompt_tokens_at_most(video_tokens: int) -> int:
    """Prompt length of one question with ``video_tokens`` visual tokens, at most.

    >>> prompt_tokens_at_most(1024)
    1184
    """
    return video_tokens + TEXT_TOKENS_PER_PROMPT


def memory_estimate(
    shape: ModelShape,
    bytes_per_param: int,
    has_reference: bool,
    sequences_per_micro_batch: int,
    tokens_per_sequence: int,
    completion_tokens: int,
    gradient_checkpointing: bool,
) -> MemoryEstimate:
    """Training memory of one process (GiB).

    ``bytes_per_param``: 2 for bf16 weights, 4 for float32. Gradients and both AdamW moments
    (torch keeps them in the parameter's dtype) exist for trainable parameters only; the frozen
    reference is a second copy of the weights (``grpo_beta`` > 0 without LoRA). Activations are
    those of one micro-batch: ``sequences_per_micro_batch`` rows of ``tokens_per_sequence``
    (prompt + completion) tokens, of which ``completion_tokens`` get logits.
    """
    per_token_layer = CHECKPOINTED_BYTES_16BIT if gradient_checkpointing else ACTIVATION_BYTES_16BIT
    # The paper counts 16-bit activations; float32 ones take twice the room.
    dtype_scale = bytes_per_param / 2
    tokens = sequences_per_micro_batch * tokens_per_sequence
    layer_bytes = tokens * shape.hidden_size * shape.num_layers * per_token_layer * dtype_scale
    logit_bytes = sequences_per_micro_batch * completion_tokens * shape.vocab_size * LOGIT_BYTES
    return MemoryEstimate(
        weights_gib=shape.parameters * bytes_per_param / GIB,
        gradients_gib=shape.trainable_parameters * bytes_per_param / GIB,
        optimizer_gib=2 * shape.trainable_parameters * bytes_per_param / GIB,
        reference_gib=shape.parameters * bytes_per_param / GIB if has_reference else 0.0,
        activations_gib=(layer_bytes + logit_bytes) / GIB,
    )


def engine_gib(
    shape: ModelShape,
    bytes_per_param: int,
    memory_fraction: float,
    device_bytes: int | None,
    on_gpu: bool,
    sequences: int,
) -> float:
    """A colocated vLLM engine's memory (GiB): on a GPU vLLM takes ``memory_fraction`` of the device
    (weights and KV cache); on the CPU build its own weight copy plus the KV cache
    ``trainer.rollout.engine_memory.cpu_kv_cache_bytes`` sizes for ``sequences`` sequences.

    >>> tiny = ModelShape(1_600_000, 1_600_000, 64, 2, 151_936, 512, max_positions=4096)
    >>> round(engine_gib(tiny, 4, 0.3, 24 * GIB, on_gpu=False, sequences=64) * 1024, 1)  # MiB
    166.1
    """
    from trainer.rollout.engine_memory import cpu_kv_cache_bytes

    if on_gpu:
        return memory_fraction * device_bytes / GIB if device_bytes else 0.0
    per_token = shape.kv_bytes_per_token_fp32 * bytes_per_param // 4
    host = device_bytes or 0
    kv = cpu_kv_cache_bytes(per_token, shape.max_positions, sequences, memory_fraction, host) if host else 0
    return (shape.parameters * bytes_per_param + kv) / GIB

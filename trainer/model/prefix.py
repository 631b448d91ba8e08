"""Shared-prefix forwards: each prompt once per group, its G completions on its keys/values.

A GRPO group is one prompt (mostly vision tokens on video) followed by G completions. The
per-sample forward reads the prompt G times. Here the language model runs the B prompts once
(vision tower included), keeping every layer's keys and values in a cache *with grad*; the cache
is expanded to the B*G rows and the completions run on top of it. Gradients reach the prompt's
computation (and the vision tower and merger when they train) through the cached keys/values.

Positions are those the per-sample forward computes (the family's rope index on the prompt: 3-D rope
for vision tokens, left padding skipped); completion token t of prompt b sits at b's last prompt
position + 1 + t, exactly where the full-sequence forward puts it, so both paths agree to float
rounding (tests/model/test_shared_prefix.py).

The cache layers are read-only views (:class:`SharedPrefixLayer`) and the capturing layers keep
their first write (:class:`CaptureLayer`), so a gradient-checkpointing replay of a decoder layer
sees the same states instead of appending to the cache a second time.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from transformers.cache_utils import Cache, DynamicLayer

from trainer.model import hybrid_cache
from trainer.model.families import family_of_model, unwrap

logger = logging.getLogger(__name__)

# Attention implementations whose masking handles a cache of left-padded prompts with queries that
# only see part of it (explicit 4-D or boolean masks). Flash-attention kernels and flex attention
# take other code paths we have not verified against the per-sample forward.
SUPPORTED_ATTENTION = ("eager", "sdpa")
_warned: set[str] = set()
# Prompt inputs the vision tower reads (pixels and their grids).
VISION_KEYS = ("pixel_values_videos", "video_grid_thw", "pixel_values", "image_grid_thw")


def cache_kwarg(model: Any) -> str:
    """The name under which this transformers passes a KV cache to forward/generate: ``cache`` from
    5.2x on, ``past_key_values`` before (vLLM's CPU build pins transformers 5.19). A cache passed
    under the wrong name is swallowed by ``**kwargs`` without a word, so ask the signature."""
    return _cache_kwarg_of(type(unwrap(model)))


@functools.cache
def _cache_kwarg_of(model_class: type) -> str:
    # Once per class: inspect.signature per forward was ~1 ms of every step.
    import inspect

    forward = model_class.forward
    return "cache" if "cache" in inspect.signature(forward).parameters else "past_key_values"


class CaptureLayer(DynamicLayer):
    """Records a layer's keys/values (with grad) during the prompt forward; returns them unchanged.

    Only the first write is kept: a gradient-checkpointing replay recomputes the same states and
    must neither overwrite what the completion forward already attended to nor grow the cache."""

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
            self.keys, self.values = key_states, value_states
        return key_states, value_states

    def get_seq_length(self) -> int:
        return 0  # the prompt forward starts from an empty cache; positions are passed explicitly


class SharedPrefixLayer(DynamicLayer):
    """The prompt's keys/values expanded to B*G rows; ``update`` returns prefix + new states
    without storing them (read-only, so a checkpointing replay sees the same thing)."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        super().__init__()
        self.device = keys.device
        self.keys, self.values = keys, values
        self.is_initialized = True

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.cat([self.keys, key_states], dim=-2), torch.cat([self.values, value_states], dim=-2)


def unsupported_reason(model: Any) -> str | None:
    """Why the shared-prefix path cannot run ``model`` (None: it can)."""
    config = getattr(unwrap(model), "config", None)
    text = getattr(config, "text_config", config)
    attn = getattr(text, "_attn_implementation", None) or getattr(config, "_attn_implementation", None)
    if attn not in SUPPORTED_ATTENTION:
        return f"attn_implementation {attn!r} (shared_prefix supports {', '.join(SUPPORTED_ATTENTION)})"
    if "sliding_attention" in (getattr(text, "layer_types", None) or ()):
        return "sliding-window attention layers (use_sliding_window)"
    return None


def use_shared_prefix(model: Any, requested: bool) -> bool:
    """``requested``, unless the model cannot take the shared-prefix path (logged once per reason)."""
    if not requested:
        return False
    reason = unsupported_reason(model)
    if reason is None:
        return True
    if reason not in _warned:
        _warned.add(reason)
        logger.warning("shared_prefix: falling back to the per-sample path for %s", reason)
    return False


def prompt_positions(model: Any, inputs: dict[str, torch.Tensor], device: torch.device | str) -> torch.Tensor:
    """Rope positions (3, B, P) of a left-padded prompt batch, as the full-sequence forward
    computes them: the family's rope index when there is an image or video, else 0..P-1 (what the
    model falls back to without grids)."""
    ids = inputs["input_ids"].to(device)
    if "image_grid_thw" not in inputs and "video_grid_thw" not in inputs:
        return torch.arange(ids.shape[1], device=device).view(1, 1, -1).expand(3, ids.shape[0], -1)
    return family_of_model(model).rope_index(model, inputs, device)


@contextmanager
def cache_under_checkpointing(model: Any) -> Iterator[None]:
    """Let checkpointed decoder layers keep our cache (transformers drops a cache in checkpointed
    layers unless the layer says it only reads it; ours are read-only or first-write-wins)."""
    layers = family_of_model(model).decoder_layers(model)
    previous = [layer.__dict__.get("_can_checkpoint_with_cache") for layer in layers]
    for layer in layers:
        layer._can_checkpoint_with_cache = True
    try:
        yield
    finally:
        for layer, value in zip(layers, previous, strict=True):
            if value is None:
                del layer._can_checkpoint_with_cache
            else:
                layer._can_checkpoint_with_cache = value


def _shared_layer(captured: Any, g: int, prompt_length: int) -> Any:
    """A captured prompt layer expanded to the B*G completion rows, read-only."""
    if isinstance(captured, hybrid_cache.CaptureLinearLayer):
        conv, state = captured.conv, captured.state
        return hybrid_cache.SharedLinearLayer(
            conv.repeat_interleave(g, 0), state.repeat_interleave(g, 0), prompt_length
        )
    return SharedPrefixLayer(captured.keys.repeat_interleave(g, 0), captured.values.repeat_interleave(g, 0))


def shared_prefix_logits(model: Any, rollout: Any, device: torch.device | str) -> torch.Tensor:
    """Logits (B*G, T, V) predicting each completion token, with one prompt forward per group.

    ``model`` may be wrapped (DDP, peft). Under DDP the prompt forward goes to the inner module
    and the completion forward through the wrapper: DDP's reducer is armed once per backward, and
    every parameter's gradient (summed over both forwards) is still reduced once. Other wrappers
    (DeepSpeed, FSDP) gather their weights in their own forward, so both forwards go through them.
    """
    g = rollout.group_size
    p = rollout.prompt.inputs
    completion = rollout.completion_ids.to(device)
    prompt_mask = p["attention_mask"].to(device)
    positions = rollout.prompt.positions(model, device)
    kinds = hybrid_cache.layer_types(unwrap(model).config)
    capture = Cache(
        layers=[
            hybrid_cache.CaptureLinearLayer() if k == hybrid_cache.LINEAR else CaptureLayer() for k in kinds
        ]
    )
    vision = {key: p[key].to(device) for key in VISION_KEYS if key in p}
    t = completion.shape[1]
    # With T == 1 there is no completion forward: the prompt forward then goes through the wrapper.
    is_ddp = isinstance(model, torch.nn.parallel.DistributedDataParallel)
    inner = model.module if t > 1 and is_ddp else model
    cache_arg = cache_kwarg(model)
    with cache_under_checkpointing(model):
        prompt_out = inner(
            input_ids=p["input_ids"].to(device),
            attention_mask=prompt_mask,
            position_ids=positions,
            **{cache_arg: capture},
            use_cache=False,
            logits_to_keep=1,
            **vision,
        )
        first = prompt_out.logits[:, -1:, :].repeat_interleave(g, 0)
        if t == 1:
            return first
        shared = Cache(layers=[_shared_layer(layer, g, p["input_ids"].shape[1]) for layer in capture.layers])
        # Completion token t of prompt b: b's last prompt position + 1 + t (left padding: the last
        # column is always a real token), in all three rope sections (text tokens).
        start = positions[:, :, -1:].repeat_interleave(g, 1) + 1
        completion_positions = start + torch.arange(completion.shape[1], device=device).view(1, 1, -1)
        mask = torch.cat(
            [prompt_mask.repeat_interleave(g, 0), rollout.completion_mask.to(device).to(prompt_mask.dtype)], 1
        )
        # The last completion token predicts nothing we score: feed T-1 tokens.
        completion_out = model(
            input_ids=completion[:, :-1],
            attention_mask=mask[:, :-1],
            position_ids=completion_positions[:, :, :-1],
            **{cache_arg: shared},
            use_cache=False,
        )
    return torch.cat([first, completion_out.logits], dim=1)

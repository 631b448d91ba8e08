"""Shared-prefix cache layers for linear-attention decoder layers (Qwen3.5's Gated DeltaNet).

A linear-attention layer keeps no keys and values: it sums the prompt up in two states, the last
``K`` inputs of its causal depthwise convolution (``K`` = the kernel size) and the recurrent state
of its gated delta rule (B, heads, k_dim, v_dim). The completion continues from both. For a GRPO
group that means: run the prompt once, keep both states *with grad*, repeat them G times, and run
the G completions from them - the linear-attention counterpart of the shared KV prefix
(:mod:`trainer.model.prefix`).

transformers' own linear-attention cache layer updates its states in place (``copy_``), which
breaks autograd (a tensor the graph saved is overwritten) and gradient-checkpointing replays
(the replay would start from the updated state). The layers here never write in place:

- :class:`CaptureLinearLayer` (prompt forward) records the states the first time a layer reports
  them and hands the layer back exactly what it gave, so the prompt's computation is the
  cache-free one;
- :class:`SharedLinearLayer` (completion forward) returns the prompt's states on read and the
  concatenation / new state on update without storing anything, so a replay sees the same inputs.

Padding: prompts are left-padded; the model zeroes padded positions' inputs before the convolution
(``apply_mask_to_padding_states``), so zero columns enter the conv state and leave a zero recurrent
state unchanged (a zero key and value add nothing): the states equal those of the unpadded prompt.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import Cache, DynamicLayer, LinearAttentionCacheLayerMixin

LINEAR = "linear_attention"


def layer_types(model_config: Any) -> list[str]:
    """Each decoder layer's kind (``full_attention``, ``linear_attention``, ...), from the text config;
    a model without the field has full attention everywhere."""
    text = getattr(model_config, "text_config", model_config)
    n = int(text.num_hidden_layers)
    return list(getattr(text, "layer_types", None) or ["full_attention"] * n)[:n]


def is_hybrid(model_config: Any) -> bool:
    return LINEAR in layer_types(model_config)


class CaptureLinearLayer(LinearAttentionCacheLayerMixin):
    """Records a linear-attention layer's conv input tail and final recurrent state (with grad)
    during the prompt forward; first write wins (a checkpointing replay recomputes the same)."""

    def __init__(self) -> None:
        super().__init__(number_of_states=1)
        self.conv: torch.Tensor | None = None
        self.state: torch.Tensor | None = None

    def lazy_initialization(self, *args: Any, **kwargs: Any) -> None:
        return None

    def update_conv_state(
        self,
        conv_states: torch.Tensor,
        state_idx: int = 0,
        conv_kernel_size: int | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        if self.conv is None:
            k = int(conv_kernel_size or conv_states.shape[-1])
            tail = conv_states[..., -k:]
            if tail.shape[-1] < k:  # a prompt shorter than the kernel: the zeros a fresh cache holds
                tail = torch.nn.functional.pad(tail, (k - tail.shape[-1], 0))
            self.conv = tail
        return conv_states

    def update_recurrent_state(
        self, recurrent_states: Any, state_idx: int = 0, **kwargs: Any
    ) -> torch.Tensor:
        last = recurrent_states if isinstance(recurrent_states, torch.Tensor) else recurrent_states[-1]
        if self.state is None:
            self.state = last
        return last

    def get_seq_length(self) -> int:
        return 0  # the prompt forward starts from an empty cache; positions are passed explicitly


class SharedLinearLayer(LinearAttentionCacheLayerMixin):
    """The prompt's conv tail and recurrent state expanded to B*G rows, read-only: ``update_*``
    return what the layer needs (prefix + new conv inputs; the new state) and store nothing."""

    def __init__(self, conv: torch.Tensor, state: torch.Tensor, prompt_length: int) -> None:
        super().__init__(number_of_states=1)
        self.conv_states[0], self.recurrent_states[0] = conv, state
        self.has_previous_state[0] = True
        self.conv_kernel_size[0] = conv.shape[-1]
        self.device, self.dtype = conv.device, conv.dtype
        self.cumulative_length_linear = torch.tensor(prompt_length)
        # "Recording the past" keeps transformers off its single-token path, which updates the conv
        # state in place (causal_conv1d_update); recurrent_states_to_keep 0 keeps it from recording.
        self.record_past = True
        self.recurrent_states_to_keep = 0

    def lazy_initialization(self, *args: Any, **kwargs: Any) -> None:
        return None

    def update_conv_state(self, conv_states: torch.Tensor, state_idx: int = 0, **kwargs: Any) -> torch.Tensor:
        return torch.cat([self.conv_states[0], conv_states], dim=-1)

    def update_recurrent_state(
        self, recurrent_states: Any, state_idx: int = 0, **kwargs: Any
    ) -> torch.Tensor:
        return recurrent_states if isinstance(recurrent_states, torch.Tensor) else recurrent_states[-1]


def repeat_rows(cache: Cache, repeats: int) -> None:
    """Repeat every row of a filled generation cache ``repeats`` times in place (row b -> rows
    b*G .. b*G+G-1): keys/values and, for linear-attention layers, their conv and recurrent states
    (transformers' ``batch_repeat_interleave`` skips the latter)."""
    for layer in cache.layers:
        if isinstance(layer, LinearAttentionCacheLayerMixin):
            for i in range(layer.number_of_states):
                if layer.is_conv_states_initialized[i]:
                    layer.conv_states[i] = layer.conv_states[i].repeat_interleave(repeats, 0)
                if layer.is_recurrent_states_initialized[i]:
                    layer.recurrent_states[i] = layer.recurrent_states[i].repeat_interleave(repeats, 0)
        if isinstance(layer, DynamicLayer) and layer.is_initialized:
            DynamicLayer.batch_repeat_interleave(layer, repeats)

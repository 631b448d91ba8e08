"""vLLM's Qwen2-style M-RoPE placed as transformers places it (Qwen2-VL and Qwen2.5-VL).

The trainer's forward is what GRPO optimises, so the sampler must score the same positions:
:func:`follow_transformers_positions` swaps vLLM's ``get_mrope_input_positions`` of one model class
for :func:`transformers_mrope_positions`.
"""

from __future__ import annotations

from typing import Any

import torch


def transformers_mrope_positions(self: Any, input_tokens: list[int], mm_features: list) -> tuple:
    """vLLM's ``get_mrope_input_positions`` computed with transformers 5.x's rule.

    transformers 5.x (checked: 5.19, 5.24) continues the text after an image or video at
    ``start + max(h, w)`` (merged grid), ignoring the temporal span; vLLM 0.32, like Qwen's original
    code, continues at the largest vision position + 1. For a video of 4 temporal steps at
    ``tokens_per_second * second_per_grid_ts = 1`` on a 2x2 grid the text after it starts 2
    positions apart, so every token after the video was scored differently (0.3 nats mean on the
    tiny model). The trainer's forward is what GRPO optimises, so the sampler follows it.
    """
    import numpy as np

    pieces: list = []
    st = current = 0
    for offset, t, h, w, t_factor in self.iter_mm_grid_thw(mm_features):
        text_len = offset - st
        pieces.append(np.broadcast_to(np.arange(text_len), (3, text_len)) + current)
        current += text_len
        grid = np.indices((t, h, w))
        if t_factor != 1.0:
            grid[0] = (grid[0] * t_factor).astype(np.int64)
        pieces.append(grid.reshape(3, -1) + current)
        current += max(h, w)
        st = offset + t * h * w
    if st < len(input_tokens):
        text_len = len(input_tokens) - st
        pieces.append(np.broadcast_to(np.arange(text_len), (3, text_len)) + current)
    positions = np.concatenate(pieces, axis=1).reshape(3, -1)
    return torch.from_numpy(positions), int(positions.max() + 1 - len(input_tokens))


def follow_transformers_positions(vllm_module: str, class_name: str) -> None:
    """Make vLLM's ``vllm_module.class_name`` place text after vision tokens as transformers does."""
    import importlib

    cls = getattr(importlib.import_module(vllm_module), class_name)
    cls.get_mrope_input_positions = transformers_mrope_positions

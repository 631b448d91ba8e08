"""Per-token log-probabilities of sampled completions under a model (policy or reference).

The prompt batch holds each video once; for the training forward every prompt row (and its video
block) is repeated G times so row b*G + g is prompt b followed by completion g, matching the
grouped order ``generate(num_return_sequences=G)`` returns.
"""

from __future__ import annotations

from typing import Any

import torch

from trainer.rollout import RolloutBatch


def _repeat_vision_blocks(pixels: torch.Tensor, grid_thw: torch.Tensor, group_size: int) -> torch.Tensor:
    """Repeat each video's (or image's) rows of patches G times, keeping the per-item order.

    ``pixels`` is (sum_i t_i*h_i*w_i, D): item i owns ``prod(grid_thw[i])`` consecutive rows.
    """
    sizes = grid_thw.prod(dim=1).tolist()
    blocks = torch.split(pixels, sizes, dim=0)
    return torch.cat([block for block in blocks for _ in range(group_size)], dim=0)


def sequence_inputs(rollout: RolloutBatch, device: torch.device | str) -> dict[str, torch.Tensor]:
    """Model inputs for the (B*G) sequences prompt + completion, and ``logits_to_keep``."""
    g = rollout.group_size
    p = rollout.prompt.inputs
    completion = rollout.completion_ids.to(device)
    mask = rollout.completion_mask.to(device)
    inputs: dict[str, Any] = {
        "input_ids": torch.cat([p["input_ids"].to(device).repeat_interleave(g, 0), completion], dim=1),
        "attention_mask": torch.cat(
            [p["attention_mask"].to(device).repeat_interleave(g, 0), mask.to(p["attention_mask"].dtype)],
            dim=1,
        ),
    }
    if "mm_token_type_ids" in p:
        # Generated tokens are text (type 0); the types tell the model where 3-D rope applies.
        inputs["mm_token_type_ids"] = torch.cat(
            [p["mm_token_type_ids"].to(device).repeat_interleave(g, 0), torch.zeros_like(completion)], dim=1
        )
    if "pixel_values_videos" in p:
        grid = p["video_grid_thw"]
        inputs["pixel_values_videos"] = _repeat_vision_blocks(p["pixel_values_videos"], grid, g).to(device)
        inputs["video_grid_thw"] = grid.repeat_interleave(g, 0).to(device)
        if "second_per_grid_ts" in p:
            inputs["second_per_grid_ts"] = (
                torch.as_tensor(p["second_per_grid_ts"]).repeat_interleave(g, 0).to(device)
            )
    if "pixel_values" in p:
        grid = p["image_grid_thw"]
        inputs["pixel_values"] = _repeat_vision_blocks(p["pixel_values"], grid, g).to(device)
        inputs["image_grid_thw"] = grid.repeat_interleave(g, 0).to(device)
    return inputs


def completion_logprobs(model: Any, rollout: RolloutBatch, temperature: float = 1.0) -> torch.Tensor:
    """Log-probs (B*G, T) of each completion token given everything before it.

    Dividing logits by the sampling temperature scores tokens under the distribution they were
    sampled from (as TRL does), so the importance ratio starts at 1.
    """
    device = next(model.parameters()).device
    inputs = sequence_inputs(rollout, device)
    completion = rollout.completion_ids.to(device)
    t = completion.shape[1]
    # Only the last T+1 positions' logits are needed: vocab-sized logits for the prompt would
    # dominate memory on real models.
    logits = model(**inputs, logits_to_keep=t + 1, use_cache=False).logits[:, :-1, :]
    logits = logits.float() / temperature
    return torch.log_softmax(logits, dim=-1).gather(-1, completion.unsqueeze(-1)).squeeze(-1)

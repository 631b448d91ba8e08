"""DAPO's dynamic sampling: keep only the prompt groups whose rewards differ.

A group whose G completions all score the same has advantages of exactly 0, so it adds nothing to
the policy gradient; late in training (or when the policy has grown sure of a wrong answer) most
groups are like that and a step learns from a handful of prompts. Dynamic sampling (Yu et al.,
2025, DAPO; verl's ``filter_groups``) drops those groups and samples fresh questions until the
batch is full of informative ones (:func:`trainer.update.grpo.groups_with_spread` says which). The loop in
:mod:`trainer.run.loop` decides when to sample more;
this module only cuts a rollout batch down to chosen prompts, with everything that belongs to them
(prompt rows, their slice of the pixel tensors, completions, rewards).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from trainer.rollout.hf import PromptBatch, RolloutBatch
from trainer.score.scoring import Scores

# Per-prompt pixel tensors and the grid tensor whose rows say how many pixel rows each prompt owns.
_VISION_KEYS = (("pixel_values_videos", "video_grid_thw"), ("pixel_values", "image_grid_thw"))


def _pixel_rows(grid: torch.Tensor, keep: Sequence[int]) -> torch.Tensor:
    """Row indices into a flat pixel tensor for the kept prompts (prompt i owns prod(grid[i]) rows)."""
    sizes = grid.prod(dim=1)
    starts = torch.cumsum(sizes, 0) - sizes
    return torch.cat([torch.arange(int(starts[i]), int(starts[i] + sizes[i])) for i in keep])


def select_prompts(prompt: PromptBatch, keep: Sequence[int]) -> PromptBatch:
    """The prompt batch restricted to ``keep`` (indices, in order). Every prompt here has exactly one
    video or one image, which is what the MCQ records carry."""
    if not keep:
        raise ValueError("select_prompts needs at least one prompt to keep")
    index = torch.as_tensor(list(keep), dtype=torch.long)
    inputs = dict(prompt.inputs)
    for pixels_key, grid_key in _VISION_KEYS:
        if grid_key in inputs:
            grid = torch.as_tensor(inputs[grid_key])
            if grid.shape[0] != prompt.size:
                raise ValueError(f"{grid_key} has {grid.shape[0]} rows for {prompt.size} prompts")
            inputs[pixels_key] = inputs[pixels_key][_pixel_rows(grid, keep)]
            inputs[grid_key] = grid[index]
    for key, value in prompt.inputs.items():
        if key in inputs and inputs[key] is not value:
            continue  # already cut above
        if isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == prompt.size:
            inputs[key] = value[index]
        elif isinstance(value, list | tuple) and len(value) == prompt.size:
            inputs[key] = [value[i] for i in keep]
    openings = [prompt.openings[i] for i in keep] if prompt.openings else []
    return PromptBatch(records=[prompt.records[i] for i in keep], inputs=inputs, openings=openings)


def select_groups(rollout: RolloutBatch, scores: Scores, keep: Sequence[int]) -> tuple[RolloutBatch, Scores]:
    """The rollouts and scores of the prompts in ``keep`` (all G completions of each)."""
    g = rollout.group_size
    rows = [p * g + s for p in keep for s in range(g)]
    index = torch.as_tensor(rows, dtype=torch.long)
    kept = RolloutBatch(
        prompt=select_prompts(rollout.prompt, keep),
        group_size=g,
        completion_ids=rollout.completion_ids[index],
        completion_mask=rollout.completion_mask[index],
        texts=[rollout.texts[r] for r in rows],
        seconds=rollout.seconds,
        sampler_logprobs=None if rollout.sampler_logprobs is None else rollout.sampler_logprobs[index],
    )
    kept_scores = Scores(
        breakdowns=[scores.breakdowns[r] for r in rows],
        format=scores.format[index],
        accuracy=scores.accuracy[index],
        total=scores.total[index],
        temporal=scores.temporal,
    )
    return kept, kept_scores

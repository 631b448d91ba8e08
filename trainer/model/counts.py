"""Counting the work a step does, from hooks on the model (instrumentation, not assumption).

:func:`count_forwards` registers forward pre-hooks on the vision tower and the language model of
each given model and records, while it is open, every vision-tower call (and how many images or
videos it encoded) and every language-model forward (rows x query tokens, padding included).
The step turns these into the ``compute/*`` metrics of :mod:`trainer.core.metrics_keys`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from trainer.model.families import family_of_model


@dataclass
class ForwardCounts:
    """What went through the models while :func:`count_forwards` was open."""

    vision_calls: int = 0  # vision-tower forwards
    vision_items: int = 0  # images/videos encoded by them (rows of grid_thw)
    lm_forwards: list[int] = field(default_factory=list)  # query tokens of each language-model forward

    @property
    def lm_tokens(self) -> int:
        return sum(self.lm_forwards)


@contextmanager
def count_forwards(*models: Any) -> Iterator[ForwardCounts]:
    """Count vision-tower calls and language-model tokens of ``models`` (None entries skipped)."""
    counts = ForwardCounts()

    def on_vision(_module: Any, args: tuple, kwargs: dict) -> None:
        grid = kwargs.get("grid_thw", args[1] if len(args) > 1 else None)
        counts.vision_calls += 1
        counts.vision_items += int(grid.shape[0]) if isinstance(grid, torch.Tensor) else 1

    def on_language_model(_module: Any, args: tuple, kwargs: dict) -> None:
        embeds = kwargs.get("inputs_embeds")
        ids = kwargs.get("input_ids", args[0] if args else None)
        shape = embeds.shape if embeds is not None else ids.shape
        counts.lm_forwards.append(int(shape[0]) * int(shape[1]))

    handles = []
    try:
        for model in models:
            if model is None:
                continue
            family = family_of_model(model)
            tower, text = family.vision_tower_of(model), family.language_model_of(model)
            handles.append(tower.register_forward_pre_hook(on_vision, with_kwargs=True))
            handles.append(text.register_forward_pre_hook(on_language_model, with_kwargs=True))
        yield counts
    finally:
        for handle in handles:
            handle.remove()

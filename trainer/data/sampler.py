"""The order records are trained in: a seeded permutation per epoch, cut into per-step batches.

Pure and stateless given (seed, epoch, position), which is all a checkpoint needs to continue the
data stream exactly where it stopped.
"""

from __future__ import annotations

import math

import torch


def epoch_order(num_records: int, seed: int, epoch: int) -> list[int]:
    """The shuffled record indices of one epoch (same seed and epoch -> same order)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_records, generator=generator).tolist()


def next_batch(
    num_records: int, batch_size: int, seed: int, epoch: int, position: int
) -> tuple[list[int], int, int]:
    """Indices of the next ``batch_size`` records and the (epoch, position) after them.

    A batch never straddles two epochs: the tail of an epoch shorter than a batch is skipped
    (as ``drop_last`` does), so every batch has the same size.
    """
    if batch_size > num_records:
        raise ValueError(f"batch of {batch_size} records from a dataset of {num_records}")
    if position + batch_size > num_records:
        epoch, position = epoch + 1, 0
    order = epoch_order(num_records, seed, epoch)
    return order[position : position + batch_size], epoch, position + batch_size


def total_steps(num_records: int, batch_size: int, num_train_epochs: float, max_steps: int) -> int:
    """Global steps of the run: ``max_steps`` when set, else whole batches over the epochs."""
    if max_steps > 0:
        return max_steps
    return max(1, math.floor(num_records // batch_size * num_train_epochs))

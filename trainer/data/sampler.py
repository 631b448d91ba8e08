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
    (as ``drop_last`` does), so every batch has the same size. A dataset smaller than one batch
    (8 records, 16 a step) cannot hold a batch at all; its batches run on through the next
    epochs' orders instead (see :func:`_wrapped_batch`).
    """
    if num_records < 1:
        raise ValueError("no records to draw a batch from")
    if batch_size > num_records:
        return _wrapped_batch(num_records, batch_size, seed, epoch, position)
    if position + batch_size > num_records:
        epoch, position = epoch + 1, 0
    order = epoch_order(num_records, seed, epoch)
    return order[position : position + batch_size], epoch, position + batch_size


def _wrapped_batch(
    num_records: int, batch_size: int, seed: int, epoch: int, position: int
) -> tuple[list[int], int, int]:
    """A batch larger than the dataset: the rest of this epoch's order, then whole epochs, then the
    head of the next one, where the following batch goes on. A record is in a batch once per epoch
    the batch touches, so GRPO sees it as that many groups; each group's advantages are its own,
    and over the run every record is drawn equally often, as with a dataset that holds a batch."""
    indices: list[int] = []
    while len(indices) < batch_size:
        if position >= num_records:
            epoch, position = epoch + 1, 0
        take = min(batch_size - len(indices), num_records - position)
        indices += epoch_order(num_records, seed, epoch)[position : position + take]
        position += take
    return indices, epoch, position


def total_steps(num_records: int, batch_size: int, num_train_epochs: float, max_steps: int) -> int:
    """Global steps of the run: ``max_steps`` when set, else whole batches over the epochs (at
    least 1). A dataset smaller than a batch gives a fraction of a step per epoch (8 records at
    16 a step: 3 epochs are 1 step)."""
    if max_steps > 0:
        return max_steps
    per_epoch = num_records // batch_size if batch_size <= num_records else num_records / batch_size
    return max(1, math.floor(per_epoch * num_train_epochs))

"""How evaluation splits records over processes: whole batches, contiguous shares, record order."""

from __future__ import annotations

import pytest

from trainer.evaluate import batch_bounds, process_share


def test_batches_cover_the_records_in_order_with_a_short_last_one() -> None:
    assert batch_bounds(7, 2) == [(0, 2), (2, 4), (4, 6), (6, 7)]
    assert batch_bounds(4, 4) == [(0, 4)]
    assert batch_bounds(0, 4) == []


@pytest.mark.parametrize(
    ("num_batches", "world", "expected"),
    [
        (5, 2, [[0, 1, 2], [3, 4]]),
        (4, 2, [[0, 1], [2, 3]]),
        (1, 2, [[0], []]),  # the second process answers nothing (it repeats a batch under synced_gpus)
        (7, 3, [[0, 1, 2], [3, 4], [5, 6]]),
        (3, 1, [[0, 1, 2]]),
    ],
)
def test_shares_are_contiguous_and_concatenate_to_every_batch(num_batches, world, expected) -> None:
    shares = [list(process_share(num_batches, p, world)) for p in range(world)]
    assert shares == expected
    assert sum(shares, []) == list(range(num_batches))

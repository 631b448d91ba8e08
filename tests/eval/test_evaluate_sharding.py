"""How evaluation splits records over processes: whole batches, contiguous shares, record order."""

from __future__ import annotations

import pytest

from trainer.eval.evaluate import batch_bounds, process_share


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


def test_progress_is_reported_after_every_batch(tiny_model_dir, tmp_path) -> None:
    # What an evaluation job's bar shows: records answered so far, batch by batch.
    from trainer.core.video_config import VideoConfig
    from trainer.data import load_dataset_use
    from trainer.eval.evaluate import evaluate
    from trainer.model.loading import generation_kwargs, load_policy

    model, processor = load_policy(tiny_model_dir)
    records = load_dataset_use("synthetic_motion_no_think_eval", tmp_path, 0)[:10]
    kwargs = generation_kwargs(processor, 4, do_sample=False)
    video = VideoConfig(fps=8.0, max_frames=8, min_pixels=3136, max_pixels=3136)
    seen: list[int] = []
    result = evaluate(model, processor, records, video, kwargs, batch_size=4, on_progress=seen.append)
    assert seen == [4, 8, 10] and result.num_records == 10

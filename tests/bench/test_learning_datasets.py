"""bench/learning.py's --dataset / --eval-dataset: the config overrides they make (pure)."""

from __future__ import annotations

import pytest

from tests.helpers.bench import load_bench

TRAIN = "synthetic_motion_numerical_no_think_train"


def test_dataset_is_held_out_on_its_eval_twin() -> None:
    overrides = load_bench("learning")._datasets(TRAIN, None)
    assert overrides == {"dataset_use": TRAIN, "eval_dataset_use": "synthetic_motion_numerical_no_think_eval"}


def test_eval_dataset_overrides_the_twin() -> None:
    overrides = load_bench("learning")._datasets(TRAIN, "synthetic_motion_eval")
    assert overrides == {"dataset_use": TRAIN, "eval_dataset_use": "synthetic_motion_eval"}


def test_no_flags_keep_the_config() -> None:
    assert load_bench("learning")._datasets(None, None) == {}


def test_dataset_without_train_in_its_name_needs_eval_dataset() -> None:
    with pytest.raises(SystemExit, match="give --eval-dataset"):
        load_bench("learning")._datasets("my_clips", None)

"""``early_stop_accuracy``: the window rule, with hand numbers, and the config's bounds."""

from __future__ import annotations

import pytest

from trainer.core import metrics_keys as mk
from trainer.core.config import RunConfig
from trainer.core.errors import ConfigError
from trainer.run.loop import accuracy_plateau


def steps(*accuracies: float) -> list[dict[str, float]]:
    return [{"step": i + 1, mk.ACCURACY_REWARD: a} for i, a in enumerate(accuracies)]


def test_the_mean_of_the_last_window_steps_is_compared() -> None:
    run = RunConfig(early_stop_accuracy=0.75, early_stop_window=3)
    # last three: (0.5 + 1 + 0.75) / 3 = 0.75 -> reached; the earlier 0.0 is outside the window.
    assert accuracy_plateau(steps(0.0, 0.5, 1.0, 0.75), run) == pytest.approx(0.75)
    # (0.0 + 0.5 + 1.0) / 3 = 0.5 -> not yet
    assert accuracy_plateau(steps(0.0, 0.5, 1.0), run) is None


def test_a_window_not_yet_full_never_stops() -> None:
    run = RunConfig(early_stop_accuracy=0.5, early_stop_window=3)
    assert accuracy_plateau(steps(1.0, 1.0), run) is None


def test_zero_is_off_whatever_the_accuracy() -> None:
    assert accuracy_plateau(steps(1.0, 1.0, 1.0), RunConfig(early_stop_window=1)) is None


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"early_stop_accuracy": 1.5}, "early_stop_accuracy must be in"),
        ({"early_stop_accuracy": -0.1}, "early_stop_accuracy must be in"),
        ({"early_stop_window": 0}, "early_stop_window must be >= 1"),
    ],
)
def test_out_of_range_values_are_refused(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RunConfig(**values)

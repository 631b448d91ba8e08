"""bench/studio_learning.py's reading of a run (pure): what the Monitor showed at a given time, the
time to each bar, and the README table, with hand numbers."""

from __future__ import annotations

import math
from typing import Any

from tests.helpers.bench import load_bench as load_bench_script


def load_bench() -> Any:
    return load_bench_script("studio_learning")


def outcome(bench: Any, points: tuple[tuple[int, float, float], ...]) -> Any:
    return bench.Outcome(
        mode="no_think",
        seed=2,
        first_step_s=10.4,
        points=points,
        to_climb_s=next((t for _, t, a in points if a >= bench.CLIMB), None),
        to_target_s=next((t for _, t, a in points if a >= bench.TARGET), None),
        steps_per_s=2.0,
    )


def test_held_out_accuracy_is_the_last_point_logged_by_then() -> None:
    bench = load_bench()
    o = outcome(bench, ((25, 14.0, 0.22), (50, 27.5, 0.45), (75, 119.9, 0.61), (100, 130.0, 0.93)))
    assert math.isnan(o.at(13.9))  # before the first evaluation nothing was shown
    assert o.at(14.0) == 0.22 and o.at(119.8) == 0.45 and o.at(120.0) == 0.61 and o.at(300.0) == 0.93
    assert (o.to_climb_s, o.to_target_s) == (119.9, 130.0)
    assert bench.meets_goal(o)
    late = outcome(bench, ((25, 14.0, 0.22), (50, 121.0, 0.55), (75, 150.0, 0.95)))
    assert not bench.meets_goal(late)  # the climb came a second after 2 minutes


def test_the_table_says_not_reached_and_rounds_to_seconds() -> None:
    bench = load_bench()
    never = outcome(bench, ((25, 14.0, 0.22), (50, 27.5, 0.45)))
    assert not bench.meets_goal(never)
    table = bench.markdown_table([never]).splitlines()
    assert table[0].startswith("| mode | seed | Launch -> first step | held-out >= 0.5 | held-out >= 0.9 |")
    assert table[2] == "| no_think | 2 | 10 s | not reached | not reached | 0.45 | 0.45 | 2.00 |"
    assert never.line() == (
        "studio_learning: mode=no_think seed=2 first_step_s=10 to_0.5_s=- to_0.9_s=- "
        "at_120s=0.45 at_300s=0.45 steps_per_s=2.00"
    )

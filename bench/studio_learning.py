"""Does a newcomer's first run learn, started the way the studio starts it?

For each answer format (no_think: the Train tab as it opens; think: after Use of a think dataset)
and each seed, the Train tab's form values of that preset (only ``seed`` changed) go through the
Launch button's own path: the launch checks (``studio.tabs.train.checked_config``), then the
studio's Supervisor starts the trainer as a background process, exactly the command the Launch
button runs (processes, threads, evaluation cadence: the preset's). Held-out accuracy is read back
from the run database as the Monitor shows it, while the run goes on.

Per run it prints the seconds from Launch (and from the first training step) to the first
held-out evaluation >= 0.5 and >= 0.9, and held-out accuracy as it stood at 2 and 5 minutes after
the first step. A run is ended (Abort, as the button does) once held-out reaches ``--stop-at`` or
after ``--seconds``. Ends with a Markdown table for the README and one line a run:

    studio_learning: mode=no_think seed=0 first_step_s=9 to_0.5_s=51 to_0.9_s=97 at_120s=0.99 at_300s=0.99

    .venv/bin/python bench/studio_learning.py                       # seeds 0-4, both formats
    .venv/bin/python bench/studio_learning.py --modes think --seeds 3
    .venv/bin/python bench/studio_learning.py --set temperature=0.7   # a field changed in the form

Run it on a quiet machine: every number is wall-clock time.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from studio import forms
from studio.context import StudioContext
from studio.supervisor import Supervisor
from studio.tabs.train import checked_config
from trainer.core import metrics_keys as mk
from trainer.rundb import RunStore

MODES = (forms.NO_THINK, forms.THINK)
CLIMB, TARGET = 0.5, 0.9  # the "visible climb" within 2 minutes, and the goal within 5
CLIMB_BY_S, TARGET_BY_S = 120.0, 300.0


@dataclass(frozen=True)
class Outcome:
    """One run's held-out accuracy over time. Times in seconds; None where it was not reached."""

    mode: str
    seed: int
    first_step_s: float  # Launch -> the first training step's metrics in the run database
    points: tuple[tuple[int, float, float], ...]  # (step, seconds after the first step, accuracy)
    to_climb_s: float | None  # first step -> first held-out point >= CLIMB
    to_target_s: float | None  # first step -> first held-out point >= TARGET
    steps_per_s: float

    def at(self, seconds: float) -> float:
        """Held-out accuracy as the Monitor showed it ``seconds`` after the first step: the last
        evaluation logged by then (NaN before the first one). A run stopped early at its target
        keeps that value."""
        shown = [acc for _, t, acc in self.points if t <= seconds]
        return shown[-1] if shown else math.nan

    def line(self) -> str:
        def fmt(value: float | None) -> str:
            return "-" if value is None else f"{value:.0f}"

        return (
            f"studio_learning: mode={self.mode} seed={self.seed} first_step_s={self.first_step_s:.0f} "
            f"to_{CLIMB}_s={fmt(self.to_climb_s)} to_{TARGET}_s={fmt(self.to_target_s)} "
            f"at_{CLIMB_BY_S:.0f}s={self.at(CLIMB_BY_S):.2f} "
            f"at_{TARGET_BY_S:.0f}s={self.at(TARGET_BY_S):.2f} "
            f"steps_per_s={self.steps_per_s:.2f}"
        )


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    outcomes = []
    for mode in args.modes:
        for seed in args.seeds:
            workspace = Path(tempfile.mkdtemp(prefix=f"vgrpo-studio-learning-{mode}-{seed}-"))
            outcome = launch_and_watch(workspace, mode, seed, args.seconds, args.stop_at, args.set)
            print(outcome.line(), flush=True)
            outcomes.append(outcome)
    print()
    print(markdown_table(outcomes))
    missed = [o for o in outcomes if not meets_goal(o)]
    return 1 if missed else 0


def meets_goal(o: Outcome) -> bool:
    return (
        o.to_climb_s is not None
        and o.to_climb_s <= CLIMB_BY_S
        and o.to_target_s is not None
        and (o.to_target_s <= TARGET_BY_S)
    )


def launch_and_watch(
    workspace: Path, mode: str, seed: int, seconds: float, stop_at: float, changes: dict[str, str]
) -> Outcome:
    """Launch the preset of ``mode`` with ``seed`` (and ``changes``: form fields as typed) as the
    Train tab does; watch its evaluations."""
    ctx = StudioContext(workspace)
    supervisor = Supervisor(ctx)
    values = forms.field_values(forms.preset_for_mode(mode))
    values["seed"] = seed
    values["run_name"] = f"{mode}-seed{seed}"
    values.update(changes)  # parsed as the form parses what a person types
    cfg = checked_config(supervisor, values)
    launched_at = time.time()
    run_id = supervisor.start(cfg).run.id
    try:
        first_step = _watch(ctx.store, run_id, launched_at, seconds, stop_at)
    finally:
        if ctx.store.get_run(run_id).is_active:
            supervisor.abort(run_id)
        _wait_ended(ctx.store, run_id)
    outcome = _outcome(ctx.store, run_id, mode, seed, launched_at, first_step)
    ctx.store.close()
    return outcome


def _watch(store: RunStore, run_id: int, launched_at: float, seconds: float, stop_at: float) -> float:
    """Poll as the Monitor does until held-out reaches ``stop_at``, ``seconds`` of training pass or
    the run ends; -> the wall time of the first step."""
    first_step: float | None = None
    while store.get_run(run_id).is_active:
        time.sleep(2.0)
        series = store.metrics_since(run_id, names=[mk.ACCURACY_REWARD, mk.EVAL_ACCURACY])
        train = series.get(mk.ACCURACY_REWARD)
        if first_step is None and train is not None and train.steps:
            first_step = train.wall_times[0]
        held_out = series.get(mk.EVAL_ACCURACY)
        if held_out is not None and held_out.values and held_out.values[-1] >= stop_at:
            break
        if first_step is not None and time.time() - first_step > seconds:
            break
        if first_step is None and time.time() - launched_at > 300:
            raise RuntimeError(f"run {run_id} logged no step within 300 s of its launch")
    return first_step if first_step is not None else launched_at


def _wait_ended(store: RunStore, run_id: int, timeout_s: float = 120.0) -> None:
    deadline = time.time() + timeout_s
    while store.get_run(run_id).is_active and time.time() < deadline:
        time.sleep(1.0)


def _outcome(store: RunStore, run_id: int, mode: str, seed: int, launched_at: float, first: float) -> Outcome:
    series = store.metrics_since(run_id, names=[mk.ACCURACY_REWARD, mk.EVAL_ACCURACY])
    held_out = series.get(mk.EVAL_ACCURACY)
    points = (
        tuple(
            (step, wall - first, acc)
            for step, wall, acc in zip(held_out.steps, held_out.wall_times, held_out.values, strict=True)
            if step > 0  # step 0: an evaluation before training, where a preset asks for one
        )
        if held_out is not None
        else ()
    )
    train = series[mk.ACCURACY_REWARD]
    span = train.wall_times[-1] - train.wall_times[0]
    return Outcome(
        mode=mode,
        seed=seed,
        first_step_s=first - launched_at,
        points=points,
        to_climb_s=next((t for _, t, acc in points if acc >= CLIMB), None),
        to_target_s=next((t for _, t, acc in points if acc >= TARGET), None),
        steps_per_s=(len(train.steps) - 1) / span if span > 0 else math.nan,
    )


def markdown_table(outcomes: list[Outcome]) -> str:
    """The README's table: one row a run."""
    rows = [
        f"| mode | seed | Launch -> first step | held-out >= {CLIMB} | held-out >= {TARGET} "
        f"| held-out at {CLIMB_BY_S / 60:.0f} min | at {TARGET_BY_S / 60:.0f} min | steps/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:

        def secs(value: float | None) -> str:
            return "not reached" if value is None else f"{value:.0f} s"

        rows.append(
            f"| {o.mode} | {o.seed} | {o.first_step_s:.0f} s | {secs(o.to_climb_s)} | {secs(o.to_target_s)} "
            f"| {o.at(CLIMB_BY_S):.2f} | {o.at(TARGET_BY_S):.2f} | {o.steps_per_s:.2f} |"
        )
    return "\n".join(rows)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--seconds", type=float, default=TARGET_BY_S, help="training seconds at most, a run")
    parser.add_argument("--stop-at", type=float, default=0.95, help="end a run once held-out reaches this")
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="FIELD=VALUE", help="form fields changed before Launch"
    )
    args = parser.parse_args(argv)
    args.set = dict(item.split("=", 1) for item in args.set)
    return args


if __name__ == "__main__":
    sys.exit(main())

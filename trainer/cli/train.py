"""`vgrpo train`: run GRPO from a YAML config (the one the studio writes) and/or flags.

Every config field is a flag (``--grpo_alpha 0.5``); flags override the YAML. Also reachable as
``python -m trainer.train`` with the same flags.

``--check`` trains nothing: it runs the launch checks and a pre-flight (samples grpo_sample_size
completions for a few questions with the chosen model and settings, scores them, estimates the
cost of a step) and exits 0 when the run can learn, 3 when it warns (each warning names the knob),
2 when the config is wrong.

A training run exits 0 when it finishes and 143 when it is aborted (a stop request or SIGTERM; it
saved a checkpoint to resume from first). With ``num_processes`` > 1 and no launcher around it,
the command starts itself again under ``accelerate launch`` (as the studio's Launch does), so the
YAML the studio writes trains the same from a terminal.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import subprocess
import sys
from typing import Any

from trainer.core import metrics_keys as mk
from trainer.core.config import SECTIONS, TrainConfig, build_config, field_index, load_yaml, merge
from trainer.core.errors import StudioError
from trainer.run.preflight import LaunchCheck, check_launch, format_report, run_preflight

# Exit codes of `vgrpo train` (argparse's own usage errors are 2 as well).
EXIT_OK = 0
EXIT_CONFIG_ERROR = 2
EXIT_WARNINGS = 3
# The run was aborted (the studio's Abort, SIGTERM): as a process ended by SIGTERM (128 + 15).
EXIT_ABORTED = 143

logger = logging.getLogger(__name__)


def add_flags(parser: argparse.ArgumentParser) -> None:
    """One ``--name VALUE`` flag per config field, its help from the field's metadata."""
    parser.add_argument(
        "--config", help="YAML config (sections model/data/video/grpo/optim/run, or flat keys)"
    )
    parser.add_argument(
        "--attach_run", type=int, default=None, help=argparse.SUPPRESS
    )  # the studio's run row
    parser.add_argument(
        "--check",
        action="store_true",
        help="train nothing: check the config, sample a few groups with the chosen model and print "
        "the pre-flight (exit 0: can learn, 3: warnings naming the knob, 2: config error)",
    )
    for section in SECTIONS:
        group = parser.add_argument_group(section)
        for name, (sec, f) in field_index().items():
            if sec != section:
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            default = "none" if default is None else list(default) if isinstance(default, tuple) else default
            text = f"{f.metadata.get('help', '')} (default: {default})".replace(
                "%", "%%"
            )  # argparse formats help
            group.add_argument(
                f"--{name}",
                dest=name,
                default=argparse.SUPPRESS,
                metavar=name.upper(),
                # A bare boolean flag (`--bf16`) means true, as in Hugging Face scripts.
                nargs="?" if isinstance(f.default, bool) else None,
                const="true" if isinstance(f.default, bool) else None,
                help=text,
            )


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    index = field_index()
    return {k: v for k, v in vars(args).items() if k in index}


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    base = load_yaml(args.config) if args.config else {}
    return build_config(merge(base, overrides_from(args)))


def run(args: argparse.Namespace) -> int:
    try:
        cfg = config_from_args(args)
        launch = check_launch(cfg)  # the same checks as the studio's Check config and Launch
    except StudioError as exc:
        return _config_error(exc)
    if args.check:
        return check(cfg, launch)
    if cfg.launch.is_ray:
        return ray_train(cfg, args.attach_run)
    if cfg.run.num_processes > 1 and "LOCAL_RANK" not in os.environ:
        return _relaunch(cfg.run.num_processes, getattr(args, "argv", None))
    return train_run(cfg, args.attach_run)


def ray_train(cfg: TrainConfig, attach_run: int | None) -> int:
    """``--launcher ray``: queue the run (or a new attempt of the one the resumed checkpoint came
    from), submit its Ray job, print the job's log until the run ends. Exit codes as a local run's
    (0 finished, 143 aborted), 1 when it failed."""
    from trainer.run.ray_launch import follow, queue_run, resolved, submit_run
    from trainer.rundb import Owner, RunStore

    if attach_run is not None:
        return _config_error(
            StudioError("--attach_run with launcher ray: the studio submits its Ray runs itself")
        )
    cfg = resolved(cfg)
    me = Owner.current()
    run_id = None
    try:
        with RunStore(cfg.run.db) as store:
            run_id = queue_run(store, cfg, me)
            submitted = submit_run(store, cfg, run_id, me)
            print(f"run {run_id}: Ray job {submitted.job_id} on {submitted.address}", flush=True)
            status = follow(store, submitted)
            run = store.get_run(run_id)
    except StudioError as exc:
        print(f"vgrpo train: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # the second Ctrl-C: leave; the run goes on stopping on the cluster
        print(f"\nvgrpo train: left run {run_id}; its job still stops it and saves", file=sys.stderr)
        return EXIT_ABORTED
    why = run.error or run.end_reason
    print(f"run {run_id}: {status}" + (f": {why}" if why else ""))
    return {"finished": EXIT_OK, "aborted": EXIT_ABORTED}.get(status, 1)


def _relaunch(num_processes: int, argv: list[str] | None) -> int:
    """``accelerate launch`` of the same command over ``num_processes`` (``LOCAL_RANK`` is set by
    every torch.distributed launcher, so a launched rank never gets here).

    Run as a program (``argv`` None: the arguments are ``sys.argv``), the process is replaced by the
    launcher: its pid, signals and exit code are the launcher's. Called in-process with ``argv``
    (a script, a test), the launcher is a child whose exit code is returned: replacing the
    caller's interpreter would end the caller."""
    from trainer.run.launch import training_command

    args = sys.argv[1:] if argv is None else argv
    args = args if args[:1] == ["train"] else ["train", *args]  # python -m trainer.train
    cmd = training_command(sys.executable, num_processes, ["-m", "trainer.cli", *args])
    if argv is not None:
        return subprocess.run(cmd, check=False).returncode
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(cmd[0], cmd)
    raise AssertionError("unreachable: execv returns only by raising")


def _config_error(exc: StudioError) -> int:
    print(f"vgrpo: config error: {exc}", file=sys.stderr)
    return EXIT_CONFIG_ERROR


def check(cfg: TrainConfig, launch: LaunchCheck) -> int:
    """Print the pre-flight; 0 when the run can learn, 3 when it warns, 2 when it cannot sample."""
    try:
        report = run_preflight(cfg, launch=launch)
    except StudioError as exc:
        # The model would not load (trainer.model.hub words why, as the studio's Check shows it):
        # a config that names a model the run cannot use is a config error, not a crash.
        return _config_error(exc)
    print(format_report(report))
    return EXIT_OK if report.can_learn else EXIT_WARNINGS


def train_run(cfg: TrainConfig, attach_run: int | None) -> int:
    if attach_run is not None:
        _refuse_second_owner(cfg, attach_run)
    from trainer.run.loop import train  # torch and transformers: only once we know we will train
    from trainer.rundb import RunAborted

    bar = _progress_bar(cfg.run.max_train_seconds)
    try:
        try:
            outcome = train(cfg, progress=bar, attach_run_id=attach_run)
            bar.finish(outcome.steps)  # a run a limit ended early: 32/32, not 32/1000000
        finally:
            bar.close()
    except RunAborted as exc:
        # An ending the user asked for, recorded in the run database: one last line, not a
        # traceback (the studio shows the log's tail under the run).
        print(f"vgrpo train: aborted: {exc}", file=sys.stderr)
        return EXIT_ABORTED
    if outcome.eval is not None:
        print(
            f"eval: accuracy {outcome.eval.accuracy:.3f}, format {outcome.eval.format_rate:.3f} "
            f"on {outcome.eval.num_records} records"
        )
    print(f"run {outcome.run_id}: {outcome.steps} steps, checkpoint {outcome.final_checkpoint}")
    return 0


def _refuse_second_owner(cfg: Any, run_id: int) -> None:
    """Fail fast, before anything is loaded or written, when a live trainer holds the run."""
    from pathlib import Path

    from trainer.core.paths import default_db_url
    from trainer.rundb import RunStore

    workspace = Path(cfg.data.workspace) if cfg.data.workspace else None
    with RunStore(cfg.run.db or default_db_url(workspace)) as store:
        store.refuse_live_owner(run_id)


def budget_steps(step: int, first_step: int, train_s: float, budget_s: float, planned: int) -> int:
    """The steps a run will have taken when its time budget ``budget_s`` runs out, at this attempt's
    pace so far: the ``first_step - 1`` it resumed after, plus its ``step - first_step + 1`` steps in
    ``train_s`` seconds scaled to the budget; at least ``step``, at most the ``planned`` steps.

    Step 12 of a fresh run after 20 s of a 60 s budget: 12 x 60 / 20 = 36 steps."""
    if train_s <= 0:
        return planned
    estimate = first_step - 1 + math.ceil((step - first_step + 1) * budget_s / train_s)
    return max(step, min(planned, estimate))


class _progress_bar:  # noqa: N801 - reads as a function at the call site
    """A tqdm bar showing reward, accuracy and KL, created on the first step (when the total is known).

    With a time budget (``budget_s``, max_train_seconds) the total is the steps the budget holds at
    the pace so far (:func:`budget_steps`), so the bar's ETA is about the budget left rather than
    the pace times the planned steps (max_steps 1,000,000 made it days)."""

    def __init__(self, budget_s: float = 0.0) -> None:
        self._bar: Any = None
        self._budget_s = budget_s
        self._first_step = 1

    def __call__(self, step: int, total: int, metrics: dict[str, float]) -> None:
        from tqdm import tqdm

        if self._bar is None:
            self._first_step = step
        if self._budget_s and mk.TIME_TRAIN_S in metrics:
            total = budget_steps(step, self._first_step, metrics[mk.TIME_TRAIN_S], self._budget_s, total)
        if self._bar is None:
            self._bar = tqdm(total=total, initial=step - 1, desc="grpo", unit="step", file=sys.stderr)
        self._bar.total = total
        self._bar.set_postfix(
            reward=f"{metrics.get('grpo/total_reward', 0):.3f}",
            acc=f"{metrics.get('grpo/accuracy_reward', 0):.2f}",
            fmt=f"{metrics.get('grpo/format_reward', 0):.2f}",
            kl=f"{metrics.get('grpo/kl_div', 0):.4f}",
            refresh=False,
        )
        self._bar.update(1)

    def finish(self, steps: int) -> None:
        """The run is done after ``steps`` (fewer than planned when a limit ended it): the bar's end."""
        if self._bar is not None:
            self._bar.total = steps
            self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train",
        help="run GRPO training",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_flags(parser)
    parser.set_defaults(func=run)

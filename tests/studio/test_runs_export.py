"""The Runs tab's export writes exactly what `vgrpo runs export` writes for the same run."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from studio.context import StudioContext
from studio.tabs.runs import export_file_name, export_runs
from trainer.cli import main as vgrpo
from trainer.rundb import Rollout
from trainer.rundb.export import FORMATS, WHATS


@pytest.fixture
def run_id(ctx: StudioContext) -> int:
    run = ctx.store.create_run("motion grpo/α")  # a name that is not a safe file name
    ctx.store.log_metrics(run.id, 1, {"reward/total": 0.25, "grpo/kl_div": math.nan}, wall_time=10.0)
    ctx.store.log_metrics(run.id, 2, {"reward/total": 0.75, "grpo/kl_div": 0.01}, wall_time=11.5)
    ctx.store.log_rollouts(
        run.id,
        [
            Rollout(1, "q1", g, "Which way?", f"<answer>({letter})</answer>", {"A": "left", "B": "ri,ght"},
                    "/v/q1.mp4", "B", None, f"({letter})", 1.0, float(letter == "B"), 1.0, 0.5 - g)
            for g, letter in enumerate("AB")
        ],
    )  # fmt: skip
    return run.id


@pytest.mark.parametrize("what", WHATS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_downloaded_file_equals_the_cli_export(
    ctx: StudioContext, run_id: int, tmp_path: Path, what, fmt
) -> None:
    (downloaded,) = export_runs(ctx, [run_id], what, fmt)
    assert downloaded.parent == ctx.workspace / "exports"
    assert downloaded.name == f"run-{run_id}-motion_grpo-{what}.{fmt}"
    by_cli = tmp_path / f"cli.{fmt}"
    argv = [
        "runs",
        "export",
        str(run_id),
        "--format",
        fmt,
        "--what",
        what,
        "-o",
        str(by_cli),
        "--db",
        ctx.db_url,
    ]
    assert vgrpo(argv) == 0
    assert downloaded.read_bytes() == by_cli.read_bytes()
    assert len(downloaded.read_bytes()) > 100  # rows, not just a header


def test_csv_export_holds_every_point(ctx: StudioContext, run_id: int) -> None:
    (path,) = export_runs(ctx, [run_id], "metrics", "csv")
    lines = path.read_text().splitlines()
    assert lines[0] == "step,name,value,wall_time,attempt"
    # Written without a trainer's lease here, so no attempt (an empty column).
    assert lines[1:] == ["1,grpo/kl_div,nan,10.0,", "1,reward/total,0.25,10.0,", "2,grpo/kl_div,0.01,11.5,",
                         "2,reward/total,0.75,11.5,"]  # fmt: skip


def test_file_names_are_safe() -> None:
    from trainer.rundb import Run

    assert (
        export_file_name(Run(7, "../../etc", "finished", 0.0), "rollouts", "jsonl")
        == "run-7-etc-rollouts.jsonl"
    )
    assert export_file_name(Run(8, "...", "finished", 0.0), "metrics", "csv") == "run-8-run-metrics.csv"

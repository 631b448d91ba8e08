"""Issue 23 in the studio's tabs: a model registered for evaluation is no training run (not in the
Monitor's or the Runs tab's list, no Resume) yet its evaluations stay in Evaluate; a job and the
evaluations it stored are told apart; the Runs table's duration is the time all attempts trained."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import update

from studio import choices
from studio.context import StudioContext
from studio.eval_compare import base_evaluations
from studio.supervisor import Supervisor
from studio.tabs.evaluate import evaluation_view, job_status, run_choices
from studio.tabs.runs import run_rows
from trainer.core.errors import StudioError
from trainer.eval.checkpoints import checkpoint_row_for
from trainer.rundb import Owner
from trainer.rundb.models import SqlAttempt


def _base_model_evaluated(ctx: StudioContext, tmp_path: Path) -> tuple[int, int, int]:
    """A training run from a base model, and that base model evaluated the way `vgrpo eval --base`
    files it (under a registered model of its own): (run id, model id, evaluation id)."""
    base = str(tmp_path / "tiny-qwen2.5-vl")
    run = ctx.store.create_run("grpo-a", config={"model": {"model_name_or_path": base}})
    ckpt = checkpoint_row_for(ctx.store, base, None)
    evaluation = ctx.store.add_evaluation(ckpt.id, "bench", accuracy=0.5, format_rate=1.0)
    return run.id, ckpt.run_id, evaluation.id


def test_a_registered_model_is_in_evaluate_but_not_in_the_run_lists(ctx: StudioContext, tmp_path) -> None:
    run_id, model_id, evaluation_id = _base_model_evaluated(ctx, tmp_path)
    model = ctx.store.get_run(model_id)
    assert (model.name, model.kind) == ("eval-tiny-qwen2.5-vl", "model")
    supervisor = Supervisor(ctx)
    # The Monitor's run picker and the Runs tab's table (RunsHandlers.on_refresh) read supervisor.runs().
    assert [r.id for r in supervisor.runs()] == [run_id]
    assert [row[0] for row in run_rows(ctx, supervisor.runs())] == [run_id]
    # Evaluate lists it, labelled as a model, with its evaluation; the run's comparison finds it.
    assert run_choices(ctx) == [
        (f"#{model_id} eval-tiny-qwen2.5-vl (model)", model_id),
        (f"#{run_id} grpo-a (queued)", run_id),
    ]
    assert evaluation_view(ctx, model_id).selected == evaluation_id
    assert [e.id for e in base_evaluations(ctx.store, run_id)] == [evaluation_id]
    # Chat may still answer with it.
    assert any(path.endswith("tiny-qwen2.5-vl") for _, path in choices.read_model_choices(ctx.store).items)


def test_resume_refuses_a_registered_model_by_name(ctx: StudioContext, tmp_path) -> None:
    _, model_id, _ = _base_model_evaluated(ctx, tmp_path)
    with pytest.raises(StudioError, match=rf"#{model_id} eval-tiny-qwen2.5-vl is a model registered for"):
        Supervisor(ctx).resume(model_id)
    assert ctx.store.get_run(model_id).status == "finished"


def test_the_job_line_tells_the_job_from_the_evaluations_it_stored(ctx: StudioContext) -> None:
    # The user saw "Evaluation #4 finished" above a headline "Evaluation #8": one was the job.
    run = ctx.store.create_run("r")
    owner = Owner.current()
    for _ in range(3):  # jobs and evaluations are numbered apart
        ctx.store.create_job("evaluate", {"checkpoint": "/m/base", "dataset": "d"}, run_id=run.id)
    job = ctx.store.create_job("evaluate", {"checkpoint": "/m/checkpoint-8", "dataset": "d"}, run_id=run.id)
    ctx.store.claim_job(job.id, owner)
    result = {"accuracy": 0.5, "format_rate": 1.0, "evaluation_id": 8, "evaluation_ids": [6, 7, 8]}
    ctx.store.end_job(job.id, owner, "finished", result=result)
    assert job_status(ctx.store.get_job(job.id)) == (
        f"Evaluation job #{job.id} **finished** · checkpoint-8 on d · `accuracy 0.500 · format rate 1.000`"
        " · stored as evaluations #6, #7, #8"
    )
    single = ctx.store.create_job("evaluate", {"checkpoint": "/m/checkpoint-8", "dataset": "d"})
    ctx.store.claim_job(single.id, owner)
    ctx.store.end_job(single.id, owner, "finished", result={"accuracy": 1.0, "evaluation_id": 9})
    assert job_status(ctx.store.get_job(single.id)).endswith(" · stored as evaluation #9")


def test_the_runs_table_duration_is_the_time_all_attempts_trained(ctx: StudioContext) -> None:
    # The issue: the table showed the last attempt only (2m 40s), `runs show` the sum (3m 57s).
    run = ctx.store.create_run("resumed")
    me = Owner.current()
    for _ in range(2):
        ctx.store.claim_run(run.id, me)
        ctx.store.end_run(run.id, me, "aborted", reason="stopped")
    ctx.store.claim_run(run.id, me)  # the third attempt is still running
    spans = {1: (1000.0, 1077.0), 2: (5000.0, 5160.0), 3: (9000.0, None)}
    with ctx.store.session(write=True) as s:
        for number, (start, end) in spans.items():
            s.execute(
                update(SqlAttempt)
                .where(SqlAttempt.run_id == run.id, SqlAttempt.number == number)
                .values(started_at=start, ended_at=end)
            )
    (row,) = run_rows(ctx, ctx.store.list_runs(), now=9020.0)
    assert row[4] == "4m 17s"  # 77 s + 160 s + 20 s so far, not the 8000 s since the first claim

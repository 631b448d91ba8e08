"""Run kinds (training runs and the models registered for evaluation) and ids that are never reused
(revision 0006), on SQLite and PostgreSQL, including the upgrade of a database at revision 0005."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

from trainer.core.errors import RunDBError
from trainer.rundb import MODEL_RUN, Owner, RunStore, schema


def test_a_registered_model_is_listed_apart_and_cannot_be_trained(store: RunStore) -> None:
    run = store.create_run("grpo-a")
    model = store.create_run("eval-tiny", config={"model": {"model_name_or_path": "/m"}}, kind=MODEL_RUN)
    assert (model.kind, model.status, model.is_model, run.kind, run.is_model) == (
        "model",
        "finished",
        True,
        "train",
        False,
    )
    # The Monitor's and the Runs tab's list (and `vgrpo runs list`) are the training runs.
    assert [r.id for r in store.list_runs()] == [run.id]
    assert [r.id for r in store.list_runs(kind=MODEL_RUN)] == [model.id]
    assert [r.id for r in store.list_runs(kind=None)] == [model.id, run.id]
    assert store.resolve_run("eval-tiny").id == model.id  # `vgrpo eval --run`, `runs show` find it
    with pytest.raises(RunDBError, match=rf"run {model.id} \(eval-tiny\) is a model registered .* resumed"):
        store.request_resume(model.id)
    with pytest.raises(RunDBError, match=rf"run {model.id} \(eval-tiny\) is a model registered .* trained"):
        store.claim_run(model.id, Owner.current())
    assert store.get_run(model.id).status == "finished" and store.attempts(model.id) == []


def test_a_model_is_created_finished_and_kinds_are_checked(store: RunStore) -> None:
    with pytest.raises(RunDBError, match="a registered model is created finished, not 'queued'"):
        store.create_run("m", kind=MODEL_RUN, status="queued")
    with pytest.raises(RunDBError, match="kind 'eval' is not one of"):
        store.create_run("m", kind="eval")
    assert store.list_runs(kind=None) == []


def _run_with_everything(store: RunStore, name: str) -> tuple[int, int, int, int]:
    """A finished run with a checkpoint, an evaluation of it and a finished job: their ids."""
    run = store.create_run(name)
    me = Owner.current()
    store.claim_run(run.id, me)
    ckpt = store.add_checkpoint(run.id, 4, f"/out/{name}/checkpoint-4", {})
    evaluation = store.add_evaluation(ckpt.id, "d", accuracy=0.5, format_rate=1.0)
    job = store.create_job("evaluate", {"checkpoint": ckpt.path}, run_id=run.id, owner=me)
    store.claim_job(job.id, me)
    store.end_job(job.id, me, "finished", result={"evaluation_id": evaluation.id})
    store.end_run(run.id, me, "finished")
    return run.id, ckpt.id, evaluation.id, job.id


def test_ids_are_never_reused_after_a_delete(store: RunStore) -> None:
    # The user saw job #4 ... then, after deleting runs, the next job was #1 again: SQLite gave the
    # new row max(id) + 1 of what was left.
    first = _run_with_everything(store, "first")
    store.delete_run(first[0])
    second = _run_with_everything(store, "second")
    assert all(new > old for new, old in zip(second, first, strict=True)), (first, second)


def _insert_0005_rows(url: str) -> dict[str, int]:
    """A database at revision 0005 as an older version left it: a trained run, a base model
    registered by `vgrpo eval` (a finished run never claimed), a failed run; their rows."""
    engine = schema.make_engine(url)
    schema.upgrade(engine, "0005")
    with engine.begin() as conn:
        for name, status, attempt, started in (
            ("grpo-a", "finished", 1, "10.0"),
            ("eval-tiny-qwen2.5-vl", "finished", 0, "NULL"),
            ("grpo-b", "failed", 1, "20.0"),
        ):
            conn.execute(
                text(
                    "INSERT INTO runs (name, status, created_at, started_at, ended_at, attempt) "
                    f"VALUES ('{name}', '{status}', 1.0, {started}, 30.0, {attempt})"
                )
            )
        ids = {name: rid for rid, name in conn.execute(text("SELECT id, name FROM runs"))}
        trained, model = ids["grpo-a"], ids["eval-tiny-qwen2.5-vl"]
        conn.execute(
            text(
                "INSERT INTO metrics (run_id, step, name, value, wall_time, attempt) "
                f"VALUES ({trained}, 1, 'grpo/kl_div', 0.25, 11.0, 1), "
                f"({trained}, 2, 'grpo/kl_div', 0.5, 12.0, 1)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO attempts (run_id, number, pid, pid_create_time, host, started_at, ended_at, "
                f"status) VALUES ({trained}, 1, 7, 1.0, 'h', 10.0, 30.0, 'finished')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO checkpoints (run_id, step, path, created_at, metrics) "
                f"VALUES ({model}, 0, '/models/tiny-qwen2.5-vl', 1.0, '{{}}')"
            )
        )
        ids["checkpoint"] = conn.execute(text("SELECT id FROM checkpoints")).scalar_one()
        conn.execute(
            text(
                "INSERT INTO evaluations (checkpoint_id, dataset, created_at, accuracy, format_rate, "
                f"results) VALUES ({ids['checkpoint']}, 'bench', 2.0, 0.75, 1.0, '[]')"
            )
        )
        ids["evaluation"] = conn.execute(text("SELECT id FROM evaluations")).scalar_one()
        conn.execute(
            text(
                "INSERT INTO jobs (kind, run_id, status, created_at, params, progress_done) "
                f"VALUES ('evaluate', {model}, 'finished', 2.0, '{{}}', 8)"
            )
        )
        ids["job"] = conn.execute(text("SELECT id FROM jobs")).scalar_one()
    engine.dispose()
    return ids


def test_upgrade_from_0005_keeps_the_data_and_files_registered_models_apart(db_url: str) -> None:
    ids = _insert_0005_rows(db_url)
    trained, model, failed = ids["grpo-a"], ids["eval-tiny-qwen2.5-vl"], ids["grpo-b"]
    with RunStore(db_url) as store:
        assert [(r.id, r.kind) for r in store.list_runs(kind=None)] == [
            (failed, "train"),
            (model, "model"),
            (trained, "train"),
        ]
        assert [r.id for r in store.list_runs()] == [failed, trained]
        # Every row that references a rebuilt table is still there (no cascade from the rebuild).
        assert store.metrics_since(trained)["grpo/kl_div"].values == (0.25, 0.5)
        assert [(a.number, a.status) for a in store.attempts(trained)] == [(1, "finished")]
        (ckpt,) = store.checkpoints(model)
        (evaluation,) = store.evaluations(model)
        (job,) = store.jobs(run_id=model)
        assert (ckpt.id, evaluation.id, evaluation.accuracy) == (ids["checkpoint"], ids["evaluation"], 0.75)
        assert (job.id, job.progress_done) == (ids["job"], 8)
        # The newest run deleted: the next one gets a new id.
        store.delete_run(failed)
        assert store.create_run("grpo-c").id > failed
        if store.url.startswith("sqlite"):
            with store.session() as s:
                assert s.execute(text("PRAGMA foreign_keys")).scalar() == 1  # on again after migrating
                assert s.execute(text("PRAGMA foreign_key_check")).all() == []
    engine = schema.make_engine(db_url)
    try:
        assert schema.current_revision(engine) == schema.head_revision()
        checks = {c["name"] for c in inspect(engine).get_check_constraints("runs")}
        assert "ck_runs_kind" in checks
        if engine.dialect.name == "sqlite":
            with engine.connect() as conn:
                rows = conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))
                tables = {name: sql for name, sql in rows}
            for table in ("runs", "jobs", "checkpoints", "evaluations"):
                assert "AUTOINCREMENT" in tables[table], table
    finally:
        engine.dispose()

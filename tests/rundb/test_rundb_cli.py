"""`vgrpo runs` through trainer.cli.main: list, show, export round trips, delete."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from rundb_helpers import metrics_for, rollouts_for
from sqlalchemy import select, update

from trainer.cli import main
from trainer.core.metrics_keys import KL_DIV
from trainer.rundb import MODEL_RUN, RESUMED_EVENT, Lease, MetricPoint, Owner, RunStore
from trainer.rundb.models import SqlAttempt, SqlEvent, SqlRun


@pytest.fixture
def filled(store: RunStore, tmp_path: Path) -> RunStore:
    out = tmp_path / "outputs" / "motion"
    out.mkdir(parents=True)
    (out / "adapter.bin").write_bytes(b"x")
    done = store.create_run("motion", config={"grpo_beta": 0.1}, output_dir=str(out))
    lease = Lease(done.id, store.claim_run(done.id).attempt, Owner.current())
    for step in (1, 2, 3):
        points = [MetricPoint(step, n, v, 1000.0 + step) for n, v in metrics_for(step).items()]
        store.write_rows(done.id, points, [], lease=lease)
    store.write_rows(done.id, [], rollouts_for(2), lease=lease)
    store.end_run(done.id, Owner.current(), "finished")
    store.create_run("queued-one")
    return store


def test_list_json(filled: RunStore, db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "list", "--json", "--db", db_url]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert [(r["id"], r["name"], r["status"]) for r in runs] == [
        (2, "queued-one", "queued"),
        (1, "motion", "finished"),
    ]
    assert main(["runs", "list", "--json", "--status", "finished", "--db", db_url]) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)] == ["motion"]


def test_list_table(filled: RunStore, db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "list", "--db", db_url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["id", "name", "status", "created", "ended", "reason"]
    assert lines[1].split()[:3] == ["2", "queued-one", "queued"]


def test_show_by_name(filled: RunStore, db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "show", "motion", "--json", "--db", db_url]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["id"], doc["status"], doc["config"]) == (1, "finished", {"grpo_beta": 0.1})
    assert doc["counts"] == {"metrics": 36, "rollouts": 2}
    assert doc["latest_metrics"][KL_DIV] == {"step": 3, "value": 3.01}
    assert main(["runs", "show", "1", "--db", db_url]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "run 1: motion  [finished]"
    assert "36 metric points, 2 rollouts" in out


def test_show_lists_every_attempt_and_the_stop_reason(
    store: RunStore, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run = store.create_run("resumed")
    me = Owner.current()
    store.claim_run(run.id, me)
    store.end_run(run.id, me, "aborted", reason="stopped by SIGTERM after saving a checkpoint")
    store.claim_run(run.id, me)
    store.end_run(run.id, me, "finished")
    assert main(["runs", "show", "resumed", "--json", "--db", db_url]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(a["number"], a["status"], a["pid"]) for a in doc["attempts"]] == [
        (1, "aborted", me.pid),
        (2, "finished", me.pid),
    ]
    assert main(["runs", "show", "resumed", "--db", db_url]) == 0
    out = capsys.readouterr().out
    lines = [line.strip() for line in out.splitlines()]
    assert lines[lines.index("attempts:") + 1].startswith(f"#1   pid {me.pid}@{me.host}")
    assert lines[lines.index("attempts:") + 1].endswith(
        "aborted  stopped by SIGTERM after saving a checkpoint"
    )
    assert lines[lines.index("attempts:") + 2].endswith("finished")
    assert "error" not in out.lower()


def _resumed_twice(store: RunStore) -> int:
    """A run trained in three attempts, the 2nd and 3rd resumed from checkpoints (the trainer's
    "resumed" events), with the times of the issue: 60 s, 90 s and 30 s, hours apart."""
    run = store.create_run("resumed-twice")
    me = Owner.current()
    for number, resumed_from in ((1, None), (2, "/out/r/checkpoint-4"), (3, "/out/r/checkpoint-8")):
        claimed = store.claim_run(run.id, me)
        if resumed_from is not None:
            lease = Lease(run.id, claimed.attempt, me)
            store.add_event(run.id, RESUMED_EVENT, f"from {resumed_from}", lease=lease)
        store.end_run(run.id, me, "aborted" if number < 3 else "finished", reason=f"stop {number}")
    spans = {1: (1000.0, 1060.0), 2: (5000.0, 5090.0), 3: (9000.0, 9030.0)}
    with store.session(write=True) as s:
        for number, (start, end) in spans.items():
            s.execute(
                update(SqlAttempt)
                .where(SqlAttempt.run_id == run.id, SqlAttempt.number == number)
                .values(started_at=start, ended_at=end)
            )
        resumes = s.scalars(select(SqlEvent).where(SqlEvent.kind == RESUMED_EVENT).order_by(SqlEvent.id))
        for event, number in zip(resumes, (2, 3), strict=True):
            event.time = spans[number][0] + 1.0
        s.execute(update(SqlRun).where(SqlRun.id == run.id).values(started_at=9000.0, ended_at=9030.0))
    return run.id


def test_show_sums_the_attempts_and_says_what_each_resumed_from(
    store: RunStore, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The issue: the Runs table said 0m 30s (the last attempt), the Monitor counted the hours
    # between attempts, and `runs show` said "resumed from -" after two resumes.
    run_id = _resumed_twice(store)
    assert main(["runs", "show", str(run_id), "--json", "--db", db_url]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["trained_s"] == pytest.approx(180.0)
    assert [(a["number"], a["resumed_from"]) for a in doc["attempts"]] == [
        (1, None),
        (2, "/out/r/checkpoint-4"),
        (3, "/out/r/checkpoint-8"),
    ]
    assert main(["runs", "show", str(run_id), "--db", db_url]) == 0
    out = capsys.readouterr().out
    lines = [line.strip() for line in out.splitlines()]
    assert "trained for   3m00s" in lines
    first = lines.index("attempts:") + 1
    assert lines[first].endswith("1m00s  from scratch  aborted  stop 1")
    assert lines[first + 1].endswith("1m30s  resumed from /out/r/checkpoint-4  aborted  stop 2")
    assert lines[first + 2].endswith("0m30s  resumed from /out/r/checkpoint-8  finished  stop 3")
    assert "resumed from -" not in out and "forked from" not in out


def test_list_leaves_registered_models_out_unless_asked(
    filled: RunStore, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    model = filled.create_run("eval-tiny-qwen2.5-vl", kind=MODEL_RUN)
    assert main(["runs", "list", "--json", "--db", db_url]) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)] == ["queued-one", "motion"]
    assert main(["runs", "list", "--json", "--kind", "model", "--db", db_url]) == 0
    assert [(r["id"], r["kind"]) for r in json.loads(capsys.readouterr().out)] == [(model.id, "model")]
    assert main(["runs", "list", "--json", "--kind", "all", "--db", db_url]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3
    assert main(["runs", "show", "eval-tiny-qwen2.5-vl", "--db", db_url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert (
        lines[0] == f"run {model.id}: eval-tiny-qwen2.5-vl  [finished]  (a model registered for evaluation)"
    )
    assert "  trained for   -" in lines


def test_unknown_run_is_one_line_error(
    filled: RunStore, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["runs", "show", "nope", "--db", db_url]) == 1
    assert capsys.readouterr().err == f"vgrpo: error: no run with id or name 'nope' in {db_url}\n"


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_export_metrics_round_trip(filled: RunStore, db_url: str, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"m.{fmt}"
    assert main(["runs", "export", "motion", "--format", fmt, "-o", str(out), "--db", db_url]) == 0
    read = {"csv": pd.read_csv, "jsonl": lambda p: pd.read_json(p, lines=True), "parquet": pd.read_parquet}[
        fmt
    ]
    frame = read(out)
    expected = pd.DataFrame([p.__dict__ for p in filled.metric_points(1)])
    assert list(frame.columns) == ["step", "name", "value", "wall_time", "attempt"]
    assert len(frame) == 36
    pd.testing.assert_frame_equal(frame, expected, check_dtype=False)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_export_rollouts_round_trip(filled: RunStore, db_url: str, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"r.{fmt}"
    assert (
        main(["runs", "export", "1", "--format", fmt, "--what", "rollouts", "-o", str(out), "--db", db_url])
        == 0
    )
    if fmt == "csv":
        with out.open(newline="") as f:
            rows = list(csv.DictReader(f))
        options = [json.loads(r["options"]) for r in rows]
        completions = [r["completion"] for r in rows]
    elif fmt == "jsonl":
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        options = [r["options"] for r in rows]
        completions = [r["completion"] for r in rows]
        assert rows[1]["advantage"] == 0.5
    else:
        table = pq.read_table(out).to_pylist()
        options = [json.loads(r["options"]) for r in table]
        completions = [r["completion"] for r in table]
        assert [r["total_reward"] for r in table] == [0.3, 1.0]
    expected = rollouts_for(2)
    assert options == [dict(r.options) for r in expected]
    assert completions == [r.completion for r in expected]


def test_export_csv_to_stdout(filled: RunStore, db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "export", "motion", "--format", "csv", "--db", db_url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "step,name,value,wall_time,attempt"
    assert lines[1].endswith(",1")  # written by attempt 1
    assert len(lines) == 37


def test_export_parquet_needs_output(
    filled: RunStore, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["runs", "export", "motion", "--format", "parquet", "--db", db_url]) == 1
    assert "give -o FILE" in capsys.readouterr().err


def test_delete_asks_and_no_keeps_everything(
    filled: RunStore, db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    assert main(["runs", "delete", "motion", "--db", db_url]) == 1
    assert capsys.readouterr().out == "nothing deleted\n"
    assert filled.count_rows(1) == {"metrics": 36, "rollouts": 2}


def test_delete_yes_with_files(filled: RunStore, db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = Path(filled.get_run(1).output_dir)  # type: ignore[arg-type]
    assert main(["runs", "delete", "motion", "--yes", "--files", "--db", db_url]) == 0
    assert capsys.readouterr().out == (
        f"deleted run 1 (motion): 36 metric points, 2 rollouts, and the directory {out_dir}\n"
    )
    assert not out_dir.exists()
    assert [r.name for r in filled.list_runs()] == ["queued-one"]


def test_delete_without_files_keeps_output_dir(
    filled: RunStore, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("builtins.input", lambda prompt: "yes")
    out_dir = Path(filled.get_run(1).output_dir)  # type: ignore[arg-type]
    assert main(["runs", "delete", "1", "--db", db_url]) == 0
    assert (out_dir / "adapter.bin").read_bytes() == b"x"
    assert filled.count_rows(1) == {"metrics": 0, "rollouts": 0}


def test_delete_refuses_a_running_run(
    store: RunStore, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run = store.create_run("live")
    store.claim_run(run.id)
    assert main(["runs", "delete", "live", "--yes", "--db", db_url]) == 1
    assert "is running; abort it before deleting it" in capsys.readouterr().err
    assert store.get_run(run.id).status == "running"

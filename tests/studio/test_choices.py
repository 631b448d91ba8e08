"""What the pickers offer: pure builders on hand-made entities, and the readers on a real temp run DB
with checkpoint folders on disk (one of them removed, as save_total_limit does)."""

from __future__ import annotations

import shutil
from pathlib import Path

from studio import choices
from studio.chat_engine import TINY_LABEL
from studio.context import StudioContext
from trainer.data import DatasetEntry, register_dataset
from trainer.rundb import Checkpoint, Run

TINY = "/models/tiny"


def run(run_id: int, name: str, status: str = "finished") -> Run:
    return Run(id=run_id, name=name, status=status, created_at=0.0)


def ckpt(run_id: int, step: int, path: str) -> Checkpoint:
    return Checkpoint(id=step, run_id=run_id, step=step, path=path, created_at=0.0, metrics={})


def test_offered_checkpoints_drop_those_whose_folder_is_gone() -> None:
    stored = [ckpt(1, 10, "/out/checkpoint-10"), ckpt(1, 20, "/out/checkpoint-20"), ckpt(1, 30, "/out/c-30")]
    on_disk = {"/out/checkpoint-20", "/out/c-30"}
    assert [c.step for c in choices.offered_checkpoints(stored, on_disk.__contains__)] == [20, 30]
    assert choices.offered_checkpoints(stored, lambda path: False) == []


def test_model_choices_put_tiny_first_then_each_runs_checkpoints_newest_first_and_its_base() -> None:
    second = choices.RunModels(
        run(2, "second"),
        [ckpt(2, 5, "/out/second/checkpoint-5"), ckpt(2, 10, "/out/second/checkpoint-10")],
        base_model="/models/base",
        gone=frozenset({"/out/second/checkpoint-1"}),
    )
    # The first run's base model is the tiny model: listed once, as the tiny model.
    first = choices.RunModels(run(1, "first"), [ckpt(1, 10, "/out/first/checkpoint-10")], base_model=TINY)
    offered = choices.model_choices([second, first], TINY)
    assert offered.items == [
        (TINY_LABEL, TINY),
        ("second · step 10", "/out/second/checkpoint-10"),
        ("second · step 5", "/out/second/checkpoint-5"),
        ("second · base model", "/models/base"),
        ("first · step 10", "/out/first/checkpoint-10"),
    ]
    assert offered.hidden == frozenset({"/out/second/checkpoint-1"})


def test_checkpoint_choices_list_one_run_then_the_tiny_model() -> None:
    stored = [ckpt(3, 10, "/out/checkpoint-10"), ckpt(3, 20, "/out/checkpoint-20")]
    models = choices.RunModels(run(3, "grpo-x"), stored, "/models/base")
    assert choices.checkpoint_choices(models, TINY).items == [
        ("grpo-x · step 20", "/out/checkpoint-20"),
        ("grpo-x · step 10", "/out/checkpoint-10"),
        ("grpo-x · base model", "/models/base"),
        (TINY_LABEL, TINY),
    ]
    assert choices.checkpoint_choices(None, TINY).items == [(TINY_LABEL, TINY)]


def test_keep_replaces_a_gone_pick_but_keeps_a_typed_one() -> None:
    offered = choices.Choices([("tiny", TINY), ("r · step 20", "/out/c-20")], frozenset({"/out/c-10"}))
    assert offered.keep("/out/c-20") == "/out/c-20"
    assert offered.keep("/out/c-10") == TINY  # deleted by save_total_limit: never kept
    assert offered.keep("/out/c-10", default="/out/c-20") == "/out/c-20"
    assert offered.keep("/out/c-10", default="/not/offered") == TINY
    assert offered.keep("Qwen/Qwen2.5-VL-3B-Instruct") == "Qwen/Qwen2.5-VL-3B-Instruct"  # typed hub id
    assert offered.keep(None) == TINY and offered.keep("") == TINY
    assert choices.Choices([]).keep(None) is None


def test_dataset_rows_and_run_labels() -> None:
    entries = [
        DatasetEntry("synthetic_motion", Path("/a/train.jsonl"), Path("/a"), "think", builtin=True),
        DatasetEntry("mine_no_think", Path("/ws/datasets/mine/x.csv"), Path("/ws/datasets/mine"), "no_think"),
    ]
    assert choices.dataset_names(entries) == ["synthetic_motion", "mine_no_think"]
    assert choices.registry_rows(entries) == [
        ["synthetic_motion", "think", "built in", "/a/train.jsonl"],
        ["mine_no_think", "no_think", "uploaded", "/ws/datasets/mine/x.csv"],
    ]
    assert choices.run_choices([run(4, "b", "running"), run(3, "a", "aborted")]) == [
        ("#4 b (running)", 4),
        ("#3 a (aborted)", 3),
    ]


def test_readers_see_the_db_and_the_disk_as_they_are_now(ctx: StudioContext, tmp_path: Path) -> None:
    out = ctx.runs_dir / "grpo-x"
    r = ctx.store.create_run("grpo-x", config={"model": {"model_name_or_path": "/models/base"}})
    for step in (10, 20, 30):
        (out / f"checkpoint-{step}").mkdir(parents=True)
        ctx.store.add_checkpoint(r.id, step, str(out / f"checkpoint-{step}"), {})
    shutil.rmtree(out / "checkpoint-10")  # what save_total_limit does; the row stays
    offered = choices.read_checkpoint_choices(ctx.store, r.id, TINY)
    assert offered.values == [str(out / "checkpoint-30"), str(out / "checkpoint-20"), "/models/base", TINY]
    assert offered.hidden == frozenset({str(out / "checkpoint-10")})
    assert offered.keep(str(out / "checkpoint-10")) == str(out / "checkpoint-30")
    chat = choices.read_model_choices(ctx.store, TINY)
    assert chat.values == [TINY, str(out / "checkpoint-30"), str(out / "checkpoint-20"), "/models/base"]
    assert chat.hidden == offered.hidden

    # A dataset registered after the studio started is read from datasets.json now.
    before = choices.dataset_names(choices.read_datasets(ctx.workspace))
    annotation = tmp_path / "late" / "late.jsonl"
    annotation.parent.mkdir()
    annotation.write_text("")
    register_dataset("late_ds", annotation, ctx.workspace)
    assert choices.dataset_names(choices.read_datasets(ctx.workspace)) == [*before, "late_ds"]

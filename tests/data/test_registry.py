"""The dataset registry: built-ins, user entries in <workspace>/datasets.json, dataset_use specs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from trainer.core.errors import DataError
from trainer.data import registry
from trainer.data.prompts import NO_THINK, THINK
from trainer.data.registry import (
    BUILTIN_FILES,
    builtin_entries,
    get_dataset,
    list_datasets,
    load_dataset_use,
    register_dataset,
    resolve_dataset_use,
    sample_percent,
    unregister_dataset,
    validate_entry,
)
from trainer.data.validate import validate_file


@pytest.fixture
def ten(tmp_path: Path, write_jsonl: Any, seed_record: Any) -> Path:
    """Ten good records (schema-only use: no videos needed) plus one bad one."""
    data = tmp_path / "data"
    data.mkdir()
    rows = [seed_record(video=f"videos/{i}.mp4", rid=f"q{i}") for i in range(10)]
    rows.append(seed_record(letter="F", rid="q_bad"))
    return write_jsonl(data / "ten.jsonl", rows)


def test_builtin_entries_point_at_the_synthetic_dataset(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(registry, "SYNTHETIC_DIR", tmp_path / "synthetic_motion")
    entries = builtin_entries()
    assert list(entries) == [
        "synthetic_motion_train",
        "synthetic_motion_eval",
        "synthetic_motion_no_think_train",
        "synthetic_motion_no_think_eval",
        "synthetic_motion_image_train",
        "synthetic_motion_image_eval",
        "synthetic_motion_numerical_train",
        "synthetic_motion_numerical_eval",
        "synthetic_motion_numerical_no_think_train",
        "synthetic_motion_numerical_no_think_eval",
    ]
    e = entries["synthetic_motion_no_think_eval"]
    assert (e.annotation_path, e.video_root, e.mode, e.builtin) == (
        tmp_path / "synthetic_motion" / "eval_no_think.jsonl",
        tmp_path / "synthetic_motion",
        NO_THINK,
        True,
    )
    assert entries["synthetic_motion_image_train"].mode == THINK
    assert entries["synthetic_motion_numerical_eval"].mode == THINK
    assert entries["synthetic_motion_numerical_no_think_train"].annotation_path == (
        tmp_path / "synthetic_motion" / "train_numerical_no_think.jsonl"
    )
    assert entries["synthetic_motion_numerical_no_think_train"].mode == NO_THINK


def test_register_list_get_unregister(tmp_path: Path, ten: Path) -> None:
    ws = tmp_path / "ws"
    entry = register_dataset("mine", ten, ws)
    assert (entry.annotation_path, entry.video_root, entry.mode) == (ten, ten.parent, THINK)
    stored = json.loads((ws / "datasets.json").read_text())
    assert stored == {
        "version": 1,
        "datasets": {"mine": {"annotation": str(ten), "video_root": str(ten.parent), "mode": THINK}},
    }
    register_dataset("mine_no_think", ten, ws, video_root=tmp_path)
    names = [e.name for e in list_datasets(ws)]
    assert names == [*BUILTIN_FILES, "mine", "mine_no_think"]
    assert get_dataset("mine_no_think", ws).mode == NO_THINK
    assert get_dataset("mine_no_think", ws).video_root == tmp_path
    assert unregister_dataset("mine", ws).name == "mine"
    assert [e.name for e in list_datasets(ws)][-1:] == ["mine_no_think"]
    assert ten.exists()  # the annotation file is never deleted


@pytest.mark.parametrize("name", ["a,b", "a%50", "", "with space", "../x"])
def test_bad_names_are_refused(tmp_path: Path, ten: Path, name: str) -> None:
    with pytest.raises(DataError, match="bad dataset name"):
        register_dataset(name, ten, tmp_path / "ws")


def test_register_refusals(tmp_path: Path, ten: Path) -> None:
    ws = tmp_path / "ws"
    with pytest.raises(DataError, match="is built in; choose another"):
        register_dataset("synthetic_motion_train", ten, ws)
    with pytest.raises(DataError, match="annotation file not found"):
        register_dataset("x", tmp_path / "nope.jsonl", ws)
    with pytest.raises(DataError, match="video root is not a folder"):
        register_dataset("x", ten, ws, video_root=tmp_path / "nope")
    register_dataset("x", ten, ws)
    with pytest.raises(DataError, match="'x' is already registered"):
        register_dataset("x", ten, ws, mode=NO_THINK)
    assert register_dataset("x", ten, ws, mode=NO_THINK, overwrite=True).mode == NO_THINK
    with pytest.raises(DataError, match="'nope' is not registered"):
        unregister_dataset("nope", ws)
    with pytest.raises(DataError, match="built in and cannot be unregistered"):
        unregister_dataset("synthetic_motion_eval", ws)


def test_a_crash_while_writing_keeps_the_old_registry(
    tmp_path: Path, ten: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = tmp_path / "ws"
    register_dataset("kept", ten, ws)
    before = (ws / "datasets.json").read_text()

    def crash(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt  # e.g. Ctrl-C halfway through the write

    monkeypatch.setattr(registry.json, "dump", crash)
    with pytest.raises(KeyboardInterrupt):
        register_dataset("lost", ten, ws)
    assert (ws / "datasets.json").read_text() == before
    assert sorted(p.name for p in ws.iterdir()) == [".datasets.json.lock", "datasets.json"]


def test_corrupt_registry_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "datasets.json").write_text("{not json")
    with pytest.raises(DataError, match=f"dataset registry {tmp_path / 'datasets.json'} is unreadable"):
        list_datasets(tmp_path)


def test_resolve_dataset_use(tmp_path: Path, ten: Path) -> None:
    ws = tmp_path / "ws"
    register_dataset("mine", ten, ws)
    resolved = resolve_dataset_use(f"mine, synthetic_motion_eval%50,{ten}%12.5", ws)
    assert [(e.name, p) for e, p in resolved] == [
        ("mine", 100.0),
        ("synthetic_motion_eval", 50.0),
        ("ten", 12.5),
    ]
    path_entry = resolved[2][0]
    assert (path_entry.annotation_path, path_entry.video_root, path_entry.mode) == (ten, ten.parent, None)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nope", "unknown dataset 'nope' in dataset_use 'nope'; known: synthetic_motion_train, "),
        (" , ", "empty dataset_use"),
        ("mine%0", "expected NAME%P with 0 < P <= 100"),
        ("mine%150", "expected NAME%P with 0 < P <= 100"),
        ("mine%half", "'half' is not a percentage"),
        ("missing.jsonl", "annotation file not found"),
    ],
)
def test_resolve_dataset_use_errors(tmp_path: Path, ten: Path, spec: str, message: str) -> None:
    register_dataset("mine", ten, tmp_path / "ws")
    with pytest.raises(DataError) as info:
        resolve_dataset_use(spec, tmp_path / "ws")
    assert message in str(info.value)
    if spec == "nope":
        assert str(info.value).endswith("synthetic_motion_numerical_no_think_eval, mine")


def test_load_dataset_use_samples_with_the_seed(
    tmp_path: Path, ten: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ws = tmp_path / "ws"
    register_dataset("mine", ten, ws)
    with caplog.at_level("WARNING", logger="trainer.data.registry"):
        full = load_dataset_use("mine", ws, seed=0, schema_only=True)
    assert [r.id for r in full] == [f"q{i}" for i in range(10)]
    assert "dataset mine: skipped 1 bad records of 11" in caplog.text
    half = load_dataset_use("mine%50", ws, seed=1, schema_only=True)
    assert len(half) == 5
    assert [r.index for r in half] == sorted(r.index for r in half)  # file order kept
    assert load_dataset_use("mine%50", ws, seed=1, schema_only=True) == half
    seeds = {tuple(r.id for r in load_dataset_use("mine%50", ws, seed=s, schema_only=True)) for s in range(5)}
    assert len(seeds) > 1
    both = load_dataset_use("mine,mine%30", ws, seed=3, schema_only=True)
    assert len(both) == 13


def test_sample_percent_counts() -> None:
    items: list[Any] = list(range(7))
    assert sample_percent(items, 100, 0, "x") == items
    assert len(sample_percent(items, 50, 0, "x")) == 3  # floor(3.5)
    assert len(sample_percent(items, 1, 0, "x")) == 1  # never empty


def test_load_dataset_use_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write_jsonl: Any, seed_record: Any
) -> None:
    monkeypatch.setattr(registry, "SYNTHETIC_DIR", tmp_path / "absent")
    with pytest.raises(DataError, match="run scripts/make_synthetic_dataset.py"):
        load_dataset_use("synthetic_motion_train", tmp_path, seed=0)
    bad = write_jsonl(tmp_path / "bad.jsonl", [seed_record(letter="Z")])
    with pytest.raises(DataError, match="dataset bad: none of 1 records is usable"):
        load_dataset_use(str(bad), tmp_path, seed=0, schema_only=True)


def test_builtin_no_think_mode_comes_from_the_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, put_video: Any, write_jsonl: Any, seed_record: Any
) -> None:
    monkeypatch.setattr(registry, "SYNTHETIC_DIR", tmp_path)
    put_video("videos/a.mp4")
    write_jsonl(tmp_path / "train_no_think.jsonl", [seed_record(think=True)])
    write_jsonl(tmp_path / "train.jsonl", [seed_record(think=False)])
    (r,) = load_dataset_use("synthetic_motion_no_think_train", tmp_path / "ws", seed=0)
    assert (r.mode, r.video) == (NO_THINK, str(tmp_path / "videos/a.mp4"))
    (r,) = load_dataset_use("synthetic_motion_train", tmp_path / "ws", seed=0)
    assert r.mode == THINK


def test_builtin_synthetic_dataset_loads(synthetic_dir: Path, tmp_path: Path) -> None:
    spec = "synthetic_motion_eval,synthetic_motion_no_think_eval%50,synthetic_motion_image_eval%10"
    records = load_dataset_use(spec, tmp_path, seed=0, check_videos=False)
    assert len(records) == 200 + 100 + 20
    think, no_think, image = records[:200], records[200:300], records[300:]
    assert {r.mode for r in think} == {THINK} and {r.mode for r in no_think} == {NO_THINK}
    assert all(r.video is not None and r.video.startswith(str(synthetic_dir / "videos")) for r in think)
    assert all(r.image is not None and r.video is None for r in image)
    assert {len(r.options) for r in records} == {4}


@pytest.fixture
def with_bad_videos(tmp_path: Path, put_video: Any, write_jsonl: Any, seed_record: Any) -> Path:
    """Three usable records and two whose videos exist but are bad: corrupt (line 2), empty (line 4)."""
    data = tmp_path / "mixed"
    put_video("mixed/videos/a.mp4")
    (data / "videos" / "x.mp4").write_bytes(b"\x00garbage, not a video" * 50)
    (data / "videos" / "empty.mp4").touch()
    rows = [
        seed_record(rid="q_good"),
        seed_record(video="videos/x.mp4", rid="q_corrupt"),
        seed_record(rid="q_good2"),
        seed_record(video="videos/empty.mp4", rid="q_empty"),
        seed_record(rid="q_good3"),
    ]
    return write_jsonl(data / "mixed.jsonl", rows)


def _register_checked(name: str, annotation: Path, ws: Path) -> registry.DatasetEntry:
    """As the Datasets tab and `vgrpo data register` do: validate (decoding), then register."""
    return register_dataset(name, annotation, ws, report=validate_file(annotation))


def test_a_registered_dataset_never_yields_what_its_validation_rejected(
    tmp_path: Path, with_bad_videos: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 23: registered as 3 usable records, then Check and Evaluate (which only check that
    videos exist) read the corrupt video's record too and failed on it."""
    ws = tmp_path / "ws"
    original = with_bad_videos.read_bytes()
    entry = _register_checked("mixed", with_bad_videos, ws)
    assert [(r.index, r.record_id) for r in entry.rejected] == [(2, "q_corrupt"), (4, "q_empty")]
    stored = json.loads((ws / "datasets.json").read_text())["datasets"]["mixed"]
    assert stored["sha256"] == registry.file_sha256(with_bad_videos)
    assert [r["record_id"] for r in stored["rejected"]] == ["q_corrupt", "q_empty"]
    assert (
        stored["rejected"][1]["reason"]
        == f"empty file (0 bytes): {with_bad_videos.parent / 'videos/empty.mp4'}"
    )

    usable = ["q_good", "q_good2", "q_good3"]
    for check_videos in (False, True):  # Check / evaluation, and training
        with caplog.at_level("WARNING", logger="trainer.data.registry"):
            records = load_dataset_use("mixed", ws, seed=0, check_videos=check_videos)
        assert [r.id for r in records] == usable
    assert "dataset mixed: skipped 2 bad records of 5" in caplog.text
    report = validate_entry(get_dataset("mixed", ws), check_videos=False)  # the tab's preview
    assert (report.valid, [e.record_id for e in report.errors]) == (3, ["q_corrupt", "q_empty"])
    assert report.errors[0].reason.startswith("undecodable video: cannot decode video")
    assert with_bad_videos.read_bytes() == original  # the user's file is never rewritten


def test_evaluation_of_a_registered_dataset_leaves_its_rejected_records_out(
    tmp_path: Path, with_bad_videos: Path
) -> None:
    from trainer.eval.benchmark_data import load_benchmark

    ws = tmp_path / "ws"
    _register_checked("mixed", with_bad_videos, ws)
    bench = load_benchmark("mixed", ws)
    assert [item.record.id for item in bench.items] == ["q_good", "q_good2", "q_good3"]
    assert bench.invalid == 2


@pytest.mark.parametrize("how", ["file changed", "registered without a report", "schema-only report"])
def test_an_unverified_registration_decodes_every_video_again(
    tmp_path: Path, with_bad_videos: Path, seed_record: Any, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    """The stored verdicts hold only for the file they were made on: after an edit (or without a
    report at all) even a read that would only check existence decodes, so nothing bad slips in."""
    ws = tmp_path / "ws"
    if how == "file changed":
        _register_checked("mixed", with_bad_videos, ws)
        with with_bad_videos.open("a") as f:  # one more record on the corrupt video, line 6
            f.write(json.dumps(seed_record(video="videos/x.mp4", rid="q_corrupt2")) + "\n")
    elif how == "schema-only report":  # `vgrpo data register --schema-only`: videos never looked at
        register_dataset(
            "mixed", with_bad_videos, ws, report=validate_file(with_bad_videos, schema_only=True)
        )
    else:
        register_dataset("mixed", with_bad_videos, ws)
    with caplog.at_level("WARNING", logger="trainer.data.registry"):
        records = load_dataset_use("mixed", ws, seed=0, check_videos=False)
    assert [r.id for r in records] == ["q_good", "q_good2", "q_good3"]
    said = (
        "changed since it was registered"
        if how == "file changed"
        else "was registered without its videos checked"
    )
    assert f"dataset mixed: {with_bad_videos} {said}; decoding every video" in caplog.text


def test_register_with_a_report_refuses_a_file_with_no_usable_record(
    tmp_path: Path, write_jsonl: Any, seed_record: Any
) -> None:
    bad = write_jsonl(tmp_path / "bad.jsonl", [seed_record(video="videos/missing.mp4")])
    with pytest.raises(DataError, match="not registering bad: none of the 1 records"):
        register_dataset("bad", bad, tmp_path / "ws", report=validate_file(bad))
    assert not (tmp_path / "ws" / "datasets.json").exists()

"""validate_file: every bad record reported by file, line and id; the good ones still load."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from trainer.core.errors import DataError
from trainer.data.prompts import NO_THINK, THINK
from trainer.data.validate import infer_mode, load_records, validate_file


@pytest.fixture
def mixed(tmp_path: Path, put_video: Any, put_image: Any, write_jsonl: Any, seed_record: Any) -> Path:
    """A JSONL dataset with one of each problem, between good records."""
    put_video("videos/a.mp4")
    (tmp_path / "videos" / "x.mp4").write_bytes(b"\x00garbage, not a video" * 50)
    outside = tmp_path.parent / f"{tmp_path.name}_outside.mp4"
    outside.write_bytes((tmp_path / "videos" / "a.mp4").read_bytes())
    os.symlink(outside, tmp_path / "videos" / "link.mp4")
    put_image("images/a.png")
    no_placeholder = seed_record(rid="q_noph")
    no_placeholder["conversations"][0]["value"] = "Which way?\n(A) left\n(B) right"
    image = {
        "id": "q_img",
        "image": "images/a.png",
        "conversations": [
            {"from": "human", "value": "<image>\nColour?\n(A) red\n(B) blue\n(C) green"},
            {"from": "gpt", "value": "<think>red</think> <answer>(A) red</answer>"},
        ],
    }
    return write_jsonl(
        tmp_path / "mixed.jsonl",
        [
            seed_record(rid="q_good"),  # line 1
            seed_record(video="videos/x.mp4", rid="q_corrupt"),  # line 2
            seed_record(letter="E", rid="q_answer"),  # line 3
            seed_record(video="../../etc/passwd", rid="q_escape"),  # line 4
            '{"id": "q_badjson", "video": "videos/a.mp4", "conversations": [',  # line 5
            seed_record(video="videos/missing.mp4", rid="q_missing"),  # line 6
            seed_record(video="/etc/hostname", rid="q_abs"),  # line 7
            seed_record(video="videos/link.mp4", rid="q_link"),  # line 8
            image,  # line 9
            no_placeholder,  # line 10
            seed_record(rid="q_good2"),  # line 11 (same video as line 1)
        ],
    )


def test_every_bad_record_is_reported(mixed: Path, tmp_path: Path) -> None:
    report = validate_file(mixed)
    assert (report.total, report.valid, report.invalid) == (11, 3, 8)
    assert [r.id for r in report.records] == ["q_good", "q_img", "q_good2"]
    errors = {e.index: e for e in report.errors}
    assert sorted(errors) == [2, 3, 4, 5, 6, 7, 8, 10]
    assert all(e.source == str(mixed) and e.unit == "line" for e in report.errors)
    assert errors[2].record_id == "q_corrupt"
    assert errors[2].reason.startswith(f"undecodable video: cannot decode video {tmp_path / 'videos/x.mp4'}")
    assert str(errors[3]) == f'{mixed} line 3 (q_answer): answer "E" not in A-D'
    assert errors[4].reason == f"path '../../etc/passwd' escapes the video root {tmp_path}"
    # Bad JSON has no id to show, so the line names it.
    assert (errors[5].record_id, errors[5].reason.split(":")[0]) == ("mixed:5", "bad JSON")
    assert errors[6].reason == f"video not found: {tmp_path / 'videos/missing.mp4'}"
    assert errors[7].reason == f"path '/etc/hostname' escapes the video root {tmp_path}"
    assert errors[8].reason == f"path 'videos/link.mp4' escapes the video root {tmp_path}"
    assert errors[10].reason == "human turn has no <video> placeholder"
    assert report.option_counts == {4: 2, 3: 1}
    # a.mp4 is used twice but counted once; 16 frames at 8 fps.
    assert report.durations is not None
    assert report.durations.count == 1
    assert report.durations.min_s == pytest.approx(2.0, abs=1e-6)
    assert report.durations.max_s == pytest.approx(2.0, abs=1e-6)
    assert report.mode == THINK


def test_schema_only_skips_media_but_not_the_root_check(mixed: Path) -> None:
    report = validate_file(mixed, schema_only=True)
    assert sorted(e.index for e in report.errors) == [3, 4, 5, 7, 8, 10]
    assert report.valid == 5
    assert report.durations is None


def test_without_decoding_only_existence_is_checked(mixed: Path) -> None:
    report = validate_file(mixed, check_videos=False)
    # The corrupt x.mp4 exists, so only decoding would catch it.
    assert sorted(e.index for e in report.errors) == [3, 4, 5, 6, 7, 8, 10]
    assert report.durations is None


def test_report_dict_and_text(mixed: Path) -> None:
    report = validate_file(mixed)
    data = json.loads(json.dumps(report.to_dict()))
    assert (data["total"], data["valid"], data["invalid"]) == (11, 3, 8)
    assert data["option_counts"] == {"3": 1, "4": 2}
    assert data["video_durations"]["count"] == 1
    assert data["errors"][0] == {
        "source": str(mixed),
        "line": 2,
        "record_id": "q_corrupt",
        "reason": report.errors[0].reason,
        "message": str(report.errors[0]),
    }
    text = report.format_text()
    assert text.splitlines()[0] == f"{mixed}: 11 records, 3 valid, 8 invalid"
    assert f"{mixed} line 4 (q_escape): path '../../etc/passwd' escapes the video root" in text
    assert "errors (8):" in text
    capped = report.format_text(max_errors=2)
    assert "... and 6 more (--json lists all)" in capped


def test_undecodable_image(tmp_path: Path, write_jsonl: Any) -> None:
    (tmp_path / "bad.png").write_bytes(b"not a png")
    rec = {
        "image": "bad.png",
        "conversations": [
            {"from": "human", "value": "<image>Q?\n(A) x\n(B) y"},
            {"from": "gpt", "value": "<answer>A</answer>"},
        ],
    }
    (err,) = validate_file(write_jsonl(tmp_path / "img.jsonl", [rec])).errors
    assert err.reason.startswith(f"undecodable image {tmp_path / 'bad.png'}")


def test_video_root_option(tmp_path: Path, put_video: Any, write_jsonl: Any, seed_record: Any) -> None:
    put_video("media/videos/a.mp4")
    ann = tmp_path / "ann"
    ann.mkdir()
    path = write_jsonl(ann / "t.jsonl", [seed_record()])
    assert validate_file(path).errors[0].reason.startswith("video not found")
    (r,) = validate_file(path, video_root=tmp_path / "media").records
    assert r.video == str(tmp_path / "media/videos/a.mp4")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.jsonl", "", "empty file, no records"),
        ("blank.json", "  \n\n", "empty file, no records"),
        ("text.json", "hello world", "not JSON (a list of records) or JSONL (one object a line)"),
        ("list.json", "[1, 2", "not valid JSON: Expecting ',' delimiter at line 1 column 6"),
        ("obj.json", '{\n  "a": 1\n}', "one JSON object over several lines"),
        ("top.json", "[]", "empty list, no records"),
        ("bad.csv", "a,b\n1,2\n", "CSV header lacks video, question, answer, a0, a1"),
        ("head.csv", "video,question,answer,a0,a1\n", "CSV has a header but no rows"),
    ],
)
def test_file_level_errors(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError, match=str(path)) as info:
        validate_file(path)
    assert message in str(info.value)


def test_binary_and_missing_files(tmp_path: Path) -> None:
    binary = tmp_path / "video.json"
    binary.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    with pytest.raises(DataError, match="not a UTF-8 text file"):
        validate_file(binary)
    with pytest.raises(DataError, match="annotation file not found"):
        validate_file(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match="mode must be"):
        validate_file(binary, mode="fast")


def test_mode_from_answers_name_or_argument(tmp_path: Path, write_jsonl: Any, seed_record: Any) -> None:
    no_think = write_jsonl(tmp_path / "plain.jsonl", [seed_record(think=False)])
    assert validate_file(no_think, schema_only=True).mode == NO_THINK
    forced = validate_file(no_think, schema_only=True, mode=THINK)
    assert forced.mode == THINK and forced.records[0].mode == THINK
    named = write_jsonl(tmp_path / "train_no_think.jsonl", [seed_record(think=True)])
    assert validate_file(named, schema_only=True).records[0].mode == NO_THINK
    assert infer_mode("x", [None, None]) == THINK
    assert infer_mode("x", [None, False, True]) == THINK
    assert infer_mode("x", [False, None]) == NO_THINK


def test_load_records_warns_with_count(mixed: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="trainer.data.validate"):
        records = load_records(mixed)
    assert [r.id for r in records] == ["q_good", "q_img", "q_good2"]
    assert f"{mixed}: skipped 8 bad records of 11" in caplog.text


@pytest.mark.parametrize("check_videos", [True, False])
def test_an_empty_video_is_named_empty_not_invalid_data(
    tmp_path: Path, put_video: Any, write_jsonl: Any, seed_record: Any, check_videos: bool
) -> None:
    """A 0-byte upload: FFmpeg calls it "Invalid data found when processing input"; the report
    names the record and says the file is empty, even when videos are only checked to exist."""
    put_video("videos/a.mp4")
    (tmp_path / "videos" / "empty.mp4").touch()
    path = write_jsonl(
        tmp_path / "t.jsonl", [seed_record(rid="q_ok"), seed_record(video="videos/empty.mp4", rid="q_empty")]
    )
    report = validate_file(path, check_videos=check_videos)
    assert [r.id for r in report.records] == ["q_ok"]
    (error,) = report.errors
    assert str(error) == f"{path} line 2 (q_empty): empty file (0 bytes): {tmp_path / 'videos/empty.mp4'}"


def test_records_rejected_before_are_reported_again_without_reading_their_media(mixed: Path) -> None:
    """What a registered dataset's later reads do (trainer.data.registry.validate_entry): the
    corrupt video's record stays out even where videos are only checked to exist."""
    first = validate_file(mixed)
    rejected = {(e.index, e.record_id): e.reason for e in first.errors}
    again = validate_file(mixed, check_videos=False, rejected=rejected)
    assert [r.id for r in again.records] == [r.id for r in first.records] == ["q_good", "q_img", "q_good2"]
    assert [(e.index, e.reason) for e in again.errors] == [(e.index, e.reason) for e in first.errors]
    # Keyed by position and id: another record at that line is not refused for it.
    moved = validate_file(mixed, check_videos=False, rejected={(1, "q_other"): "was bad"})
    assert "q_good" in [r.id for r in moved.records]

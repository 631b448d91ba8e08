"""`vgrpo data list|validate|register|unregister` through trainer.cli.main."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from trainer.cli import main
from trainer.data.registry import BUILTIN_FILES, file_sha256


@pytest.fixture
def good(tmp_path: Path, put_video: Any, write_jsonl: Any, seed_record: Any) -> Path:
    put_video("videos/a.mp4")
    return write_jsonl(tmp_path / "good.jsonl", [seed_record(rid="q1"), seed_record(rid="q2", think=False)])


@pytest.fixture
def bad(tmp_path: Path, put_video: Any, write_jsonl: Any, seed_record: Any) -> Path:
    put_video("videos/a.mp4")
    (tmp_path / "videos" / "x.mp4").write_bytes(b"garbage" * 10)
    return write_jsonl(
        tmp_path / "bad.jsonl",
        [
            seed_record(rid="ok"),
            seed_record(letter="E", rid="q_wrong"),
            seed_record(video="videos/x.mp4", rid="q_corrupt"),
            "{oops",
        ],
    )


def test_list_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "list", "--json", "--workspace", str(tmp_path)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list(BUILTIN_FILES)
    assert set(rows[0]) == {"name", "annotation", "video_root", "mode", "builtin", "exists"}
    assert rows[2]["mode"] == "no_think" and rows[2]["builtin"] is True


def test_validate_exit_codes_and_report(good: Path, bad: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "validate", str(good)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{good}: 2 records, 2 valid, 0 invalid")
    assert "video duration: min 2.00 s, mean 2.00 s, max 2.00 s over 1 videos" in out

    assert main(["data", "validate", str(bad)]) == 1
    out = capsys.readouterr().out
    assert f'{bad} line 2 (q_wrong): answer "E" not in A-D' in out
    assert f"{bad} line 3 (q_corrupt): undecodable video" in out
    assert f"{bad} line 4 (bad:4): bad JSON" in out

    assert main(["data", "validate", str(bad), "--schema-only", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert (data["valid"], data["invalid"]) == (2, 2)
    assert [(e["line"], e["record_id"]) for e in data["errors"]] == [(2, "q_wrong"), (4, "bad:4")]


def test_validate_file_level_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "notes.json"
    path.write_text("just some text")
    assert main(["data", "validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"vgrpo: error: {path}: not JSON")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_register_list_unregister(
    tmp_path: Path, good: Path, bad: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = tmp_path / "ws"
    assert main(["data", "register", "motion", str(good), "--workspace", str(ws)]) == 0
    assert "registered motion (2 records, mode think)" in capsys.readouterr().out
    assert main(["data", "register", "partly", str(bad), "--workspace", str(ws), "--mode", "no_think"]) == 0
    assert (
        "registered partly (1 records, mode no_think); 3 bad records are left out of training and evaluation"
        in capsys.readouterr().out
    )
    assert main(["data", "register", "motion", str(good), "--workspace", str(ws)]) == 1
    assert "'motion' is already registered" in capsys.readouterr().err

    assert main(["data", "list", "--json", "--workspace", str(ws)]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["motion"] == {
        "name": "motion",
        "annotation": str(good),
        "video_root": str(good.parent),
        "mode": "think",
        "builtin": False,
        "sha256": file_sha256(good),
        "exists": True,
    }
    assert rows["partly"]["mode"] == "no_think"
    # What registration refused is listed, and never trained or evaluated.
    assert [(r["index"], r["record_id"]) for r in rows["partly"]["rejected"]] == [
        (2, "q_wrong"), (3, "q_corrupt"), (4, "bad:4"),
    ]  # fmt: skip

    monkeypatch.setenv("VGRPO_WORKSPACE", str(ws))
    assert main(["data", "unregister", "motion"]) == 0
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "unregistered motion" in out
    assert "partly" in out and "\nmotion " not in out


def test_register_refuses_a_file_without_usable_records(
    tmp_path: Path, write_jsonl: Any, seed_record: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_jsonl(tmp_path / "all_bad.jsonl", [seed_record(letter="Q"), seed_record(options="")])
    assert main(["data", "register", "nope", str(path), "--schema-only", "--workspace", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "not registering nope: none of the 2 records" in captured.err
    assert f"{path} line 1" in captured.out
    assert not (tmp_path / "datasets.json").exists()


def test_data_without_subcommand_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data"]) == 2
    assert "{list,validate,register,unregister}" in capsys.readouterr().out

"""Each supported annotation format, written by hand into tmp_path, normalises to MCQRecord."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from trainer.data.formats import parse_record, record_id
from trainer.data.prompts import NO_THINK, THINK
from trainer.data.validate import validate_file

OPTS4 = {"A": "left", "B": "right", "C": "up", "D": "down"}


def test_seed_conversation_jsonl_video_and_image(
    tmp_path: Path, write_json: Any, write_jsonl: Any, seed_record: Any
) -> None:
    image_rec = {
        "id": "img_1",
        "image": "images/a.png",
        "conversations": [
            {"from": "human", "value": "<image>\nWhat colour is the square?\nOptions:\n(A) red\n(B) blue"},
            {"from": "gpt", "value": "<think>It is red.</think> <answer>(A) red</answer>"},
        ],
    }
    path = write_jsonl(tmp_path / "train.jsonl", [seed_record(rid="q_0001"), "", image_rec])
    report = validate_file(path, schema_only=True)
    assert (report.total, report.valid, report.invalid) == (2, 2, 0)
    video, image = report.records
    assert video.id == "q_0001"
    assert video.video == str(tmp_path / "videos" / "a.mp4")
    assert video.image is None
    assert video.question == "Which way does the square move?"
    assert video.options == OPTS4
    assert video.answer == "B"
    assert (video.index, video.index_unit, video.source) == (1, "line", str(path))
    # The blank line 2 is skipped but still counted: the image record is on line 3.
    assert (image.id, image.index, image.video, image.image) == (
        "img_1",
        3,
        None,
        str(tmp_path / "images/a.png"),
    )
    assert image.options == {"A": "red", "B": "blue"}
    assert report.mode == THINK
    assert report.formats == {"conversation": 2}


def test_llava_video_sharegpt_variant(
    tmp_path: Path, write_json: Any, write_jsonl: Any, seed_record: Any
) -> None:
    rec = {
        "conversations": [
            {
                "from": "human",
                "value": "<video>What is shown?\nA. a cat\nB. a dog\nC. a cow\nReply with a letter.",
            },
            {"from": "gpt", "value": "<locate>early clips</locate>\n<answer>B</answer>"},
        ],
        "videos": ["video/ytb_x.mp4"],
    }
    report = validate_file(write_json(tmp_path / "sft.json", [rec]), schema_only=True)
    (r,) = report.records
    assert (r.id, r.index, r.index_unit) == ("sft:0", 0, "index")
    assert r.question == "What is shown?"
    assert r.options == {"A": "a cat", "B": "a dog", "C": "a cow"}
    assert r.answer == "B"
    assert r.video == str(tmp_path / "video" / "ytb_x.mp4")
    # The gpt answers carry no <think>: the file's mode is no_think.
    assert report.mode == NO_THINK


def test_llamafactory_messages(tmp_path: Path, write_json: Any, write_jsonl: Any, seed_record: Any) -> None:
    rec = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "<video>Who wins?\n(A) red\n(B) blue"},
            {"role": "assistant", "content": "<answer>(A) red</answer>"},
        ],
        "videos": ["clips/1.mp4"],
    }
    (r,) = validate_file(write_json(tmp_path / "lf.json", [rec]), schema_only=True).records
    assert (r.question, r.options, r.answer) == ("Who wins?", {"A": "red", "B": "blue"}, "A")


def test_video_r1_records(tmp_path: Path, write_json: Any, write_jsonl: Any, seed_record: Any) -> None:
    rows = [
        {
            "problem_id": 7,
            "problem": "What happens?",
            "data_type": "video",
            "problem_type": "multiple choice",
            "options": ["A. it falls", "B. it rises"],
            "solution": "<answer>B</answer>",
            "path": "./Eval/clip.mp4",
        },
        {
            "problem_id": 8,
            "problem": "Which figure?",
            "data_type": "image",
            "problem_type": "multiple choice",
            "options": ["A) one", "B) two", "C) three"],
            "solution": "<answer>C</answer>",
            "path": "./Know/img.jpg",
        },
        {
            "problem_id": 9,
            "problem": "How far?",
            "data_type": "video",
            "problem_type": "regression",
            "options": None,
            "solution": "<answer>4.2</answer>",
            "path": "./Eval/clip.mp4",
        },
        {
            "problem": "Which?",
            "video": ["v/a.mp4"],
            "options": ["A. x", "B. y"],
            "solution": "<answer>A</answer>",
        },
    ]
    report = validate_file(write_json(tmp_path / "r1.json", rows), schema_only=True)
    assert (report.valid, report.invalid) == (4, 0)
    video, image, regression, no_type = report.records
    assert (video.id, video.video, video.answer) == ("7", str(tmp_path / "Eval/clip.mp4"), "B")
    assert (image.id, image.image, image.options["C"]) == ("8", str(tmp_path / "Know/img.jpg"), "three")
    assert (regression.id, regression.problem_type, regression.answer) == ("9", "regression", "4.2")
    assert (no_type.id, no_type.video, no_type.problem_type) == (
        "r1:3",
        str(tmp_path / "v/a.mp4"),
        "multiple choice",
    )
    assert report.problem_types == {"multiple choice": 3, "regression": 1}


def test_video_r1_problem_types_and_their_bad_input(tmp_path: Path, write_json: Any) -> None:
    def row(pid: int, problem_type: str, solution: str, options: Any = None) -> dict[str, Any]:
        return {
            "problem_id": pid, "problem": "Q?", "data_type": "video", "problem_type": problem_type,
            "options": options, "solution": solution, "path": "./v.mp4",
        }  # fmt: skip

    rows = [
        row(1, "numerical", "<answer>1,000</answer>"),
        row(2, "OCR", "<answer>STOP 12</answer>"),
        row(3, "free-form", "<answer>A man opens the door.</answer>"),
        row(4, "Regression", "<answer>3.5</answer>"),
        row(5, "counting", "<answer>3</answer>"),
        row(6, "numerical", "<answer>three</answer>"),
        row(7, "free-form", "<answer> </answer>"),
        row(8, "numerical", "<answer>2</answer>", ["A. 1", "B. 2"]),
        row(9, "multiple choice", "<answer>E</answer>", ["A. 1", "B. 2"]),
    ]
    report = validate_file(write_json(tmp_path / "mixed.json", rows), schema_only=True)
    assert [(r.id, r.problem_type, r.answer, r.options) for r in report.records] == [
        ("1", "numerical", "1,000", {}),
        ("2", "OCR", "STOP 12", {}),
        ("3", "free-form", "A man opens the door.", {}),
        ("4", "regression", "3.5", {}),
    ]
    assert [(e.record_id, e.reason) for e in report.errors] == [
        (
            "5",
            "problem_type 'counting' is unknown "
            "(one of: multiple choice, numerical, OCR, free-form, regression)",
        ),
        ("6", "a numerical answer must be a number, got 'three'"),
        ("7", "a free-form question needs a reference answer, got an empty one"),
        ("8", "a numerical question has no options, got ['A. 1', 'B. 2']"),
        ("9", 'answer "E" not in A, B'),
    ]
    assert "problem types: numerical 1, OCR 1, free-form 1, regression 1" in report.format_text()


def test_easyr1_records(tmp_path: Path, write_json: Any, write_jsonl: Any, seed_record: Any) -> None:
    instruction = "Put your final answer between the <answer> </answer> tags."
    rows = [
        {
            "question": f"Who wore red?\nA. Ann\nB. Bob\nC. Cy\nD. Di\n{instruction}",
            "videos": "video/v1.mp4",
            "answer": "C",
        },
        {"question": "Which?\nA. x\nB. y", "videos": ["video/v2.mp4"], "answer": "<answer>A</answer>"},
        {"question": "Which?\nA. x\nB. y", "videos": ["video/v3.mp4", "video/v4.mp4"], "answer": "A"},
    ]
    report = validate_file(write_json(tmp_path / "grpo.json", rows), schema_only=True)
    first, second = report.records
    assert first.question == "Who wore red?"
    assert first.options == {"A": "Ann", "B": "Bob", "C": "Cy", "D": "Di"}
    assert (first.answer, first.video) == ("C", str(tmp_path / "video/v1.mp4"))
    assert (second.answer, second.video) == ("A", str(tmp_path / "video/v2.mp4"))
    assert [e.reason for e in report.errors] == ["2 paths in 'videos'; one per record is supported"]
    assert report.formats == {"easyr1": 2}


def test_nextqa_csv(tmp_path: Path) -> None:
    csv_text = (
        "video,frame_count,width,height,question,answer,qid,type,a0,a1,a2,a3,a4\n"
        "4010069381,369,640,480,how do the two man play the instrument,2,6,CH,roll,tap,strum,hit,pat\n"
        "4010069381,369,640,480,why,7,7,CW,a,b,c,d,e\n"
        "123,1,1,1,short row,0,1\n"
    )
    path = tmp_path / "val.csv"
    path.write_text(csv_text)
    report = validate_file(path, schema_only=True)
    (r,) = report.records
    assert (r.id, r.index, r.index_unit) == ("4010069381_6", 2, "line")
    assert r.options == {"A": "roll", "B": "tap", "C": "strum", "D": "hit", "E": "pat"}
    assert r.answer == "C"
    assert r.video == str(tmp_path / "4010069381.mp4")
    assert [(e.index, e.record_id, e.reason) for e in report.errors] == [
        (3, "4010069381_7", "answer index 7 not in 0-4"),
        (4, "123_1", "row has fewer fields than the header's 13"),
    ]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ([1, 2], "expected a JSON object, got list"),
        ({"foo": 1}, "unrecognised record (keys: foo)"),
        (lambda seed: seed() | {"video": None}, "no video or image"),
        (lambda seed: seed() | {"image": "i.png"}, "has both a video and an image"),
        (lambda seed: seed(options="(A) left"), "only 1 option (A); multiple choice needs at least 2"),
        (lambda seed: seed(options="(A) left\n(A) right"), "duplicate option letter A"),
        (lambda seed: seed(options=""), "no options (open-ended question, not multiple choice)"),
        (lambda seed: seed(letter="E"), 'answer "E" not in A-D'),
        (
            {
                "conversations": [
                    {"from": "human", "value": "Q?\n(A) x\n(B) y"},
                    {"from": "gpt", "value": "A"},
                ],
                "video": "a.mp4",
            },
            "human turn has no <video> placeholder",
        ),
        (
            {"conversations": [{"from": "human", "value": "<video>Q?\n(A) x\n(B) y"}], "video": "a.mp4"},
            "no gpt/assistant turn with the answer",
        ),
        ({"conversations": "nope", "video": "a.mp4"}, "'conversations' must be a non-empty list of turns"),
        ({"problem": "Q", "options": ["A. x", "B. y"], "path": "a.mp4"}, "no 'solution' with the answer"),
        ({"question": "<video>\nA. x\nB. y", "videos": "a.mp4", "answer": "A"}, "empty question text"),
    ],
)
def test_parse_record_reasons(raw: Any, reason: str, seed_record: Any) -> None:
    with pytest.raises(ValueError) as info:
        parse_record(raw(seed_record) if callable(raw) else raw)
    assert str(info.value).startswith(reason)


def test_record_id_fields() -> None:
    assert record_id({"id": "x"}, "f", 3) == "x"
    assert record_id({"problem_id": 0}, "f", 3) == "0"
    assert record_id({"qid": 5}, "f", 3) == "5"
    assert record_id({"question_id": "001-1"}, "f", 3) == "001-1"
    assert record_id({"id": ""}, "f", 3) == "f:3"
    assert record_id([1], "f", 3) == "f:3"

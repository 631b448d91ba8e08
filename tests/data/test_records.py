"""Option blocks and answer letters pulled out of free text (pure helpers in records.py)."""

from __future__ import annotations

import pytest

from trainer.data.records import (
    MCQRecord,
    answer_letter,
    answer_span,
    check_options,
    letter_range,
    options_from_list,
    parse_option_line,
    split_options,
    strip_placeholders,
)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("(A) left", ("A", "left")),
        ("A. left", ("A", "left")),
        ("B) a red ball", ("B", "a red ball")),
        ("C: 12.5", ("C", "12.5")),
        ("  D.   spaced  ", ("D", "spaced")),
        ("Which way?", None),
        ("a. lowercase is not an option", None),
    ],
)
def test_parse_option_line(line: str, expected: tuple[str, str] | None) -> None:
    assert parse_option_line(line) == expected


def test_split_options_with_header_and_trailing_instruction() -> None:
    text = "Which way does it move?\nOptions:\n(A) left\n(B) right\nAnswer with the letter."
    assert split_options(text) == (
        "Which way does it move?",
        [("A", "left"), ("B", "right")],
        "Answer with the letter.",
    )


def test_split_options_without_header_keeps_multiline_question() -> None:
    text = "Line one.\nLine two?\nA. x\n\nB. y\nC. z"
    question, options, trailing = split_options(text)
    assert question == "Line one.\nLine two?"
    assert options == [("A", "x"), ("B", "y"), ("C", "z")]
    assert trailing == ""


def test_split_options_reports_duplicates_in_order() -> None:
    assert split_options("Q\nA. x\nA. y")[1] == [("A", "x"), ("A", "y")]


def test_split_options_none() -> None:
    assert split_options("  What is happening?  ") == ("What is happening?", [], "")


def test_options_from_list_lettered_and_bare() -> None:
    assert options_from_list(["A. cat", "B) dog"]) == [("A", "cat"), ("B", "dog")]
    assert options_from_list(["cat", "dog", "cow"]) == [("A", "cat"), ("B", "dog"), ("C", "cow")]
    with pytest.raises(ValueError, match=r"option 2 'dog' has no letter"):
        options_from_list(["A. cat", "dog"])


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ([], "no options"),
        ([("A", "x")], "only 1 option"),
        ([("A", "x"), ("A", "y")], "duplicate option letter A"),
        ([("A", "x"), ("B", " ")], "option B is empty"),
    ],
)
def test_check_options_errors(pairs: list[tuple[str, str]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_options(pairs)


def test_check_options_ok_keeps_order() -> None:
    assert list(check_options([("B", "y "), ("A", "x")]).items()) == [("B", "y"), ("A", "x")]


OPTIONS = {"A": "dog", "B": "cat", "C": "C"}


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("<think>hmm</think> <answer>(B) cat</answer>", "B"),
        ("<answer>B</answer>", "B"),
        ("B", "B"),
        ("(B)", "B"),
        ("B. cat", "B"),
        ("cat", "B"),
        ("Cat.", "B"),
        # A bare letter wins over an option whose text is a letter.
        ("C", "C"),
        ("<answer>A</answer> then <answer>B</answer>", "B"),
    ],
)
def test_answer_letter(text: str, letter: str) -> None:
    assert answer_letter(text, OPTIONS) == letter


def test_answer_letter_errors() -> None:
    with pytest.raises(ValueError, match='answer "E" not in A-C'):
        answer_letter("<answer>E</answer>", {"A": "x", "B": "y", "C": "z"})
    with pytest.raises(ValueError, match='answer "C" not in A, B'):
        answer_letter("C", {"A": "x", "B": "y"})
    with pytest.raises(ValueError, match='answer "E" not in A-D'):
        answer_letter("E", {"A": "1", "B": "2", "C": "3", "D": "4"})
    with pytest.raises(ValueError, match="names no option letter"):
        answer_letter("<answer>the blue one</answer>", OPTIONS)
    with pytest.raises(ValueError, match="empty answer"):
        answer_letter("<answer> </answer>", OPTIONS)


def test_letter_range_and_helpers() -> None:
    assert letter_range({"A": "", "B": "", "C": "", "D": ""}) == "A-D"
    assert letter_range({"A": "", "C": ""}) == "A, C"
    assert answer_span("x <answer> B </answer>") == "B"
    assert strip_placeholders("<video>\nWhat?") == "What?"


def test_mcq_record_guards_and_round_trip() -> None:
    rec = MCQRecord(
        id="q1",
        video="/v/a.mp4",
        image=None,
        question="Q?",
        options={"A": "x", "B": "y"},
        answer="B",
        source="t.jsonl",
        index=3,
    )
    assert rec.location == "t.jsonl line 3"
    assert rec.answer_text == "y"
    assert MCQRecord.from_dict(rec.to_dict()) == rec
    assert hash(rec) == hash(MCQRecord.from_dict(rec.to_dict()))
    with pytest.raises(ValueError, match="answer 'C' not in A, B"):
        MCQRecord(
            id="q",
            video="/v",
            image=None,
            question="Q",
            options={"A": "x", "B": "y"},
            answer="C",
            source="s",
            index=0,
        )
    with pytest.raises(ValueError, match="exactly one of video and image"):
        MCQRecord(
            id="q",
            video=None,
            image=None,
            question="Q",
            options={"A": "x", "B": "y"},
            answer="A",
            source="s",
            index=0,
        )

"""trainer.score.rewards against the real MCQ records in ../shared/realdata/mcq

For every multiple-choice record: the dataset's own solution scores accuracy 1 for its letter and 0
for every other letter; so do ``<answer>(C) option text</answer>`` and ``<answer>option text</answer>``,
except where the record itself makes the text form ambiguous (counted per file below).
"""

from __future__ import annotations

import csv
import json
import re
import string
from collections.abc import Callable
from pathlib import Path

import pytest

from trainer.score.rewards import accuracy_reward, extract_choice

pytestmark = pytest.mark.realdata

# (options, correct letter, a completion the dataset itself gives as the solution)
Record = tuple[dict[str, str], str, str]

_OPTION = re.compile(r"([A-Z])\s*[.)]\s?(.*)", re.DOTALL)
_TOC_OPTION_LINE = re.compile(r"[A-Z]\. ")


def _options(lines: list[str], where: str) -> dict[str, str]:
    """``["A. text", "B) text"]`` -> ``{"A": "text", "B": "text"}``, letters A, B, … in order."""
    options = {}
    for line in lines:
        match = _OPTION.fullmatch(line.strip())
        assert match, f"{where}: option line {line!r}"
        options[match.group(1)] = match.group(2)
    assert "".join(options) == string.ascii_uppercase[: len(options)], f"{where}: letters {list(options)}"
    return options


def _video_r1(path: Path) -> list[Record]:
    """Video-R1 / EasyR1 style: ``options`` ["A. text", …] and ``solution`` "<answer>C</answer>"."""
    records = []
    for i, record in enumerate(json.loads(path.read_text(encoding="utf-8"))):
        if record["problem_type"] != "multiple choice":
            continue
        options = _options(record["options"], f"{path.name} record {i}")
        letter = re.fullmatch(r"<answer>(.*)</answer>", record["solution"]).group(1).strip()
        records.append((options, letter, record["solution"]))
    return records


def _toc_question_options(question: str, where: str) -> dict[str, str]:
    """Video-ToC: the options are the ``\\nA. text`` lines of the question."""
    lines = [line for line in question.split("\n")[1:] if _TOC_OPTION_LINE.match(line)]
    return _options(lines, where)


def _video_toc_grpo(path: Path) -> list[Record]:
    """EasyR1 GRPO file: ``question`` with the options, ``answer`` the letter."""
    return [
        (
            _toc_question_options(r["question"], f"{path.name} record {i}"),
            r["answer"],
            f"<answer>{r['answer']}</answer>",
        )
        for i, r in enumerate(json.loads(path.read_text(encoding="utf-8")))
    ]


def _video_toc_sft(path: Path) -> list[Record]:
    """ShareGPT SFT file: the gpt turn is a real completion, ``<locate>…</locate>\\n<answer>B</answer>``."""
    records = []
    for i, record in enumerate(json.loads(path.read_text(encoding="utf-8"))):
        human, gpt = record["conversations"]
        letter = re.search(r"<answer>(.*?)</answer>", gpt["value"]).group(1).strip()
        records.append(
            (_toc_question_options(human["value"], f"{path.name} record {i}"), letter, gpt["value"])
        )
    return records


def _nextqa(path: Path) -> list[Record]:
    """NExT-QA CSV: options a0..a4, answer the 0-based index."""
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    records = []
    for row in rows:
        options = {letter: row[f"a{i}"] for i, letter in enumerate("ABCDE")}
        letter = "ABCDE"[int(row["answer"])]
        records.append((options, letter, f"<answer>{letter}</answer>"))
    return records


def _shares_text(options: dict[str, str], letter: str) -> bool:
    """Another option has the same text up to case, spacing and punctuation."""

    def key(text: str) -> str:
        return " ".join(re.sub(r"[\W_]+", " ", text).split()).casefold()

    return sum(key(text) == key(options[letter]) for text in options.values()) > 1


def _is_letter_lookalike(options: dict[str, str], letter: str) -> bool:
    """The option's text is itself another option's letter (VideoMMMU has options "A. B", "B. C", …)."""
    return options[letter].strip(" .()") in options and options[letter].strip(" .()") != letter


# file, loader, multiple-choice records checked, of them: text shared with another option, text that
# is another option's letter.
FILES: list[tuple[str, Callable[[Path], list[Record]], int, int, int]] = [
    ("dataflow_mm_video_cot_qa_sample_data.json", _video_r1, 1, 0, 0),
    ("video_r1_260k_head_example.json", _video_r1, 2, 0, 0),
    ("video_r1_eval_mmvu_sample200.json", _video_r1, 200, 2, 0),
    ("video_r1_eval_mvbench_sample200.json", _video_r1, 200, 0, 0),
    ("video_r1_eval_videomme_sample200.json", _video_r1, 200, 0, 0),
    ("video_r1_eval_videommmu_sample200.json", _video_r1, 196, 11, 1),
    ("video_r1_eval_vsibench_sample200.json", _video_r1, 92, 0, 0),
    ("video_toc_grpo_sample200.json", _video_toc_grpo, 200, 0, 0),
    ("video_toc_sft_llava_video_sample200.json", _video_toc_sft, 200, 0, 0),
    ("nextqa_val_head200.csv", _nextqa, 200, 0, 0),
]


def _scores(completion: str, options: dict[str, str]) -> dict[str, float]:
    return {other: accuracy_reward(completion, other, options) for other in options}


def _only(letter: str | None, options: dict[str, str]) -> dict[str, float]:
    return {other: 1.0 if other == letter else 0.0 for other in options}


@pytest.mark.parametrize(("name", "load", "n_checked", "n_shared", "n_lookalike"), FILES)
def test_real_records_score_their_own_answer_only(
    real_mcq: Path,
    name: str,
    load: Callable[[Path], list[Record]],
    n_checked: int,
    n_shared: int,
    n_lookalike: int,
) -> None:
    records = load(real_mcq / name)
    shared = lookalike = 0
    for i, (options, letter, solution) in enumerate(records):
        where = f"{name} record {i}"
        assert letter in options, f"{where}: answer {letter!r} not in {list(options)}"
        assert _scores(solution, options) == _only(letter, options), f"{where}: {solution!r}"

        labelled = f"<answer>({letter}) {options[letter]}</answer>"
        # The letter decides even when the text is shared by two options.
        assert _scores(labelled, options) == _only(letter, options), f"{where}: {labelled!r}"

        text_only = f"<answer>{options[letter]}</answer>"
        if _shares_text(options, letter):
            shared += 1
            # Text naming two options is ambiguous: no letter scores.
            assert _scores(text_only, options) == _only(None, options), f"{where}: {text_only!r}"
        elif _is_letter_lookalike(options, letter):
            lookalike += 1
            # A bare "D" is read as the letter D, never as the option whose text is "D".
            read_as = options[letter].strip(" .()")
            assert extract_choice(options[letter], options) == read_as, where
            assert _scores(text_only, options) == _only(read_as, options), f"{where}: {text_only!r}"
        else:
            assert _scores(text_only, options) == _only(letter, options), f"{where}: {text_only!r}"
    assert (len(records), shared, lookalike) == (n_checked, n_shared, n_lookalike)

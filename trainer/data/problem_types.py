"""The problem types of Video-R1-style datasets: their names, what a reference answer of each must
look like, and what each asks the model to put inside ``<answer>``.

Video-R1-260k (Feng et al., 2025) mixes five types; its ``grpo.py`` names them exactly as below and
scores each with its own accuracy reward (``trainer.score.answer_types``). A record without a
``problem_type`` is multiple choice, as every format but Video-R1's is.

Choices made here:

- Names are matched case-insensitively and ``multiple-choice`` / ``multiple_choice`` / ``mcq`` read
  as multiple choice (EasyR1 and the eval files spell it so), but stored in Video-R1's spelling, so a
  record written back out loads in Video-R1's own code.
- A numerical or regression reference must parse as a number (:func:`parse_number`, Video-R1's
  ``normalize_number``: thousands commas dropped, then ``float``); an OCR or free-form reference must
  be non-empty text. Only multiple choice has options; the others must have none, so an options list
  on a numerical record (a file mislabelled) is an error naming the record, not silently ignored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

MULTIPLE_CHOICE = "multiple choice"
NUMERICAL = "numerical"
OCR = "OCR"
FREE_FORM = "free-form"
REGRESSION = "regression"
PROBLEM_TYPES = (MULTIPLE_CHOICE, NUMERICAL, OCR, FREE_FORM, REGRESSION)
NUMBER_TYPES = (NUMERICAL, REGRESSION)

_ALIASES = {
    **{name.casefold(): name for name in PROBLEM_TYPES},
    "multiple-choice": MULTIPLE_CHOICE,
    "multiple_choice": MULTIPLE_CHOICE,
    "mcq": MULTIPLE_CHOICE,
    "free form": FREE_FORM,
    "free_form": FREE_FORM,
}

# What goes inside <answer> per type, with an example; the prompt builder adds the think/no_think
# frame around it. Video-R1's TYPE_TEMPLATE asks the same things (option letter, a number such as
# 42 or 3.14, the transcribed text, a text answer).
ANSWER_REQUESTS = {
    MULTIPLE_CHOICE: ("the right option", "(A) text"),
    NUMERICAL: ("the number", "42"),
    OCR: ("the text you read, transcribed exactly", "STOP"),
    FREE_FORM: ("your answer in a short sentence", "a man opens the door"),
    REGRESSION: ("your estimate as a number", "3.14"),
}


def canonical_type(name: object) -> str:
    """The Video-R1 spelling of a problem type name; None or empty is multiple choice.

    >>> canonical_type("ocr"), canonical_type(None), canonical_type("Multiple-Choice")
    ('OCR', 'multiple choice', 'multiple choice')
    """
    if name is None or (isinstance(name, str) and not name.strip()):
        return MULTIPLE_CHOICE
    found = _ALIASES.get(str(name).strip().casefold())
    if found is None:
        raise ValueError(f"problem_type {name!r} is unknown (one of: {', '.join(PROBLEM_TYPES)})")
    return found


def parse_number(text: str) -> float | None:
    """``"1,234.5"`` -> 1234.5; None when the text is not one number (Video-R1's ``normalize_number``,
    which also drops thousands commas). NaN and infinities are not numbers an answer can give.

    >>> parse_number(" 3.14 "), parse_number("1,000"), parse_number("three"), parse_number("nan")
    (3.14, 1000.0, None, None)
    """
    try:
        value = float(text.replace(",", "").strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def check_reference(problem_type: str, answer: str, options: Mapping[str, str]) -> None:
    """Raise ValueError when ``answer`` cannot be a reference answer of ``problem_type``: for multiple
    choice a key of ``options``; for numerical and regression a number; for OCR and free-form
    non-empty text. Types other than multiple choice take no options."""
    if problem_type not in PROBLEM_TYPES:
        raise ValueError(f"problem_type {problem_type!r} is unknown (one of: {', '.join(PROBLEM_TYPES)})")
    if problem_type == MULTIPLE_CHOICE:
        if answer not in options:
            raise ValueError(f"answer {answer!r} not in {', '.join(options) or '(no options)'}")
        return
    if options:
        raise ValueError(f"a {problem_type} question has no options, got {len(options)}")
    if not answer.strip():
        raise ValueError(f"a {problem_type} question needs a reference answer, got an empty one")
    if problem_type in NUMBER_TYPES and parse_number(answer) is None:
        raise ValueError(f"a {problem_type} answer must be a number, got {answer[:40]!r}")

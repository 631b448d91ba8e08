"""The one normalised question record every dataset format becomes, and the text helpers that pull
options and answer letters out of free-form question and answer text.

Most records are multiple choice; Video-R1 files also hold numerical, OCR, free-form and regression
questions (``trainer.data.problem_types``). Those have no options and their ``answer`` is the
reference answer text, so one record type flows through loading, prompting, scoring and eval.

Pure functions only (no file access): the readers in ``formats.py`` call them and turn a
``ValueError`` into a :class:`~trainer.core.errors.RecordError` that names the record.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from trainer.data.problem_types import MULTIPLE_CHOICE, check_reference
from trainer.data.prompts import NO_THINK, THINK

# "(A) text", "A. text", "A) text", "A: text" (also the full-width colon some datasets use).
_OPTION_LINE = re.compile(r"^\s*(?:\(([A-Z])\)|([A-Z])\s*[.):\uff1a])\s*(.*?)\s*$")
# An "Options:" / "Choices:" line announcing the block (optional).
_OPTIONS_HEADER = re.compile(r"^\s*(?:options|choices)\s*[:\uff1a]?\s*$", re.IGNORECASE)
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
# An answer that is only a letter: "B", "(B)", "B.", "B:".
_BARE_LETTER = re.compile(r"^\(?([A-Z])\)?[.:\uff1a]?$")
# A letter marked as one before the option text: "(B) dog", "B. dog", "B) dog", "B: dog".
_MARKED_LETTER = re.compile(r"^(?:\(([A-Z])\)|([A-Z])[.):\uff1a])")
# Last resort, after the option texts: "B dog".
_SPACED_LETTER = re.compile(r"^([A-Z])\s")
PLACEHOLDERS = ("<video>", "<image>")


@dataclass(frozen=True)
class MCQRecord:
    """One question about one video (or image), whatever file format it came from: multiple choice,
    or one of Video-R1's other problem types (``problem_type``).

    ``index`` says where the record sits in its file: the 1-based **line** number for JSONL and CSV
    rows (``line 17``), the 0-based **index** in the top-level list for JSON files (``index 16``);
    ``index_unit`` holds which of the two words applies, so messages can say it.
    """

    id: str = field(metadata={"help": "id/problem_id/qid/question_id field, else '<file stem>:<index>'."})
    video: str | None = field(metadata={"help": "Absolute, resolved video path (None for image records)."})
    image: str | None = field(metadata={"help": "Absolute, resolved image path (None for video records)."})
    question: str = field(metadata={"help": "Question text without <video>/<image> or the options block."})
    options: dict[str, str] = field(
        hash=False,
        metadata={"help": "Option letter -> option text, in the file's order ({} unless multiple choice)."},
    )
    answer: str = field(
        metadata={"help": "The correct option letter (a key of options), else the reference answer text."}
    )
    source: str = field(metadata={"help": "The annotation file the record came from."})
    index: int = field(metadata={"help": "1-based line (JSONL/CSV) or 0-based list index (JSON)."})
    mode: str = field(default=THINK, metadata={"help": "'think' or 'no_think': the answer format expected."})
    index_unit: str = field(default="line", metadata={"help": "'line' or 'index': what `index` counts."})
    problem_type: str = field(
        default=MULTIPLE_CHOICE,
        metadata={"help": "Video-R1's problem type: multiple choice, numerical, OCR, free-form, regression."},
    )

    def __post_init__(self) -> None:
        # A record that gets this far was checked by the readers; these guard hand-built ones.
        if self.mode not in (THINK, NO_THINK):
            raise ValueError(f"record {self.id}: mode must be {THINK!r} or {NO_THINK!r}, got {self.mode!r}")
        try:
            check_reference(self.problem_type, self.answer, self.options)
        except ValueError as exc:
            raise ValueError(f"record {self.id}: {exc}") from None
        if (self.video is None) == (self.image is None):
            raise ValueError(f"record {self.id}: exactly one of video and image must be set")

    @property
    def location(self) -> str:
        """``"train.jsonl line 17"`` / ``"eval.json index 16"``: where to look in the file."""
        return f"{self.source} {self.index_unit} {self.index}"

    @property
    def is_multiple_choice(self) -> bool:
        return self.problem_type == MULTIPLE_CHOICE

    @property
    def answer_text(self) -> str:
        """The correct option's text, or the reference answer of the other types."""
        return self.options[self.answer] if self.is_multiple_choice else self.answer

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MCQRecord:
        return cls(**{**data, "options": dict(data["options"])})


def parse_option_line(line: str) -> tuple[str, str] | None:
    """``"(B) a cat"`` / ``"B. a cat"`` / ``"B) a cat"`` / ``"B: a cat"`` -> ``("B", "a cat")``;
    None when the line is not an option."""
    m = _OPTION_LINE.match(line)
    if m is None:
        return None
    return (m.group(1) or m.group(2)), m.group(3)


def split_options(text: str) -> tuple[str, list[tuple[str, str]], str]:
    """Split question text into ``(question, options, trailing)``.

    The options block is a run of option lines (blank lines allowed between them) that starts at
    the first line after an ``Options:`` line, or else at the first line that is option ``A``.
    ``trailing`` is whatever follows the block (usually an answer-format instruction, which the
    project replaces with its own). Options come back as ``(letter, text)`` pairs in file order,
    duplicates included, so the caller can report them.
    """
    lines = text.splitlines()
    start = header = None
    for i, line in enumerate(lines):
        if _OPTIONS_HEADER.match(line):
            nxt = next((j for j in range(i + 1, len(lines)) if lines[j].strip()), None)
            if nxt is not None and parse_option_line(lines[nxt]) is not None:
                header, start = i, nxt
                break
        parsed = parse_option_line(line)
        if parsed is not None and parsed[0] == "A":
            start = i
            break
    if start is None:
        return text.strip(), [], ""
    options: list[tuple[str, str]] = []
    end = start
    for k in range(start, len(lines)):
        if not lines[k].strip():
            continue
        parsed = parse_option_line(lines[k])
        if parsed is None:
            break
        options.append(parsed)
        end = k + 1
    question = "\n".join(lines[: header if header is not None else start]).strip()
    trailing = "\n".join(lines[end:]).strip()
    return question, options, trailing


def options_from_list(items: Iterable[Any]) -> list[tuple[str, str]]:
    """Video-R1 style ``["A. cat", "B. dog"]`` -> ``[("A", "cat"), ("B", "dog")]``.

    A list without any letters gets A, B, C... in order; a list where only some items carry a
    letter raises ValueError naming the first bare item.
    """
    texts = [str(item).strip() for item in items]
    parsed = [parse_option_line(t) for t in texts]
    if texts and all(p is None for p in parsed):
        return [(chr(ord("A") + i), t) for i, t in enumerate(texts)]
    for i, (text, p) in enumerate(zip(texts, parsed, strict=True)):
        if p is None:
            raise ValueError(f"option {i + 1} {text[:40]!r} has no letter (expected like 'A. text')")
    return [p for p in parsed if p is not None]


def check_options(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Options as a dict, or ValueError for: none, fewer than 2, a repeated letter, an empty text."""
    if not pairs:
        raise ValueError("no options (open-ended question, not multiple choice)")
    if len(pairs) < 2:
        raise ValueError(f"only 1 option ({pairs[0][0]}); multiple choice needs at least 2")
    options: dict[str, str] = {}
    for letter, text in pairs:
        if letter in options:
            raise ValueError(f"duplicate option letter {letter}")
        if not text.strip():
            raise ValueError(f"option {letter} is empty")
        options[letter] = text.strip()
    return options


def answer_span(text: str) -> str:
    """The content of the last ``<answer>…</answer>`` in ``text``, or all of it when untagged."""
    found = _ANSWER_TAG.findall(text)
    return (found[-1] if found else text).strip()


def answer_letter(text: str, options: Mapping[str, str]) -> str:
    """The option letter an answer names: ``"<answer>(B) dog</answer>"``, ``"B"``, ``"B. dog"`` or
    the option text itself (``"dog"``). Raises ValueError when it names no option of ``options``.

    A bare or marked letter wins over option text, so options that are themselves letters
    ("A. C", "B. D") still read the answer "C" as option C.
    """
    span = answer_span(text)
    if not span:
        raise ValueError("empty answer")
    m = _BARE_LETTER.match(span) or _MARKED_LETTER.match(span)
    letter = next((g for g in m.groups() if g), None) if m else None
    if letter is None:
        lowered = span.rstrip(".").strip().lower()
        letter = next((k for k, v in options.items() if v.rstrip(".").strip().lower() == lowered), None)
    if letter is None and (m := _SPACED_LETTER.match(span)):
        letter = m.group(1)
    if letter is None:
        raise ValueError(f"answer {span[:40]!r} names no option letter")
    if letter not in options:
        raise ValueError(f'answer "{letter}" not in {letter_range(options)}')
    return letter


def letter_range(options: Mapping[str, str]) -> str:
    """``"A-D"`` for consecutive letters, else ``"A, C, D"``."""
    letters = list(options)
    if not letters:
        return "(no options)"
    consecutive = all(ord(b) - ord(a) == 1 for a, b in zip(letters, letters[1:], strict=False))
    return f"{letters[0]}-{letters[-1]}" if consecutive and len(letters) > 2 else ", ".join(letters)


def strip_placeholders(text: str) -> str:
    """Question text without ``<video>``/``<image>`` placeholders (the media goes first anyway)."""
    for token in PLACEHOLDERS:
        text = text.replace(token, "")
    return text.strip()
